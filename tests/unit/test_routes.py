"""DaemonSet events reach the owning kernel actor straight from the loop."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.messages import DaemonSetObserved, Flush, NodeObserved
from actors.routes import DaemonSetRoutes, RolloutRoutes
from ooto.domain.upgrade.keys import ready_label_key, upgrade_annotation_key

MODULE, KERNEL = "example.com/module", "example.com/kernel"


class Owner(OotoActor):
    """Handles DaemonSetObserved like a kernel actor, but first waits until `gate` opens."""

    def __init__(self, bridge: Bridge, seen: queue.Queue[str], gate: threading.Event) -> None:
        super().__init__(bridge)
        self.seen, self.gate = seen, gate

    def on_DaemonSetObserved(self, event: DaemonSetObserved) -> None:
        self.gate.wait(5)
        assert event.daemonset["metadata"]["name"] == "ds"
        self.seen.put("observed")


def daemonset(namespace: str, module: str, kernel: str) -> dict[str, Any]:
    labels = {MODULE: module, KERNEL: kernel}
    return {"metadata": {"namespace": namespace, "name": "ds", "labels": labels}}


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> None:
    """Run `call` on the loop thread (where the informer delivers) and wait for it."""

    async def run() -> None:
        call()

    asyncio.run_coroutine_threadsafe(run(), loop).result(5)


def setup(
    loop: asyncio.AbstractEventLoop,
) -> tuple[DaemonSetRoutes, Any, queue.Queue[str], threading.Event]:
    bridge = Bridge(loop)
    seen: queue.Queue[str] = queue.Queue()
    gate = threading.Event()
    return DaemonSetRoutes(bridge, MODULE, KERNEL), Owner.start(bridge, seen, gate), seen, gate


def test_events_go_to_the_actor_of_their_labels_only(loop: asyncio.AbstractEventLoop) -> None:
    routes, owner, seen, gate = setup(loop)
    gate.set()
    routes.add(("ns", "mod", "k1"), owner)
    on_loop(loop, lambda: routes.deliver(daemonset("ns", "mod", "k2")))
    on_loop(loop, lambda: routes.deliver(daemonset("other", "mod", "k1")))
    on_loop(loop, lambda: routes.deliver(daemonset("ns", "mod", "k1")))
    assert seen.get(timeout=5) == "observed"
    assert seen.empty()
    owner.stop()


def test_every_event_is_told_even_while_one_waits(loop: asyncio.AbstractEventLoop) -> None:
    routes, owner, seen, gate = setup(loop)
    routes.add(("ns", "mod", "k1"), owner)
    for _ in range(3):
        on_loop(loop, lambda: routes.deliver(daemonset("ns", "mod", "k1")))
    gate.set()
    assert [seen.get(timeout=5) for _ in range(3)] == ["observed"] * 3


def test_removing_an_older_actor_keeps_the_newer_route(loop: asyncio.AbstractEventLoop) -> None:
    routes, old, _, _ = setup(loop)
    bridge = Bridge(loop)
    seen: queue.Queue[str] = queue.Queue()
    gate = threading.Event()
    gate.set()
    new = Owner.start(bridge, seen, gate)
    key = ("ns", "mod", "k1")
    routes.add(key, old)
    routes.add(key, new)  # the kernel came back while its old actor was still retiring
    routes.remove(key, old)
    on_loop(loop, lambda: routes.deliver(daemonset("ns", "mod", "k1")))
    assert seen.get(timeout=5) == "observed"
    routes.remove(key, new)
    on_loop(loop, lambda: None)
    assert len(routes) == 0
    old.stop()
    new.stop()


class Failures(OotoActor):
    def __init__(self, bridge: Bridge, seen: queue.Queue[object]) -> None:
        super().__init__(bridge)
        self.seen = seen

    def on_PodCreateFailed(self, failure: object) -> None:
        self.seen.put(failure)


def test_failed_create_events_reach_the_kernel_actor_of_that_daemonset(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from actors.messages import PodCreateFailed

    bridge = Bridge(loop)
    routes = DaemonSetRoutes(bridge, MODULE, KERNEL)
    seen: queue.Queue[object] = queue.Queue()
    actor = Failures.start(bridge, seen)
    routes.add(("ns", "mod", "k1"), actor)
    ours = daemonset("ns", "mod", "k1")
    ours["metadata"]["uid"] = "u1"
    cache = {("ns", "ds"): ours}

    class Cache:
        def get(self, namespace: str, name: str) -> Any:
            return cache.get((namespace, name))

    def event(name: str, uid: str) -> dict[str, Any]:
        involved = {"kind": "DaemonSet", "namespace": "ns", "name": name, "uid": uid}
        return {"involvedObject": involved, "message": "exceeded quota: q"}

    on_loop(loop, lambda: routes.deliver_failed_create(event("other", "u9"), Cache()))
    on_loop(loop, lambda: routes.deliver_failed_create(event("ds", "old-uid"), Cache()))
    on_loop(loop, lambda: routes.deliver_failed_create(event("ds", "u1"), Cache()))
    assert seen.get(timeout=5) == PodCreateFailed("ds", "u1", "exceeded quota: q")
    actor.ask("barrier")
    assert seen.empty(), "events about other or earlier DaemonSets are not ours"
    actor.stop()


class Listener(OotoActor):
    """Stands for a RolloutActor: records the Node events and Flushes it is told."""

    def __init__(self, bridge: Bridge, seen: queue.Queue[tuple[str, str]]) -> None:
        super().__init__(bridge)
        self.seen = seen

    def on_NodeObserved(self, event: NodeObserved) -> None:
        self.seen.put(("node", event.node["metadata"]["name"]))

    def on_Flush(self, flush: Flush) -> None:
        self.seen.put(("flush", flush.name))


def node(name: str, labels: dict[str, str] | None = None, notes: Any = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": notes or {}}}


def test_node_events_reach_only_the_rollouts_that_target_or_marked_the_node(
    loop: asyncio.AbstractEventLoop,
) -> None:
    bridge = Bridge(loop)
    routes = RolloutRoutes(bridge, MODULE)
    seen_a: queue.Queue[tuple[str, str]] = queue.Queue()
    seen_b: queue.Queue[tuple[str, str]] = queue.Queue()
    a, b = Listener.start(bridge, seen_a), Listener.start(bridge, seen_b)
    part_a, part_b = "ns.a", "ns." + "b" * 70  # b's keys are shortened: routed all the same
    label_b = ready_label_key("ns", "b" * 70)
    routes.add(("ns", "a"), a, part_a)
    routes.add(("ns", "b"), b, label_b.partition("/")[2])
    routes.target(a, frozenset({"n1"}))
    assert seen_a.get(timeout=5) == ("flush", "routed")  # the table holds n1 from now on
    on_loop(loop, lambda: routes.deliver_node("MODIFIED", node("n1")))
    on_loop(loop, lambda: routes.deliver_node("MODIFIED", node("n2")))  # nobody's
    on_loop(loop, lambda: routes.deliver_node("MODIFIED", node("n3", {label_b: "true"})))
    record = {upgrade_annotation_key("ns", "a"): "{}"}
    on_loop(loop, lambda: routes.deliver_node("DELETED", node("n4", notes=record)))
    a.ask(Flush("barrier"))
    b.ask(Flush("barrier"))
    assert drained(seen_a) == [("node", "n1"), ("node", "n4"), ("flush", "barrier")]
    assert drained(seen_b) == [("node", "n3"), ("flush", "barrier")]
    assert part_b not in label_b  # (the route is by the key actually written)
    routes.remove(("ns", "a"), a)
    on_loop(loop, lambda: routes.deliver_node("MODIFIED", node("n1")))
    a.ask(Flush("barrier"))
    assert drained(seen_a) == [("flush", "barrier")]
    a.stop()
    b.stop()


def drained(seen: queue.Queue[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    while not seen.empty():
        out.append(seen.get_nowait())
    return out
