"""LoaderPods: the node's current loader pod, cached per node, follows every pod event."""

from __future__ import annotations

from typing import Any

from actors.rollout_views import LoaderPods
from ooto.domain.render import LABEL_MODULE


def pod(uid: str, created: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": uid,
            "namespace": "ns",
            "creationTimestamp": created,
            "labels": {LABEL_MODULE: "mod"},
            **meta,
        },
        "spec": {"nodeName": "n1"},
    }


def test_current_pod_follows_updates_and_deletions_after_being_asked() -> None:
    pods = LoaderPods("ns", "mod")
    old = pod("a", "2026-01-01T00:00:00Z")
    pods.observe("ADDED", old)
    assert pods.current("n1") is old
    new = pod("b", "2026-01-01T00:01:00Z")
    pods.observe("ADDED", new)
    assert pods.current("n1") is new
    going = pod("b", "2026-01-01T00:01:00Z", deletionTimestamp="2026-01-01T00:02:00Z")
    pods.observe("MODIFIED", going)
    assert pods.current("n1") is old
    pods.observe("DELETED", old)
    assert pods.current("n1") is None
    assert pods.current("n2") is None


def test_another_modules_pod_changes_nothing() -> None:
    pods = LoaderPods("ns", "mod")
    mine = pod("a", "2026-01-01T00:00:00Z")
    pods.observe("ADDED", mine)
    assert pods.current("n1") is mine
    other = pod("z", "2026-01-02T00:00:00Z")
    other["metadata"]["labels"] = {LABEL_MODULE: "other"}
    assert pods.observe("ADDED", other) == ""
    assert pods.current("n1") is mine
