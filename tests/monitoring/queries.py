"""What the shipped rules and dashboard ask Prometheus for: metric names and the labels each query
relies on, read from charts/ooto/files/ (the files the chart ships).

Not a PromQL parser: ooto's queries are simple enough for patterns, and a query these patterns
misread shows up as a test failure naming the query, never as a silent pass (every query must
name at least one metric).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "ooto" / "files"
RULES = FILES / "prometheus-rules.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
RULES_TEST = Path(__file__).parent / "prometheus-rules.test.yaml"

TARGET_LABELS = frozenset({"instance", "job"})
"""Added by Prometheus to every scraped series, not exported by ooto."""

_METRIC = re.compile(r"\b((?:ooto|process)_[a-z_]+)\b")
_SELECTOR = re.compile(r"\b((?:ooto|process)_[a-z_]+)\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)|\{\{\s*(\w+)\s*\}\}")
_GRAFANA_RANGE = re.compile(r"\$__rate_interval|\$__interval|\$__range")


@dataclass(frozen=True)
class Query:
    """One PromQL expression: where it comes from, the metrics it reads, the labels it needs."""

    origin: str
    expr: str
    metrics: frozenset[str]
    matchers: frozenset[tuple[str, str]]  # (metric, label) from selectors like m{label="x"}
    grouping: frozenset[str]  # labels from by/on/... clauses and from legends or annotations


def parse(origin: str, expr: str, texts: tuple[str, ...] = ()) -> Query:
    expr = _GRAFANA_RANGE.sub("5m", expr)
    matchers = {
        (metric, label)
        for metric, inside in _SELECTOR.findall(expr)
        for label in _MATCHER.findall(inside)
    }
    grouping = {label.strip() for clause in _GROUPING.findall(expr) for label in clause.split(",")}
    for text in texts:
        grouping |= {a or b for a, b in _TEMPLATE_LABEL.findall(text)}
    grouping -= {"", "le", "value"}  # `le`: histogram buckets, consumed by histogram_quantile
    return Query(
        origin, expr, frozenset(_METRIC.findall(expr)), frozenset(matchers), frozenset(grouping)
    )


def rule_groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULES.read_text())["groups"])


def rule_queries() -> list[Query]:
    queries = []
    for group in rule_groups():
        for rule in group["rules"]:
            texts = tuple(str(v) for v in (rule.get("annotations") or {}).values())
            queries.append(parse(f"alert {rule['alert']}", rule["expr"], texts))
    return queries


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> list[Query]:
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            legend = (target.get("legendFormat") or "",)
            queries.append(parse(f"panel {panel['title']!r}", target["expr"], legend))
    return queries


def all_queries() -> list[Query]:
    return [*rule_queries(), *dashboard_queries()]
