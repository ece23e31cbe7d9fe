"""The one seam between actors (threads) and the asyncio loop that does all I/O.

An actor never blocks on I/O: it hands a coroutine to `Bridge.run`, keeps going, and later receives
`IoDone(tag, result | error)` in its mailbox. The done-callback only `tell`s; an actor that died
meanwhile is simply not told (its work is done or abandoned, never retried by the bridge).
Timers run on the loop (`call_later`) and come back as messages, so an actor has no thread of
its own
besides its mailbox, and no polling anywhere.

Every coroutine the bridge runs is owned: `run` returns a `Running` handle the actor may cancel
(the coroutine is cancelled at its next await, not when it next looks at a flag), and `drain`
cancels and awaits every one still running, so nothing an actor started outlives the operator's
term (no write after the Lease is lost, no "Task destroyed but it is pending" at shutdown).

With a `MessageLatencyObserver`, what the bridge tells is wrapped in `Stamped` (the monotonic time
of the tell); `OotoActor` unwraps it and reports how long the message waited in the mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import pykka

from actors.messages import IoDone

log = logging.getLogger(__name__)


class MessageLatencyObserver(Protocol):
    def observe_message_latency(self, actor_kind: str, seconds: float) -> None: ...


class ActorFailureObserver(Protocol):
    def actor_failed(self, actor_kind: str, *, died: bool) -> None:
        """A handler raised: the actor recovered (`died` False) or stopped (True)."""


@dataclass(frozen=True, slots=True)
class Stamped:
    """A message and when it was told (time.monotonic()), to measure its time in the mailbox."""

    message: object
    told_at: float


class Bridge:
    """Runs coroutines and timers on `loop` on behalf of actors."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        latency: MessageLatencyObserver | None = None,
        failures: ActorFailureObserver | None = None,
    ) -> None:
        self._loop = loop
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()  # touched on the loop thread only
        self._latency = latency
        self._failures = failures

    def tell(self, ref: pykka.ActorRef[Any], message: object) -> None:
        """Tell `ref` (stamped when latency is observed); a stopped actor is simply not told."""
        _tell(ref, Stamped(message, time.monotonic()) if self._latency is not None else message)

    def message_received(self, actor_kind: str, stamped: Stamped) -> None:
        """Called by the receiving actor: report the time `stamped` waited."""
        if self._latency is not None:
            seconds = time.monotonic() - stamped.told_at
            self._latency.observe_message_latency(actor_kind, seconds)

    def actor_failed(self, actor_kind: str, *, died: bool) -> None:
        """Count a handler failure (called from the failing actor's thread)."""
        if self._failures is not None:
            self._failures.actor_failed(actor_kind, died=died)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(
        self, reply_to: pykka.ActorRef[Any], tag: Hashable, coro: Coroutine[Any, Any, Any]
    ) -> Running:
        """Run `coro` on the loop; tell `reply_to` IoDone(tag, ...) when it ends (a cancelled
        one ends with `asyncio.CancelledError`)."""
        running = Running(self._loop)
        if self._closed:
            coro.close()
            return running
        self._loop.call_soon_threadsafe(self._start, running, reply_to, tag, coro)
        return running

    def _start(
        self,
        running: Running,
        reply_to: pykka.ActorRef[Any],
        tag: Hashable,
        coro: Coroutine[Any, Any, Any],
    ) -> None:
        """On the loop thread: start `coro` unless it was cancelled or the bridge closed first."""
        if self._closed or running.cancelled:
            coro.close()
            if running.cancelled and not self._closed:
                self.tell(reply_to, IoDone(tag, error=asyncio.CancelledError()))
            return
        task = running.task = self._loop.create_task(coro)
        self._tasks.add(task)
        started = time.monotonic()

        def ended(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            self.tell(reply_to, _outcome(tag, done, started))

        task.add_done_callback(ended)

    async def drain(self, timeout: float = 10.0) -> int:
        """Close, then cancel every coroutine still running and wait (up to `timeout`) until
        each has ended; returns how many there were. Called on the loop at the end of a term."""
        self.close()
        await asyncio.sleep(0)  # `_start` calls queued before close() ran: they saw it closed
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                log.error("%s did not end within %.0fs of its cancellation", task, timeout)
        return len(tasks)

    def call_later(self, delay: float, reply_to: pykka.ActorRef[Any], message: object) -> None:
        """Tell `reply_to` `message` after `delay` seconds (drop stale ones by generation)."""
        if self._closed:
            return
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, self.tell, reply_to, message)

    def call_soon(self, func: Callable[..., object], *args: Any) -> None:
        """Run a non-blocking `func(*args)` on the loop thread (e.g. queue an Event)."""
        if self._closed:
            return
        self._loop.call_soon_threadsafe(func, *args)

    def close(self) -> None:
        """Stop accepting work: used at shutdown so late actor requests are dropped quietly."""
        self._closed = True


class Running:
    """A coroutine the bridge runs for an actor; `cancel` may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.cancelled = False
        self.task: asyncio.Task[Any] | None = None  # set on the loop thread once started

    def cancel(self) -> None:
        """Cancel it at its next await (or before it starts); its IoDone then carries
        `asyncio.CancelledError`."""
        self.cancelled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
            self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _outcome(tag: Hashable, done: asyncio.Future[Any], started: float) -> IoDone:
    """The IoDone of a finished task, with when it started and ended on the loop (the rollout
    tells its own reaction time from the API server's, actors/rollout_clock.py)."""
    ended = time.monotonic()
    if done.cancelled():
        return IoDone(tag, error=asyncio.CancelledError(), started=started, ended=ended)
    error = done.exception()
    if error is not None:
        return IoDone(tag, error=error, started=started, ended=ended)
    return IoDone(tag, done.result(), started=started, ended=ended)


def _tell(reply_to: pykka.ActorRef[Any], message: object) -> None:
    try:
        reply_to.tell(message)
    except pykka.ActorDeadError:
        inner = message.message if isinstance(message, Stamped) else message
        log.debug("dropped %s for a stopped actor", type(inner).__name__)
