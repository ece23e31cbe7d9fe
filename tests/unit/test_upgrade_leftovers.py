"""What deleted Modules left on Nodes: judged from the caches, retried until it is gone."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from actors.base import Backoff
from actors.bridge import Bridge
from actors.messages import Flush, NodeObserved, SweepLeftovers
from actors.node_cleaner import NodeCleaner
from ooto.domain.upgrade import record
from ooto.domain.upgrade.keys import ready_label_key, upgrade_annotation_key
from ooto.domain.upgrade.leftovers import carries_module_keys, leftovers, live_parts
from ooto.domain.upgrade.state import NodeUpgrade, NodeUpgradeState
from ooto.kube.errors import ApiError

LONG = "n" * 70


def module(namespace: str, name: str, uid: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid}}


def held(cordoned: bool, owner: str = "") -> str:
    state = NodeUpgradeState.POD_DELETION_REQUIRED
    upgrade = NodeUpgrade(state=state, digest="d", generation=2, cordoned=cordoned)
    return record.encode(upgrade, owner)


def node(labels: dict[str, str], notes: dict[str, str], cordoned: bool = False) -> dict[str, Any]:
    meta = {"name": "n1", "resourceVersion": "42", "labels": labels, "annotations": notes}
    return {"metadata": meta, "spec": {"unschedulable": True} if cordoned else {}}


def test_only_keys_of_modules_not_in_the_cache_are_left_over() -> None:
    live = live_parts([module("a", "kept"), module("a", LONG)])
    gone, kept, long = (ready_label_key("a", n) for n in ("gone", "kept", LONG))
    found = leftovers(
        node(
            {gone: "true", kept: "true", long: "true", "other/x": "y"},
            {upgrade_annotation_key("a", "gone"): held(True), "ready.ooto.sigs.k8s.io/q": "1"},
            cordoned=True,
        ),
        live,
    )
    assert found is not None
    assert found.labels == (gone,)  # a shortened (hashed) key of a live Module is kept
    assert found.annotations == (upgrade_annotation_key("a", "gone"),)
    assert found.uncordon and found.resource_version == "42"
    assert leftovers(node({kept: "true", long: "true"}, {}), live) is None  # at rest: nothing


def test_a_cordon_goes_only_when_the_gone_module_recorded_that_ooto_made_it() -> None:
    notes = {upgrade_annotation_key("a", "gone"): held(False)}
    found = leftovers(node({}, notes, cordoned=True), {})
    assert found is not None and not found.uncordon  # an admin's cordon stays
    unreadable = {upgrade_annotation_key("a", "gone"): "{not json"}
    found = leftovers(node({}, unreadable, cordoned=True), {})
    assert found is not None and found.annotations and not found.uncordon


def test_a_record_of_a_module_deleted_and_re_created_under_its_name_is_left_over() -> None:
    key = upgrade_annotation_key("a", "m")
    live = live_parts([module("a", "m", uid="new")])
    found = leftovers(node({}, {key: held(True, owner="old")}, cordoned=True), live)
    assert found is not None and found.annotations == (key,) and found.uncordon
    assert leftovers(node({}, {key: held(True, owner="new")}, cordoned=True), live) is None
    assert leftovers(node({}, {key: held(True)}, cordoned=True), live) is None  # older ooto


def test_under_a_watch_namespace_other_namespaces_keys_are_not_judged() -> None:
    labels = {ready_label_key("b", "theirs"): "true", ready_label_key("a", "gone"): "true"}
    found = leftovers(node(labels, {}), {}, namespace="a")
    assert found is not None and found.labels == (ready_label_key("a", "gone"),)
    assert carries_module_keys(node(labels, {})) and not carries_module_keys(node({}, {}))
    # A namespace too long for the verbatim form: its hashed keys are still its own.
    long_ns = "l" * 60
    labels = {ready_label_key(long_ns, "gone"): "true", ready_label_key("l" * 61, "x"): "true"}
    found = leftovers(node(labels, {}), {}, namespace=long_ns)
    assert found is not None and found.labels == (ready_label_key(long_ns, "gone"),)


class Store:
    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = objs

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objs if o["metadata"]["name"] == name), None)

    def list(self) -> list[dict[str, Any]]:
        return list(self.objs)


class FlakyIO:
    """Refuses the first `failures` Node patches, then applies them to its Node cache."""

    def __init__(self, nodes: list[dict[str, Any]], failures: int) -> None:
        self.nodes, self.modules = Store(nodes), Store([])
        self.failures = failures
        self.calls: queue.Queue[tuple[Any, ...]] = queue.Queue()

    async def patch_node(self, name: str, labels: Any, notes: Any, cordon: Any, **kw: Any) -> Any:
        self.calls.put((name, dict(labels), dict(notes), cordon, kw))
        if self.failures:
            self.failures -= 1
            raise ApiError(500, "InternalError", "etcd is having a bad day")
        stored = self.nodes.get("", name)
        assert stored is not None
        meta = stored["metadata"]
        meta["labels"] = {k: v for k, v in meta["labels"].items() if k not in labels}
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in notes}
        stored["spec"] = {}
        return stored


def test_the_cleaner_retries_a_failed_cleanup_until_it_is_done(
    loop: asyncio.AbstractEventLoop,
) -> None:
    gone = ready_label_key("a", "gone")
    notes = {upgrade_annotation_key("a", "gone"): held(True)}
    io = FlakyIO([node({gone: "true"}, notes, cordoned=True)], failures=2)
    cleaner = NodeCleaner.start(Bridge(loop), io, Backoff(0.05, 0.1), None)
    try:
        cleaner.tell(NodeObserved("ADDED", io.nodes.objs[0]))  # before the caches are synced
        cleaner.ask(Flush("barrier"))
        asyncio.run_coroutine_threadsafe(_turns(3), loop).result(5)
        assert io.calls.empty()  # an unsynced Module cache would call every key left over
        cleaner.tell(SweepLeftovers())
        calls = [io.calls.get(timeout=5) for _ in range(3)]  # two refused, then done
        assert all(
            c == ("n1", {gone: None}, dict.fromkeys(notes), False, calls[0][4]) for c in calls
        )
        assert calls[0][4] == {"resource_version": "42"}
        cleaner.tell(NodeObserved("MODIFIED", io.nodes.objs[0]))  # at rest: nothing more
        cleaner.ask(SweepLeftovers())
        # Anything it started is on the loop by now: let the loop run it to its first await.
        asyncio.run_coroutine_threadsafe(_turns(3), loop).result(5)
        assert io.calls.empty()
    finally:
        cleaner.stop()


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)
