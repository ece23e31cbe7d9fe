"""The scale benchmark's bookkeeping (tests/bench): ready-label writes counted apart from the day-1
writes, in the operator's own request counter, and the report's columns for them."""

from __future__ import annotations

from typing import Any

import pytest

from ooto.domain.upgrade.keys import ready_label_key
from ooto.kube.resources import Resource
from ooto.metrics import Metrics
from ooto.operator_io import KubeOperatorIO
from tests.bench import ready_writes
from tests.bench.ready_writes import READY_LABEL_RESOURCE, is_ready_label_write
from tests.bench.report import ConvergeRow, Results, median_row, report_lines, split_writes

READY = ready_label_key("bench-500", "mod")


@pytest.mark.parametrize(
    ("labels", "annotations", "unschedulable", "expected"),
    [
        ({READY: "true"}, {}, None, True),
        ({READY: "true", ready_label_key("ns", "other"): "true"}, {}, None, True),
        ({READY: None}, {}, None, False),  # taken off: not a ready-label write
        ({READY: "true"}, {"upgrade.ooto.sigs.k8s.io/bench-500.mod": None}, False, False),
        ({READY: "true"}, {}, False, False),  # an uncordon goes with it: an upgrade step
        ({"kernel.ooto.sigs.k8s.io/full-version": "5.14"}, {}, None, False),
        ({}, {}, None, False),
    ],
)
def test_what_counts_as_a_ready_label_write(
    labels: dict[str, str | None],
    annotations: dict[str, str | None],
    unschedulable: bool | None,
    expected: bool,
) -> None:
    assert is_ready_label_write(labels, annotations, unschedulable) is expected


class CountingApi:
    """Stands in for KubeApi: reports each request to the observer from inside the call, as
    KubeApi does (same task)."""

    def __init__(self, observer: Metrics) -> None:
        self.observer = observer

    async def patch(self, res: Resource, name: str, patch: Any, *_: Any, **__: Any) -> Any:
        self.observer.observe("patch", res.plural, 200, 0.001)
        return {"metadata": {"name": name}}


def requests(metrics: Metrics) -> dict[str, int]:
    return {
        resource: metrics.requests_total(verb="patch", resource=resource)
        for resource in ("nodes", READY_LABEL_RESOURCE)
    }


async def test_installed_the_ready_label_writes_are_counted_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # monkeypatch restores the classes after the test: install() patches them for the process
    monkeypatch.setattr(KubeOperatorIO, "patch_node", KubeOperatorIO.patch_node)
    monkeypatch.setattr(Metrics, "observe", Metrics.observe)
    ready_writes.install()
    metrics = Metrics()
    io = object.__new__(KubeOperatorIO)
    io._api = CountingApi(metrics)

    await io.patch_node("n1", {READY: "true"}, {})
    await io.patch_node("n2", {READY: "true"}, {})
    await io.patch_node_kernel("n1", {"kernel.ooto.sigs.k8s.io/full-version": "5.14"}, {})
    await io.patch_node("n1", {READY: None}, {"upgrade.ooto.sigs.k8s.io/x": "{}"}, True)
    metrics.observe("patch", "nodes", 200, 0.001)  # outside a patch_node: untagged

    assert requests(metrics) == {"nodes": 3, READY_LABEL_RESOURCE: 2}


async def test_not_installed_every_node_patch_is_nodes() -> None:
    metrics = Metrics()
    io = object.__new__(KubeOperatorIO)
    io._api = CountingApi(metrics)
    await io.patch_node("n1", {READY: "true"}, {})
    assert requests(metrics) == {"nodes": 1, READY_LABEL_RESOURCE: 0}


def row(n: int, created: float, floor: float, labels: float, floor_labels: float) -> ConvergeRow:
    r = ConvergeRow(n, floor, api_floor=floor)
    r.created, r.ready, r.ready_labels, r.floor_ready_labels = (
        created,
        2 * labels,
        labels,
        floor_labels,
    )
    r.writes = {
        ("patch", "nodes"): n,
        ("create", "daemonsets"): n,
        ("patch", "modules/status"): 3,
        ("patch", READY_LABEL_RESOURCE): n,
    }
    return r


def test_split_writes_keeps_the_day_one_writes_as_they_were() -> None:
    day1, ready = split_writes(row(500, 1, 1, 1, 1).writes)
    assert ready == 500
    assert day1 == {
        ("patch", "nodes"): 500,
        ("create", "daemonsets"): 500,
        ("patch", "modules/status"): 3,
    }


def test_median_row_ratios_per_round_for_both_floors() -> None:
    rows = [
        row(100, 1.2, 1.0, 3.0, 2.0),
        row(100, 0.9, 1.0, 2.0, 2.0),
        row(100, 1.5, 1.0, 6.0, 3.0),
    ]
    median = median_row(rows)
    assert (median.created, median.ready_labels, median.floor_ready_labels) == (1.2, 3.0, 2.0)
    assert median.round_ratios == [1.2, 0.9, 1.5]
    assert median.label_ratios == [1.5, 1.0, 2.0]


def test_report_has_a_cell_per_column_and_the_ready_label_writes_apart() -> None:
    results = Results(concurrency=32, rounds=1, rows=[median_row([row(500, 1.8, 1.4, 13.0, 12.5)])])
    header, _, cells = report_lines(results, "test machine")[2:5]
    names = [c.strip() for c in header.strip("|").split("|")]
    cells_in_order = [c.strip() for c in cells.strip("|").split("|")]
    values = dict(zip(names, cells_in_order, strict=True))
    assert values["all DaemonSets + labels (s)"] == "1.80"
    assert values["ready labels (s)"] == "13.00"
    assert values["floor, ready labels (s)"] == "12.50"
    ratio = names.index("floor, ready labels (s)") + 1
    assert (names[ratio], cells_in_order[ratio]) == ("ratio", "1.04x")
    assert values["writes during convergence, ready labels apart"].startswith("1003 (min 1001)")
    assert "patch nodes 500 (min 500)" in values["writes during convergence, ready labels apart"]
    assert values["ready-label writes"] == "500 (min 500)"
