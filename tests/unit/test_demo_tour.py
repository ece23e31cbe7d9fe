"""The demo tour's judgements: a rollout seen node by node, the Module's upgrade done, the answer
`ooto preflight` must give for the sample, and the upgrade gauge read back from /metrics."""

from __future__ import annotations

import json
from typing import Any

from ooto.metrics import Metrics
from ooto.testing.demo_tour import (
    RolloutLog,
    bumped_mappings,
    preflight_as_expected,
    upgrade_done,
    upgrade_gauge,
)

KEY = "upgrade.ooto.sigs.k8s.io/ooto-demo.demo-kmod"
LABEL = "ready.ooto.sigs.k8s.io/ooto-demo.demo-kmod"


def node(name: str, state: str | None, label: bool = True, **record: Any) -> dict[str, Any]:
    annotations = {} if state is None else {KEY: json.dumps({"state": state, **record})}
    labels = {LABEL: "true"} if label else {}
    return {"metadata": {"name": name, "annotations": annotations, "labels": labels}}


def test_a_node_by_node_rollout_is_logged_in_order_one_at_a_time() -> None:
    log = RolloutLog(KEY, LABEL)
    for name in ("a", "b"):
        log.saw(node(name, None))
        log.saw(node(name, "pod-restart-required"))
        log.saw(node(name, "pod-restart-required"))  # a patch of something else: no new line
        log.saw(node(name, "uncordon-required"))
        log.saw(node(name, None))
    assert log.upgraded == ["a", "b"]
    assert log.most_at_once == 1
    assert not log.states and not log.failed


def test_overlapping_upgrades_and_failures_are_counted() -> None:
    log = RolloutLog(KEY, LABEL)
    log.saw(node("a", "pod-restart-required"))
    log.saw(node("b", "pod-deletion-required"))
    log.saw(node("b", "upgrade-failed", cause="evictions timed out"))
    assert log.most_at_once == 2
    assert log.failed == ["b"]
    assert log.upgraded == []


def test_a_node_is_upgraded_only_once_its_ready_label_is_back() -> None:
    log = RolloutLog(KEY, LABEL)
    log.saw(node("a", "pod-restart-required", label=False))
    log.saw(node("a", None, label=False))
    assert log.upgraded == [] and log.states == {"a": "pod-restart-required"}
    log.saw(node("a", None))
    assert log.upgraded == ["a"] and not log.states


def test_an_unreadable_record_is_no_record() -> None:
    log = RolloutLog(KEY, LABEL)
    log.saw({"metadata": {"name": "a", "annotations": {KEY: "{not json"}}})
    assert not log.states


def test_every_image_tag_is_bumped_and_the_module_is_left_alone() -> None:
    module = {"spec": {"kernelMappings": [{"literal": "k", "containerImage": "r/m:${KERNEL}"}]}}
    assert bumped_mappings(module) == [{"literal": "k", "containerImage": "r/m:${KERNEL}-v2"}]
    assert module["spec"]["kernelMappings"][0]["containerImage"] == "r/m:${KERNEL}"


def module(generation: int, observed: int, ready: str, up_to_date: int, upgrading: int) -> Any:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": ready}],
            "upgrade": {"nodesUpToDate": up_to_date, "nodesUpgrading": upgrading},
        },
    }


def test_the_upgrade_is_done_only_for_the_new_generation_on_every_node() -> None:
    assert upgrade_done(module(2, 2, "True", 3, 0), 3)
    assert not upgrade_done(module(2, 1, "True", 3, 0), 3)  # the old generation's Ready
    assert not upgrade_done(module(2, 2, "False", 3, 0), 3)
    assert not upgrade_done(module(2, 2, "True", 2, 1), 3)
    assert not upgrade_done({"metadata": {"generation": 1}}, 3)


TABLE = """\
MODULE               KERNEL                  VERDICT    IMAGE  MESSAGE
ooto-demo/demo-kmod  5.17.0-300.fc36.x86_64  NoMapping  -      no kernelMappings entry matches
ooto-demo/demo-kmod  5.4.0-1060-gke          WillBuild  r/m:x  not in the registry; will build

1 of 2 Module/kernel pairs ready
"""


def test_preflight_must_answer_exit_1_with_the_samples_verdicts() -> None:
    assert preflight_as_expected(1, TABLE)
    assert not preflight_as_expected(0, TABLE)
    assert not preflight_as_expected(2, "ooto preflight: cannot read the kubeconfig\n")
    assert not preflight_as_expected(1, TABLE.replace("WillBuild", "NoMapping"))


def test_the_upgrade_gauge_is_read_back_from_the_exposition() -> None:
    metrics = Metrics()
    metrics.set_upgrade_nodes("ooto-demo", "demo-kmod", {"upToDate": 3})
    text = metrics.exposition().decode()
    assert upgrade_gauge(text, "ooto-demo", "demo-kmod", "upToDate") == 3
    assert upgrade_gauge(text, "ooto-demo", "demo-kmod", "failed") == 0
    assert upgrade_gauge(text, "ooto-demo", "other", "upToDate") is None
