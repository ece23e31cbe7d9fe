"""The shipped alerts and dashboard: promtool's rule tests pass, and every query reads metrics and
labels that ooto exports (a rule on a metric nobody exports never fires; a panel shows "No
data"). tests/integration/test_monitoring.py checks the same against a real Prometheus."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ooto.metrics import Metrics
from tests.monitoring.queries import (
    RULES,
    RULES_TEST,
    TARGET_LABELS,
    all_queries,
    dashboard,
    rule_groups,
)
from tests.unit.test_chart import render


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("OOTO_REQUIRE_CLUSTER"):
            pytest.fail("OOTO_REQUIRE_CLUSTER is set but promtool is missing (Debian: prometheus)")
        pytest.skip("promtool missing: apt-get install prometheus (ooto cluster install does)")
    return found


def exported() -> dict[str, set[str]]:
    """Sample name -> label keys, from a Metrics instance with every series in use."""
    m = Metrics()
    m.declare_build_backend("KanikoJobBackend")
    m.build_started("KanikoJobBackend")
    m.build_finished("KanikoJobBackend", succeeded=False, seconds=3)
    m.observe("get", "nodes", 200, 0.01)
    m.watch_restarted("nodes")
    m.watching("nodes")
    m.observe_message_latency("KernelActor", 0.002)
    m.observe_module("ns", "mod", {"nodesDesired": 1, "nodesReady": 1})
    m.set_kernel_actors_by_state({"Ready": 1})
    m.set_upgrade_nodes("ns", "mod", {"upToDate": 1})
    m.set_leader(True)
    m.event_dropped()
    m.set_loop_lag(0.001)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        cwd=RULES_TEST.parent,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_and_has_its_text_and_runbook() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    operations = (Path(RULES).parents[3] / "docs" / "operations.md").read_text()
    for group in rule_groups():
        for rule in group["rules"]:
            name = rule["alert"]
            assert name in fired and name in quiet, f"{name}: test it firing and staying quiet"
            annotations = rule["annotations"]
            assert {"summary", "description", "runbook_url"} <= set(annotations), name
            assert annotations["runbook_url"] == f"OOTO_RUNBOOKS#{name.lower()}", name
            assert f"### {name}" in operations, f"docs/operations.md has no runbook for {name}"
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), name


def test_promtool_input_series_match_what_ooto_exports() -> None:
    names = exported()
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for series in test["input_series"]:
            name, _, rest = series["series"].partition("{")
            labels = set(re.findall(r"(\w+)=", rest)) - TARGET_LABELS
            assert name in names, f"{name} is not exported by ooto"
            assert labels <= names[name], f"{series['series']}: ooto has {names[name]}"


def test_every_query_reads_exported_metrics_and_labels() -> None:
    names = exported()
    for query in all_queries():
        assert query.metrics, f"{query.origin}: no metric found in {query.expr!r}"
        for metric in query.metrics:
            assert metric in names, f"{query.origin}: {metric} is not exported"
        for metric, label in query.matchers:
            assert label in names[metric] | TARGET_LABELS, (
                f"{query.origin}: {metric} has no {label}"
            )
        carried = set().union(*(names[m] for m in query.metrics)) | TARGET_LABELS
        assert query.grouping <= carried, f"{query.origin}: {query.grouping - carried} missing"


def test_dashboard_panels_are_well_formed() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in board["panels"] if panel["type"] != "row"}
    for wanted in (
        "Modules by state",
        "Kernel actors by phase",
        "Nodes ready / desired per Module",
        "Builds",
        "Signs",
        "Upgrade progress",
        "Node upgrade duration",
        "API requests by verb and code",
        "API latency (p99)",
        "Actor mailbox wait (p99)",
        "Actor messages",
        "CPU",
        "Memory",
    ):
        assert wanted in titles
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and panel["description"], panel["title"]


def _kinds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def test_the_chart_ships_both_files_as_they_are_only_when_asked() -> None:
    default = _kinds(render())
    assert "PrometheusRule" not in default
    assert not any(
        d["metadata"]["name"].endswith("-dashboard") for d in render() if d["kind"] == "ConfigMap"
    )
    docs = render(
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kps",
        "prometheusRule.runbookBaseUrl=https://runbooks.example/ooto",
        "grafanaDashboard.enabled=true",
    )
    rule = _kinds(docs)["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    expected = yaml.safe_load(
        RULES.read_text().replace("OOTO_RUNBOOKS", "https://runbooks.example/ooto")
    )
    assert rule["spec"] == expected
    (configmap,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert yaml.safe_load(configmap["data"]["ooto.json"]) == dashboard()


def test_the_service_monitor_keeps_the_modules_namespace_label() -> None:
    """Alerts name `$labels.namespace`: the Module's, not the operator pod's target label."""
    (monitor,) = [d for d in render("serviceMonitor.enabled=true") if d["kind"] == "ServiceMonitor"]
    assert [e.get("honorLabels") for e in monitor["spec"]["endpoints"]] == [True]
