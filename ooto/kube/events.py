"""Kubernetes Events, recorded without ever making the caller wait.

`record` only notes the event; a background task writes it. Repeats of the same
(object, type, reason, message) are folded: while one is waiting to be written its count grows,
and once written, later repeats patch count/lastTimestamp of the same core/v1 Event (a simple
version of client-go's EventCorrelator). When too many distinct events wait, new ones are dropped
and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Protocol

from ooto.kube.client import JsonObj, KubeApi
from ooto.kube.errors import KubeError, NotFound
from ooto.kube.resources import EVENTS
from ooto.kube.tasks import SupervisedTask

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
AggregationKey = tuple[str, str, str, str, str, str]
MAX_MESSAGE = 1024


class EventObserver(Protocol):
    """`ooto.metrics.Metrics` implements it."""

    def event_dropped(self) -> None: ...

    def task_failed(self, task: str) -> None: ...


class _NullEventObserver:
    def event_dropped(self) -> None:
        return None

    def task_failed(self, task: str) -> None:
        return None


def aggregation_key(involved: JsonObj, type_: str, reason: str, message: str) -> AggregationKey:
    """Events with the same key are one Event with a count."""
    meta = involved.get("metadata") or {}
    identity = str(meta.get("uid") or "")
    return (
        str(involved.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or "") + (f"#{identity}" if identity else ""),
        type_,
        reason,
        message[:MAX_MESSAGE],
    )


def event_timestamp(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Pending:
    involved: JsonObj
    type_: str
    reason: str
    message: str
    count: int
    first: float
    last: float


@dataclass(slots=True)
class _Written:
    name: str
    namespace: str
    count: int
    last: float


class EventRecorder:
    """Writes core/v1 Events for objects; `record` is safe from any thread and never blocks."""

    def __init__(
        self,
        api: KubeApi,
        component: str = "ooto",
        *,
        max_pending: int = 1000,
        remember: int = 4096,
        aggregate_window: float = 600.0,
        observer: EventObserver | None = None,
    ) -> None:
        self._api = api
        self._component = component
        self._max_pending = max_pending
        self._remember = remember
        self._window = aggregate_window
        self._observer: EventObserver = observer or _NullEventObserver()
        self._pending: OrderedDict[AggregationKey, _Pending] = OrderedDict()
        self._written: OrderedDict[AggregationKey, _Written] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.task = SupervisedTask("event-recorder", self._run, observer=self._observer)
        self.dropped = 0
        self.written = 0  # Events created or patched

    @property
    def pending(self) -> int:
        """Distinct events waiting to be written (bounded by `max_pending`)."""
        return len(self._pending)

    # -- the caller's side ------------------------------------------------------------------

    def record(self, involved: JsonObj, type_: EventType, reason: str, message: str) -> None:
        """Note an Event about `involved` (an object as read from the API). Returns at once."""
        now = time.time()
        if threading.get_ident() == self._loop_thread or self._loop is None:
            self._note(involved, type_, reason, message, now)
            return
        try:
            self._loop.call_soon_threadsafe(self._note, involved, type_, reason, message, now)
        except RuntimeError:  # the loop is closed: we are shutting down
            self._drop()

    def _note(self, involved: JsonObj, type_: str, reason: str, message: str, now: float) -> None:
        key = aggregation_key(involved, type_, reason, message)
        pending = self._pending.get(key)
        if pending is not None:
            pending.count += 1
            pending.last = now
            return
        if len(self._pending) >= self._max_pending:
            self._drop()
            return
        message = message[:MAX_MESSAGE]
        self._pending[key] = _Pending(involved, type_, reason, message, 1, now, now)
        self._idle.clear()
        self._wakeup.set()

    def _drop(self) -> None:
        self.dropped += 1
        self._observer.event_dropped()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        return self.task.start()

    async def flush(self) -> None:
        """Wait until everything recorded so far is written (or given up on)."""
        await self._idle.wait()

    async def stop(self, timeout: float = 2.0) -> None:
        """Write what is pending (for at most `timeout` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        await self.task.stop()

    # -- the writer's side ------------------------------------------------------------------

    async def _run(self) -> None:
        """Write what is pending, then wait for more. Anything but a `KubeError` ends the run
        (its event is dropped) and the supervisor starts a new one, which resumes the queue."""
        while True:
            while self._pending:
                key, pending = self._pending.popitem(last=False)
                try:
                    await self._write(key, pending)
                    self.written += 1
                except KubeError as exc:
                    # Events are best effort: log and move on, never retry forever.
                    log.warning("event %s for %s not written: %s", pending.reason, key[2], exc)
            self._idle.set()
            await self._wakeup.wait()
            self._wakeup.clear()

    async def _write(self, key: AggregationKey, pending: _Pending) -> None:
        known = self._written.get(key)
        if known is not None and pending.last - known.last < self._window:
            count = known.count + pending.count
            patch = {"count": count, "lastTimestamp": event_timestamp(pending.last)}
            try:
                await self._api.patch(EVENTS, known.name, patch, known.namespace)
            except NotFound:  # expired (the API server keeps Events for an hour)
                pass
            else:
                self._remember_written(key, known.name, known.namespace, count, pending.last)
                return
        event = self._new_event(pending)
        created = await self._api.create(EVENTS, event)
        meta = created.get("metadata") or {}
        self._remember_written(key, meta["name"], meta["namespace"], pending.count, pending.last)

    def _remember_written(
        self, key: AggregationKey, name: str, namespace: str, count: int, last: float
    ) -> None:
        self._written[key] = _Written(name, namespace, count, last)
        self._written.move_to_end(key)
        while len(self._written) > self._remember:
            self._written.popitem(last=False)

    def _new_event(self, pending: _Pending) -> JsonObj:
        involved = pending.involved
        meta = involved.get("metadata") or {}
        # Events of cluster-scoped objects (Nodes) live in "default", as client-go does.
        namespace = meta.get("namespace") or "default"
        reference = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {k: v for k, v in reference.items() if v},
            "type": pending.type_,
            "reason": pending.reason,
            "message": pending.message,
            "count": pending.count,
            "firstTimestamp": event_timestamp(pending.first),
            "lastTimestamp": event_timestamp(pending.last),
            "source": {"component": self._component},
            "reportingComponent": self._component,
        }
