"""Actors never die silently: start-up work is crash-guarded, a dead child is replaced or reported.

Reproduced (issue 13): a Module nested ~600 levels deep in a free-form field made rendering raise
RecursionError in `KernelActor.on_start`; pykka stopped the actor, its supervisor kept the dead
ref and the Module's status froze. These tests run the real actors over an in-memory cluster.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pykka

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.kernel import KernelActor
from actors.messages import ChildDied, KernelReport, NodesChanged, Subscribe
from actors.ports import ActorContext, ActorSettings
from actors.supervisor import ModuleSupervisor
from ooto.domain.api import KernelPhase
from ooto.domain.kernels import plan_kernel
from tests.unit.actor_fakes import (
    KERNEL,
    FakeCluster,
    Metrics,
    Parent,
    deep_volume,
    module,
    next_of,
    watched_by,
)

FAST = ActorSettings(
    status_debounce_seconds=0.01, backoff_initial_seconds=0.05, backoff_max_seconds=0.2
)


class Failures:
    def __init__(self) -> None:
        self.counts: dict[bool, int] = {False: 0, True: 0}
        self._lock = threading.Lock()

    def actor_failed(self, actor_kind: str, *, died: bool) -> None:
        with self._lock:
            self.counts[died] += 1


class FailingStart(OotoActor):
    def __init__(self, bridge: Bridge, crashes: queue.Queue[Exception]) -> None:
        super().__init__(bridge)
        self.crashes = crashes

    def on_started(self) -> None:
        raise RecursionError("deep")

    def on_crash(self, error: Exception) -> None:
        self.crashes.put(error)


def test_start_up_work_that_raises_is_recovered_and_counted(
    loop: asyncio.AbstractEventLoop,
) -> None:
    failures, crashes = Failures(), queue.Queue[Exception]()
    ref = FailingStart.start(Bridge(loop, failures=failures), crashes)
    assert isinstance(crashes.get(timeout=5), RecursionError)
    assert ref.is_alive()
    assert failures.counts == {False: 1, True: 0}
    ref.stop()


class DoubleFault(OotoActor):
    """Its recovery fails too: the actor dies, and says so."""

    def __init__(self, bridge: Bridge, deaths: queue.Queue[object]) -> None:
        super().__init__(bridge)
        self.deaths = deaths

    def on_str(self, message: str) -> None:
        raise ValueError(message)

    def on_crash(self, error: Exception) -> None:
        raise RuntimeError("recovery failed")

    def on_death(self, error: BaseException | None) -> None:
        self.deaths.put(error)


def test_an_actor_that_dies_anyway_announces_its_death(loop: asyncio.AbstractEventLoop) -> None:
    failures, deaths = Failures(), queue.Queue[object]()
    ref = DoubleFault.start(Bridge(loop, failures=failures), deaths)
    ref.tell("boom")
    assert isinstance(deaths.get(timeout=5), RuntimeError)
    assert ref.actor_stopped.wait(5)
    assert failures.counts == {False: 1, True: 1}


def context(loop: asyncio.AbstractEventLoop, io: FakeCluster, metrics: Metrics) -> ActorContext:
    bridge = Bridge(loop)
    return ActorContext(bridge, io, FAST, metrics, Routes())  # type: ignore[arg-type]


class Routes:
    def add(self, *args: Any) -> None: ...

    def remove(self, *args: Any) -> None: ...

    def add_module(self, *args: Any) -> None: ...

    def remove_module(self, *args: Any) -> None: ...


def test_a_kernel_whose_spec_cannot_render_reports_it_with_the_field_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeCluster(loop)
    ctx = context(loop, io, Metrics())
    deep = module(deep_volume(600))
    plan = plan_kernel(deep, KERNEL)
    assert plan is not None
    told = queue.Queue[object]()
    parent = Parent.start(ctx.bridge, told)
    actor = KernelActor.start(ctx, parent, deep, plan, frozenset({"node-a"}))
    report = next_of(told, KernelReport)
    assert report is not None, "the kernel actor died without a word"
    assert report.reason == "RenderFailed"
    assert report.status.phase is KernelPhase.INVALID
    assert "spec.additionalVolumes[0].ephemeral.volumeClaimTemplate" in report.status.message
    assert actor.is_alive()
    assert io.daemonsets.objects == {}
    actor.stop()
    parent.stop()


class Tracker(pykka.ThreadingActor):
    """Answers every subscription with one kernel on one node."""

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Subscribe):
            message.subscriber.tell(NodesChanged({KERNEL: frozenset({"node-a"})}))


def kernels_in_status(io: FakeCluster) -> list[dict[str, Any]]:
    return io.status_writes[-1].get("kernels") or [] if io.status_writes else []


async def wait_for(check: Any, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


def test_a_supervisor_replaces_a_kernel_actor_that_died(loop: asyncio.AbstractEventLoop) -> None:
    """A kernel actor whose crash recovery fails too (here: a metrics bug) dies; the supervisor
    reports it, starts a new one after a backoff, and the kernel converges."""
    io, metrics = FakeCluster(loop), Metrics()
    metrics.fail_phase_changes = 2  # the first report and its recovery both fail: it dies
    ctx = context(loop, io, metrics)
    tracker = Tracker.start()
    supervisor = ModuleSupervisor.start(ctx, tracker, module())

    def deployed() -> bool:
        kernels = kernels_in_status(io)
        return bool(kernels) and kernels[0]["phase"] == "Deploying"

    assert asyncio.run_coroutine_threadsafe(wait_for(deployed), loop).result(15)
    reasons = {c["reason"] for status in io.status_writes for c in status["conditions"]}
    assert "ActorFailed" in reasons, reasons  # reported while the new actor was on its way
    assert len(io.names()) == 1  # the new actor adopted what there was, or created it once
    supervisor.stop()
    tracker.stop()


def test_a_dead_kernel_actor_tells_its_parent(loop: asyncio.AbstractEventLoop) -> None:
    io, metrics = FakeCluster(loop), Metrics()
    metrics.fail_phase_changes = 2
    ctx = context(loop, io, metrics)
    plain = module()
    plan = plan_kernel(plain, KERNEL)
    assert plan is not None
    told = queue.Queue[object]()
    parent = Parent.start(ctx.bridge, told)
    actor = KernelActor.start(ctx, parent, plain, plan, frozenset({"node-a"}))
    watched_by(io, ctx.bridge, actor)
    died = next_of(told, ChildDied)
    assert died is not None and died.key == KERNEL and died.ref == actor
    assert "metrics bug" in died.error
    parent.stop()


class NodeIO:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()

    async def patch_node_kernel(self, *args: Any) -> None:
        pass

    def record_event(self, involved: Any, kind: str, reason: str, message: str) -> None:
        self.events.put((involved["metadata"]["name"], reason))


def test_a_refused_kernel_string_is_reported_once_per_node_and_kernel(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from actors.base import Backoff
    from actors.messages import NodeObserved
    from actors.node_tracker import NodeTracker

    io = NodeIO()
    tracker = NodeTracker.start(Bridge(loop), io, Backoff(0.05, 0.2))

    def observed(kernel: str, label: str) -> NodeObserved:
        meta = {"name": "evil", "labels": {"x": label}}
        return NodeObserved(
            "MODIFIED", {"metadata": meta, "status": {"nodeInfo": {"kernelVersion": kernel}}}
        )

    hostile = "6.1.0-9-amd64; touch /tmp/x $(id)"
    for label in ("1", "2", "3"):  # the node's other fields change: no new Event
        tracker.tell(observed(hostile, label))
    tracker.tell(observed(hostile + "2", "3"))  # a different string: one more
    tracker.ask("barrier")
    assert [io.events.get_nowait() for _ in range(io.events.qsize())] == [
        ("evil", "InvalidKernel"),
        ("evil", "InvalidKernel"),
    ]
    tracker.stop()


class StoringNodeIO(NodeIO):
    """Answers a label patch as the API server does: with the Node as stored, a newer version."""

    def __init__(self) -> None:
        super().__init__()
        self.patched: list[str] = []

    async def patch_node_kernel(self, name: str, *args: Any) -> dict[str, Any]:
        self.patched.append(name)
        return {"metadata": {"name": name, "resourceVersion": "10"}}


def test_an_event_older_than_our_label_write_does_not_write_it_again(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """After an API server restart the Node informer relists: a list served before our label
    patch landed shows the node without the label, after the patch's reply. Seen in
    test_reliability_apiserver as one label written twice."""
    from actors.base import Backoff
    from actors.messages import NodeObserved
    from actors.node_tracker import NodeTracker

    io = StoringNodeIO()
    tracker = NodeTracker.start(Bridge(loop), io, Backoff(0.05, 0.2))

    def unlabelled(version: str) -> NodeObserved:
        meta = {"name": "n1", "labels": {}, "resourceVersion": version}
        return NodeObserved(
            "MODIFIED", {"metadata": meta, "status": {"nodeInfo": {"kernelVersion": "6.1.0-9"}}}
        )

    def settled() -> None:
        """Whatever the tracker started ran on the loop, and its replies were handled."""
        for _ in range(3):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
            tracker.ask("barrier")

    tracker.tell(unlabelled("5"))
    settled()
    assert io.patched == ["n1"]
    tracker.tell(unlabelled("7"))  # older than the write's version 10
    settled()
    assert io.patched == ["n1"]
    tracker.tell(unlabelled("11"))  # newer: someone took the label off
    settled()
    assert io.patched == ["n1", "n1"]
    tracker.stop()
