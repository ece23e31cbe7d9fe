"""The pure decisions inside the actors: node selection, kernel labels, DaemonSet readiness."""

from __future__ import annotations

from typing import Any

from actors.node_tracker import NodeView, Subscription, _reindex, kernel_patch, node_view, selects
from ooto.domain.render import NODE_KERNEL_ANNOTATION, NODE_KERNEL_LABEL
from ooto.domain.stored import daemonset_ready, owned_by, trim_pod


def node(kernel: str | None, labels: dict[str, str] | None = None) -> dict[str, object]:
    info = {"kernelVersion": kernel} if kernel is not None else {}
    return {"metadata": {"name": "n", "labels": labels or {}}, "status": {"nodeInfo": info}}


def test_a_node_without_our_label_gets_it_and_the_raw_annotation() -> None:
    labels, annotations = kernel_patch(node_view(node("6.1.0-rpi7-rpi-v8+"))) or ({}, {})
    assert labels[NODE_KERNEL_LABEL] != "6.1.0-rpi7-rpi-v8+"  # '+' is not label-safe
    assert annotations[NODE_KERNEL_ANNOTATION] == "6.1.0-rpi7-rpi-v8+"


def test_a_correctly_labelled_node_needs_no_write() -> None:
    kernel = "5.4.0-1054-gke"
    raw = node(kernel, {NODE_KERNEL_LABEL: kernel})
    raw["metadata"]["annotations"] = {NODE_KERNEL_ANNOTATION: kernel}  # type: ignore[index]
    assert kernel_patch(node_view(raw)) is None


def test_a_node_that_stops_reporting_a_kernel_loses_our_label() -> None:
    view = node_view(node("", {NODE_KERNEL_LABEL: "5.4.0"}))
    assert view.kernel is None
    assert kernel_patch(view) == ({NODE_KERNEL_LABEL: None}, {NODE_KERNEL_ANNOTATION: None})


def test_selector_matching_is_exact_on_every_key() -> None:
    assert selects({"gpu": "true"}, {"gpu": "true", "zone": "a"})
    assert not selects({"gpu": "true"}, {"gpu": "True"})
    assert selects({}, {})


def test_the_kernel_index_follows_upgrades_and_selection() -> None:
    sub = Subscription({"gpu": "true"}, subscriber=None)
    a = NodeView({"gpu": "true"}, "A", None)
    b = NodeView({"gpu": "true"}, "B", None)
    unselected = NodeView({"gpu": "false"}, "B", None)
    assert _reindex(sub, "n1", None, a) and sub.kernels == {"A": {"n1"}}
    assert _reindex(sub, "n1", a, b) and sub.kernels == {"B": {"n1"}}
    assert not _reindex(sub, "n1", b, b)
    assert _reindex(sub, "n1", b, unselected) and sub.kernels == {}
    assert not _reindex(sub, "n2", None, unselected)


def test_daemonset_readiness_needs_a_current_generation_and_every_pod_ready() -> None:
    ds = {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "desiredNumberScheduled": 3,
            "numberReady": 3,
            "updatedNumberScheduled": 3,
        },
    }
    assert daemonset_ready(ds) == (3, True)
    stale = {**ds, "status": {**ds["status"], "observedGeneration": 1}}
    assert daemonset_ready(stale) == (3, False)
    rolling = {**ds, "status": {**ds["status"], "updatedNumberScheduled": 1}}
    assert daemonset_ready(rolling) == (3, False)
    assert daemonset_ready(None) == (0, False)


def test_an_on_delete_daemonset_with_every_pod_ready_is_ready_on_an_older_template() -> None:
    """Loader pods stay on their template when the load digest did not change (issue 12)."""
    ds = {
        "metadata": {"generation": 2},
        "spec": {"updateStrategy": {"type": "OnDelete"}},
        "status": {
            "observedGeneration": 2,
            "desiredNumberScheduled": 3,
            "numberReady": 3,
            "updatedNumberScheduled": 0,
        },
    }
    assert daemonset_ready(ds) == (3, True)
    assert daemonset_ready({**ds, "status": {**ds["status"], "numberReady": 2}}) == (2, False)


def test_only_objects_we_control_count_as_ours() -> None:
    ours = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert owned_by(ours, "u1") and not owned_by(ours, "u2")
    assert not owned_by({"metadata": {"ownerReferences": [{"uid": "u1"}]}}, "u1")


def test_a_notready_or_cordoned_node_is_unavailable() -> None:
    ready = node("A")
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]  # type: ignore[index]
    assert node_view(ready).available
    not_ready = node("A")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]  # type: ignore[index]
    assert not node_view(not_ready).available
    cordoned = {**ready, "spec": {"unschedulable": True}}
    assert not node_view(cordoned).available
    assert node_view(node("A")).available  # no Ready condition yet: nothing says otherwise


def test_a_hostile_kernel_string_places_nothing_and_loses_our_label() -> None:
    hostile = "6.1.0-9-amd64; touch /tmp/x $(id)"
    view = node_view(node(hostile, {NODE_KERNEL_LABEL: "6.1.0-9-amd64"}))
    assert view.kernel is None and view.refused == hostile
    assert kernel_patch(view) == ({NODE_KERNEL_LABEL: None}, {NODE_KERNEL_ANNOTATION: None})
    sub = Subscription({}, subscriber=None)
    assert _reindex(sub, "n1", None, view)
    assert sub.kernels == {} and sub.refused == {"n1"}
    fixed = node_view(node("6.1.0-9-amd64"))
    assert _reindex(sub, "n1", view, fixed)
    assert sub.kernels == {"6.1.0-9-amd64": {"n1"}} and sub.refused == set()


def test_unavailable_selected_nodes_are_flagged_in_the_subscription() -> None:
    sub = Subscription({"gpu": "true"}, subscriber=None)
    up = NodeView({"gpu": "true"}, "A", None)
    down = NodeView({"gpu": "true"}, "A", None, available=False)
    assert _reindex(sub, "n1", None, down) and sub.unavailable == {"n1"}
    assert _reindex(sub, "n1", down, up) and sub.unavailable == set()
    assert sub.kernels == {"A": {"n1"}}


def test_daemonset_readiness_excuses_unavailable_nodes() -> None:
    ds = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 2,
        },
    }
    assert daemonset_ready(ds) == (2, False)
    assert daemonset_ready(ds, excused=1) == (2, True)


def test_a_trimmed_loader_pod_keeps_what_ready_labels_and_upgrades_read() -> None:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "p",
            "namespace": "n",
            "uid": "u",
            "labels": {"a": "b"},
            "annotations": {"ooto.sigs.k8s.io/load-digest": "sha256:1", "other": "x"},
            "creationTimestamp": "t0",
            "deletionTimestamp": "t1",
            "managedFields": [{"big": "yes"}],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    trim_pod(pod)
    assert pod["metadata"]["annotations"] == {"ooto.sigs.k8s.io/load-digest": "sha256:1"}
    assert "managedFields" not in pod["metadata"] and pod["metadata"]["deletionTimestamp"] == "t1"
    assert pod["spec"] == {"nodeName": "node-1"}
    assert pod["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_resource_versions_compare_as_numbers_and_odd_ones_as_zero() -> None:
    from ooto.domain.stored import parse_resource_version, resource_version

    assert resource_version({"metadata": {"resourceVersion": "10"}}) > resource_version(
        {"metadata": {"resourceVersion": "9"}}
    )
    assert [parse_resource_version(v) for v in ("", None, "x1", "42")] == [0, 0, 0, 42]
    assert resource_version({}) == 0
