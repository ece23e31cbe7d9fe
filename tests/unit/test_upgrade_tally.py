"""The incremental Tally agrees with the full walks (`progress`, `candidates`) over any
history of changes, as long as every changed node is told: the RolloutActor relies on it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ooto.domain.digest import LOAD_DIGEST_ANNOTATION
from ooto.domain.upgrade.budget import candidates
from ooto.domain.upgrade.progress import progress
from ooto.domain.upgrade.state import NodeUpgrade, NodeUpgradeState
from ooto.domain.upgrade.tally import Tally

NODES = ["a", "b", "c", "d", "e"]


def pod(kernel: str, digest: str | None, ready: bool) -> dict[str, Any]:
    annotations = {LOAD_DIGEST_ANNOTATION: digest} if digest else {}
    status = "True" if ready else "False"
    return {
        "metadata": {"labels": {"ooto.sigs.k8s.io/kernel": kernel}, "annotations": annotations},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


def node(skip: bool, ready: str | None) -> dict[str, Any]:
    labels = {"ooto.sigs.k8s.io/upgrade.skip": "true"} if skip else {}
    conditions = [{"type": "Ready", "status": ready}] if ready else []
    return {"metadata": {"labels": labels}, "status": {"conditions": conditions}}


kernels = st.sampled_from(["k1", "k2"])
digests = st.sampled_from(["d1", "d2"])
targets = st.one_of(st.none(), st.tuples(kernels, digests))
pods = st.one_of(st.none(), st.builds(pod, kernels, st.one_of(st.none(), digests), st.booleans()))
upgrades = st.one_of(
    st.none(),
    st.builds(NodeUpgrade, st.sampled_from(list(NodeUpgradeState)), generation=st.integers(0, 2)),
)
node_objs = st.one_of(
    st.none(), st.builds(node, st.booleans(), st.sampled_from([None, "True", "Unknown"]))
)
change = st.tuples(st.sampled_from(NODES), st.sampled_from(["target", "pod", "upgrade", "node"]))


@given(st.lists(st.tuples(change, targets, pods, upgrades, node_objs), max_size=40))
def test_the_tally_agrees_with_the_full_walks(history: list[Any]) -> None:
    facts: dict[str, dict[str, Any]] = {n: {} for n in NODES}
    tally = Tally()
    for (name, what), target, new_pod, upgrade, node_obj in history:
        value = {"target": target, "pod": new_pod, "upgrade": upgrade, "node": node_obj}[what]
        facts[name][what] = value
        seen = facts[name]
        tally.update(
            name, seen.get("target"), seen.get("upgrade"), seen.get("pod"), seen.get("node")
        )

        wanted = {n: f["target"] for n, f in facts.items() if f.get("target") is not None}
        ups = {n: f["upgrade"] for n, f in facts.items() if f.get("upgrade") is not None}

        def pod_of(n: str) -> Any:
            return facts[n].get("pod")

        def node_of(n: str) -> Any:
            return facts[n].get("node")

        assert tally.counts() == progress(wanted, ups, pod_of)
        assert tally.candidates() == candidates(wanted, ups, pod_of, node_of)


def test_a_node_that_left_is_no_longer_counted() -> None:
    tally = Tally()
    tally.update("a", ("k1", "d2"), None, pod("k1", "d1", True), node(False, "True"))
    assert tally.counts()["pending"] == 1 and tally.candidates() == ["a"]
    tally.update("a", None, None, pod("k1", "d1", True), node(False, "True"))
    assert sum(tally.counts().values()) == 0 and tally.candidates() == []
