"""Retiring a kernel leaves nothing behind (issue 13, section 3), with held and failing replies.

Reproduced before the fix: a failing module-loader delete next to a succeeding device-plugin
delete made the actor report retired (the loader DaemonSet stayed for ever); a Retire that arrived
while a create was on the wire saw an empty cache and stopped, and the create landed afterwards.
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest

from actors.bridge import Bridge
from actors.kernel import KernelActor
from actors.messages import KernelRetired, NodesChanged, Retire, Subscribe
from actors.ports import ActorContext, ActorSettings
from actors.retire import Doomed, orphans, retire_step
from actors.supervisor import ModuleSupervisor
from ooto.domain.kernels import plan_kernel
from ooto.domain.render import LABEL_KERNEL, owner_reference
from tests.unit.actor_fakes import (
    KERNEL,
    FakeCluster,
    Metrics,
    Parent,
    drained,
    module,
    next_of,
    settle,
    wait_until,
    watched_by,
)

FAST = ActorSettings(
    status_debounce_seconds=0.01, backoff_initial_seconds=0.05, backoff_max_seconds=0.2
)


class Routes:
    def __init__(self) -> None:
        self.refs: dict[Any, Any] = {}

    def add(self, key: Any, ref: Any) -> None:
        self.refs[key] = ref

    def remove(self, key: Any, ref: Any) -> None:
        if self.refs.get(key) == ref:
            del self.refs[key]

    def add_module(self, *args: Any) -> None: ...

    def remove_module(self, *args: Any) -> None: ...


def start_kernel(
    loop: asyncio.AbstractEventLoop, io: FakeCluster, *, device_plugin: bool
) -> tuple[Any, Any, queue.Queue[object]]:
    bridge = Bridge(loop)
    context = ActorContext(bridge, io, FAST, Metrics(), Routes())  # type: ignore[arg-type]
    mod = module(device_plugin=device_plugin)
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None
    told = queue.Queue[object]()
    parent = Parent.start(bridge, told)
    actor = KernelActor.start(context, parent, mod, plan, frozenset({"node-a"}))
    watched_by(io, bridge, actor)
    return actor, parent, told


def test_a_failed_loader_delete_keeps_the_kernel_retiring_until_it_is_gone(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeCluster(loop)
    actor, parent, told = start_kernel(loop, io, device_plugin=True)
    assert wait_until(loop, lambda: len(io.names()) == 2)
    (loader,) = [n for n in io.names() if "-ml-" in n]
    io.delete_failures[loader] = RuntimeError("503 the API server is overloaded")
    io.deletes.hold()  # the device-plugin delete is answered after the loader's failure
    actor.tell(Retire())
    assert wait_until(loop, lambda: loader in io.delete_attempts)
    settle(loop, actor)  # it handled the failure
    io.deletes.release()
    assert wait_until(loop, lambda: io.names() == {loader})
    settle(loop, actor)  # ... and the device plugin's success
    assert not [m for m in drained(told) if isinstance(m, KernelRetired)]
    assert actor.is_alive()
    assert any(reason == "DeleteFailed" for reason, _ in io.events)

    del io.delete_failures[loader]  # the API server recovers: the retry timer deletes it
    assert next_of(told, KernelRetired) == KernelRetired(KERNEL)
    assert io.names() == set()
    assert actor.actor_stopped.wait(5)
    parent.stop()


@pytest.mark.parametrize("watch_lags", [False, True])
def test_a_retire_during_a_create_waits_for_it_and_deletes_what_it_made(
    loop: asyncio.AbstractEventLoop, watch_lags: bool
) -> None:
    io = FakeCluster(loop)
    io.applies.hold()
    actor, parent, told = start_kernel(loop, io, device_plugin=False)
    settle(loop, actor)  # its create is on the wire, the cache is empty
    actor.tell(Retire())
    settle(loop, actor)
    assert not [m for m in drained(told) if isinstance(m, KernelRetired)]
    if watch_lags:
        io.watch = lambda obj: None  # only the reply tells the actor the create landed
    io.applies.release()
    assert next_of(told, KernelRetired) == KernelRetired(KERNEL)
    assert io.names() == set(), "the create landed after the kernel retired"
    parent.stop()


# --- the pure decision --------------------------------------------------------------------------


def ds(name: str, uid: str, kernel: str = "k", **meta: Any) -> dict[str, Any]:
    owner = owner_reference(module())
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid,
            "labels": {LABEL_KERNEL: kernel},
            "ownerReferences": [owner],
            **meta,
        }
    }


def test_retiring_is_over_only_with_nothing_cached_and_nothing_in_flight() -> None:
    assert retire_step([], writes_in_flight=False, deleting=()).done
    assert not retire_step([], writes_in_flight=True, deleting=()).done
    step = retire_step([ds("a", "u1")], writes_in_flight=False, deleting=())
    assert step.delete == (Doomed("ns", "a", "u1"),) and not step.done
    # deleted, the cache not caught up yet: wait, do not delete again
    step = retire_step([ds("a", "u1")], writes_in_flight=False, deleting={"u1"})
    assert step.delete == () and not step.done
    going = ds("a", "u1", deletionTimestamp="2026-01-01T00:00:00Z")
    assert retire_step([going], writes_in_flight=False, deleting=()).delete == ()


def test_orphans_are_ours_and_of_no_live_kernel() -> None:
    uid = module().metadata.uid
    mine, other_kernel = ds("a", "u1", kernel="live"), ds("b", "u2", kernel="gone")
    not_ours = ds("c", "u3", kernel="gone")
    not_ours["metadata"]["ownerReferences"] = []
    elsewhere = ds("d", "u4", kernel="gone")
    elsewhere["metadata"]["namespace"] = "other"
    found = orphans([mine, other_kernel, not_ours, elsewhere], "ns", uid, {"live"})
    assert found == [Doomed("ns", "b", "u2")]


# --- the supervisor's sweep ---------------------------------------------------------------------


class Tracker(Parent):
    def on_Subscribe(self, message: Subscribe) -> None:
        self.told.put(message)


def test_the_supervisor_sweeps_orphans_whenever_its_kernels_change(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An orphan that appears later (a write that landed after its actor retired, an actor that
    died retiring) goes at the next change of the kernel set, not only at start-up."""
    io = FakeCluster(loop)
    bridge = Bridge(loop)
    context = ActorContext(bridge, io, FAST, Metrics(), Routes())  # type: ignore[arg-type]
    subscriptions = queue.Queue[object]()
    tracker = Tracker.start(bridge, subscriptions)
    supervisor = ModuleSupervisor.start(context, tracker, module())
    assert next_of(subscriptions, Subscribe) is not None
    supervisor.tell(NodesChanged({KERNEL: frozenset({"node-a"})}))
    assert wait_until(loop, lambda: len(io.names()) == 1)

    stray = ds("mod-stray", "stray-uid", kernel="6.0.0-old")
    io.daemonsets.objects[("ns", "mod-stray")] = stray  # appeared without any event reaching us
    supervisor.tell(NodesChanged({KERNEL: frozenset({"node-a", "node-b"})}))
    settle(loop, supervisor)
    assert ("ns", "mod-stray") in io.daemonsets.objects  # same kernels: no sweep needed
    supervisor.tell(NodesChanged({"6.1.0-new": frozenset({"node-a"})}))
    assert wait_until(loop, lambda: ("ns", "mod-stray") not in io.daemonsets.objects)
    supervisor.stop()
    tracker.stop()


def test_an_unclaimed_daemonset_event_makes_the_supervisor_sweep(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from actors.messages import DaemonSetObserved

    io = FakeCluster(loop)
    bridge = Bridge(loop)
    context = ActorContext(bridge, io, FAST, Metrics(), Routes())  # type: ignore[arg-type]
    subscriptions = queue.Queue[object]()
    tracker = Tracker.start(bridge, subscriptions)
    supervisor = ModuleSupervisor.start(context, tracker, module())
    supervisor.tell(NodesChanged({KERNEL: frozenset({"node-a"})}))
    assert wait_until(loop, lambda: len(io.names()) == 1)
    stray = ds("mod-stray", "stray-uid", kernel="6.0.0-old")
    io.daemonsets.objects[("ns", "mod-stray")] = stray
    supervisor.tell(DaemonSetObserved(stray))
    assert wait_until(loop, lambda: ("ns", "mod-stray") not in io.daemonsets.objects)
    assert len(io.names()) == 1  # the live kernel's DaemonSet stays
    supervisor.stop()
    tracker.stop()


def test_a_kernel_whose_mapping_is_invalid_for_it_keeps_its_daemonsets_after_a_restart(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An invalid spec changes nothing that runs. A restarted supervisor has no actor for such a
    kernel, so its DaemonSets must not look orphaned to the sweep."""
    from ooto.domain.kernels import kernel_label_value

    long_kernel = "6.1.0-" + "x" * 64  # its doubled tag is over 128 characters: invalid for it
    image = "r.example/m:${KERNEL_FULL_VERSION}${KERNEL_FULL_VERSION}"
    spec = {"kernelMappings": [{"regexp": "^.*$", "containerImage": image}]}
    io = FakeCluster(loop)
    bridge = Bridge(loop)
    context = ActorContext(bridge, io, FAST, Metrics(), Routes())  # type: ignore[arg-type]
    running = ds("mod-running", "running-uid", kernel=kernel_label_value(long_kernel))
    io.daemonsets.objects[("ns", "mod-running")] = running
    tracker = Tracker.start(bridge, queue.Queue())
    supervisor = ModuleSupervisor.start(context, tracker, module(spec))
    supervisor.tell(NodesChanged({long_kernel: frozenset({"node-a"})}))
    settle(loop, supervisor)
    supervisor.tell(NodesChanged({long_kernel: frozenset({"node-a", "node-b"})}))
    settle(loop, supervisor)
    assert ("ns", "mod-running") in io.daemonsets.objects
    supervisor.stop()
    tracker.stop()
