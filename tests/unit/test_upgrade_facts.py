"""What the rollout reads from loader pods, DaemonSets and Nodes, and the progress it reports."""

from __future__ import annotations

from typing import Any

from ooto.domain.digest import LOAD_DIGEST_ANNOTATION
from ooto.domain.upgrade import facts
from ooto.domain.upgrade.budget import candidates, failed_in
from ooto.domain.upgrade.progress import progress, upgrade_status
from ooto.domain.upgrade.state import NodeUpgrade, NodeUpgradeState

K = "ooto.sigs.k8s.io/kernel"


def pod(uid: str, kernel: str = "k1", digest: str | None = "d1", **meta: Any) -> dict[str, Any]:
    annotations = {LOAD_DIGEST_ANNOTATION: digest} if digest else {}
    return {
        "metadata": {"uid": uid, "labels": {K: kernel}, "annotations": annotations, **meta},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_the_desired_digest_is_the_loader_template_s() -> None:
    ds = {"spec": {"template": {"metadata": {"annotations": {LOAD_DIGEST_ANNOTATION: "d2"}}}}}
    assert facts.template_digest(ds) == "d2"
    assert facts.template_digest(None) is None and facts.template_digest({"spec": {}}) is None


def test_the_current_pod_is_the_newest_not_being_deleted() -> None:
    old = pod("a", creationTimestamp="2026-01-01T00:00:00Z")
    new = pod("b", creationTimestamp="2026-01-02T00:00:00Z")
    going = pod("c", creationTimestamp="2026-01-03T00:00:00Z", deletionTimestamp="now")
    assert facts.current_pod([old, new, going]) is new
    assert facts.current_pod([going]) is None
    assert not facts.pod_ready(going)


def test_what_needs_an_upgrade() -> None:
    assert facts.needs_upgrade(pod("a", digest="d1"), "k1", "d2")
    assert not facts.needs_upgrade(pod("a", digest="d2"), "k1", "d2")
    assert not facts.needs_upgrade(pod("a", digest=None), "k1", "d2")  # made before digests
    assert not facts.needs_upgrade(pod("a", kernel="k0"), "k1", "d2")  # a kernel upgrade
    assert not facts.needs_upgrade(None, "k1", "d2")  # a new node: not throttled


def test_candidates_skip_held_nodes_and_put_failed_ones_first() -> None:
    targets = {"a": ("k1", "d2"), "b": ("k1", "d2"), "c": ("k1", "d2"), "d": ("k1", "d2")}
    pods = {n: pod(n) for n in targets}
    nodes = {n: {"metadata": {"labels": {}}} for n in targets}
    nodes["c"]["metadata"]["labels"]["ooto.sigs.k8s.io/upgrade.skip"] = "true"
    failed = NodeUpgrade(NodeUpgradeState.FAILED, generation=1)
    upgrades = {"d": failed, "b": NodeUpgrade(NodeUpgradeState.POD_RESTART_REQUIRED)}
    assert candidates(targets, upgrades, pods.get, nodes.get) == ["d", "a"]
    assert failed_in(upgrades, 1) == {"d": failed} and failed_in(upgrades, 2) == {}


def test_progress_counts_every_node_once() -> None:
    targets = {"a": ("k1", "d2"), "b": ("k1", "d2"), "c": ("k1", "d2"), "d": ("k1", "d2")}
    pods = {"a": pod("a", digest="d2"), "b": pod("b"), "c": pod("c")}
    upgrades = {"b": NodeUpgrade(NodeUpgradeState.POD_DELETION_REQUIRED)}
    counts = progress(targets, upgrades, pods.get)
    assert counts == {"upToDate": 1, "upgrading": 1, "failed": 0, "pending": 2}
    status = upgrade_status(facts.module_digest({"k1": "d2"}), counts)
    assert status["nodesPending"] == 2 and len(status["digest"]) == 64


def test_a_notready_node_is_not_started_it_waits_until_ready_again() -> None:
    """Its pods could not leave (no kubelet to stop them) nor its new loader start: starting it
    would fail at a timeout and stop the whole rollout."""
    targets = {"a": ("k1", "d2"), "b": ("k1", "d2"), "c": ("k1", "d2")}
    pods = {n: pod(n) for n in targets}
    nodes: dict[str, dict[str, Any]] = {n: {"metadata": {"labels": {}}} for n in targets}
    nodes["a"]["status"] = {"conditions": [{"type": "Ready", "status": "Unknown"}]}
    nodes["b"]["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    # c reports no Ready condition yet: its kubelet has not said otherwise.
    assert candidates(targets, {}, pods.get, nodes.get) == ["b", "c"]
