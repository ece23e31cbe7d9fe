"""Supervised long-running tasks: restarted with backoff after any failure, never silently gone.

Every coroutine the operator runs "forever" (informers, the event recorder, leader election, the
loop-lag monitor) runs inside a `SupervisedTask`, as kopf guards its tasks
(`aiokits/aiotasks.py`). A run that raises anything but `CancelledError`, or returns (a forever
coroutine that returns is a bug too), is logged with its traceback, counted
(`ooto_task_failures_total{task}`) and restarted after an exponential backoff.

"Keeps failing", which liveness reports (`/healthz` 503, the replica gives its Lease up and
exits): `FAILURE_LIMIT` failures in a row, where a run that lasted `STEADY_SECONDS` or more ends a
row. With the default backoff (1 s doubling to 60 s) that is about half a minute of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ooto.kube.backoff import Backoff

log = logging.getLogger(__name__)

FAILURE_LIMIT = 5
STEADY_SECONDS = 60.0


class TaskObserver(Protocol):
    """`ooto.metrics.Metrics` implements it."""

    def task_failed(self, task: str) -> None: ...


class _NullTaskObserver:
    def task_failed(self, task: str) -> None:
        return None


class SupervisedTask:
    """Runs `run()` in a task named `name` until `stop()`; restarts it after each failure."""

    def __init__(
        self,
        name: str,
        run: Callable[[], Coroutine[Any, Any, None]],
        *,
        observer: TaskObserver | None = None,
        backoff: Backoff | None = None,
        failure_limit: int = FAILURE_LIMIT,
        steady_after: float = STEADY_SECONDS,
    ) -> None:
        self.name = name
        self._run = run
        self._observer: TaskObserver = observer or _NullTaskObserver()
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._failure_limit = failure_limit
        self._steady_after = steady_after
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # over the task's life
        self.failures_in_a_row = 0
        self.last_error = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervise(), name=self.name)
            self._task.add_done_callback(self._ended)
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # An error of the supervisor itself was logged when it ended (`_ended`).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s: its supervisor died", self.name, exc_info=task.exception())

    # -- health -----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._task is not None

    def problem(self) -> str | None:
        """Why this task is not healthy, None when it is (or was never started)."""
        if self._task is None:
            return None
        if self._task.done():
            return f"task {self.name} ended"  # only a bug in `_supervise` gets here
        if self.failures_in_a_row >= self._failure_limit:
            failed = f"failed {self.failures_in_a_row} times in a row"
            return f"task {self.name} {failed}: {self.last_error}"
        return None

    # -- the loop ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await self._run()
                self.last_error = "returned"
                log.error("task %s returned; restarting it", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("task %s failed; restarting it", self.name)
            if loop.time() - began >= self._steady_after:
                self.failures_in_a_row = 0
                self._backoff.reset()
            self.failures += 1
            self.failures_in_a_row += 1
            self._observer.task_failed(self.name)
            await asyncio.sleep(self._backoff.next())
