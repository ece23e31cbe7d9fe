"""The names the docs give (settings, flags, metrics, reasons, chart values and Services, test
counts) are the names in the code, both ways where the docs promise a complete list.

Each failure says exactly what to add or remove, and where.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from ooto.cli import build_parser
from ooto.domain.reasons import EventReason, Reason
from ooto.metrics import Metrics
from ooto.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
VALUES = ROOT / "charts" / "ooto" / "values.yaml"
TEMPLATES = ROOT / "charts" / "ooto" / "templates"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), VALUES]

NOT_SETTINGS = {
    "OOTO_REQUIRE_CLUSTER": "tests: fail instead of skipping without a local control plane",
    "OOTO_RUNBOOKS": "placeholder in charts/ooto/files/prometheus-rules.yaml",
}
OTHER_TOOLS_FLAGS = {
    # helm
    "--set", "--reuse-values", "--reset-then-reuse-values", "--namespace", "--create-namespace",
    "--force-conflicts",
    # kubectl
    "--field-selector", "--from-file", "--previous", "--dry-run", "--as", "--clusterrole",
    "--group", "--all", "--overwrite", "--for", "--ignore-daemonsets",
    # buildah, kaniko, mokutil, py-spy, kube-controller-manager
    "--storage-driver", "--isolation", "--tls-verify", "--authfile", "--build-arg", "--file",
    "--tag", "--mount", "--destination", "--import", "--gil", "--nonblocking",
    "--concurrent-daemonset-syncs", "--pod-max-pids",
    "--cache", "--ignore-path", "--volume",
    # Dockerfile COPY
    "--from",
    # python -m tests.bench.scale, python -m tests.bench.upgrade
    "--sizes", "--rounds", "--quick", "--profile", "--converge-only", "--nodes", "--max-parallel",
    # every ooto command
    "--help",
}  # fmt: skip


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _where(token: str) -> str:
    return ", ".join(p.relative_to(ROOT).as_posix() for p in DOCS if token in _text(p))


def _parser_flags(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        yield from (s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parser_flags(sub)


def _table_first_cells(text: str, header: str) -> list[str]:
    """First cells of the Markdown table right after the line starting with `header`."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    cells = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells.append(line.split("|")[1].strip())
    return cells


def _backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- settings and flags --------------------------------------------------------------------


def test_every_documented_ooto_variable_is_a_setting_and_every_setting_is_documented() -> None:
    settings = {f"OOTO_{name.upper()}" for name in Settings.model_fields}
    documented = {v for p in DOCS for v in re.findall(r"OOTO_[A-Z_]+[A-Z]", _text(p))}
    unknown = sorted(documented - settings - set(NOT_SETTINGS))
    assert not unknown, (
        "the docs name environment variables ooto.settings.Settings does not have: remove or "
        "rename them: " + "; ".join(f"{v} (in {_where(v)})" for v in unknown)
    )
    table = {v for cell in _table_first_cells(_text(OPERATIONS), "| env var |") for v in
             _backticked(cell)}  # fmt: skip
    missing = sorted(settings - table)
    assert not missing, (
        "add a row for each of these settings to the env-var table of docs/operations.md "
        f"(Settings section): {', '.join(missing)}"
    )


def test_every_documented_flag_exists_and_every_ooto_flag_is_documented() -> None:
    ooto_flags = set(_parser_flags(build_parser()))
    setting_flags = {"--" + name.replace("_", "-") for name in Settings.model_fields}
    setting_flags |= {f"--no-{f[2:]}" for f in setting_flags}
    documented = {
        f for p in DOCS for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", _text(p))
    }
    unknown = sorted(documented - ooto_flags - OTHER_TOOLS_FLAGS)
    assert not unknown, (
        "the docs use flags no ooto command has: fix them, or, if they belong to another tool, "
        "add them to OTHER_TOOLS_FLAGS in tests/unit/test_docs_truth.py: "
        + "; ".join(f"{f} (in {_where(f)})" for f in unknown)
    )
    # Settings flags are documented through their OOTO_* variable (same name); the others
    # must appear by name.
    undocumented = sorted(ooto_flags - setting_flags - documented - {"--help"})
    assert not undocumented, (
        "document these ooto flags (README.md or docs/operations.md): " + ", ".join(undocumented)
    )


# --- metrics -------------------------------------------------------------------------------


def _exported_metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        if family.name.startswith("ooto_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_documented_metric_exists_and_every_metric_is_in_the_table() -> None:
    exported = _exported_metric_names()
    documented = set()
    for path in DOCS:
        for name in re.findall(r"\booto_[a-z_]+[a-z]", _text(path)):
            documented.add(re.sub(r"_(bucket|count|sum)$", "", name))
    unknown = sorted(documented - exported)
    assert not unknown, (
        "the docs name metrics ooto/metrics.py does not export: fix or remove them: "
        + "; ".join(f"{m} (in {_where(m)})" for m in unknown)
    )
    table = {m for cell in _table_first_cells(_text(OPERATIONS), "| metric |") for m in
             _backticked(cell)}  # fmt: skip
    missing = sorted(exported - table)
    assert not missing, (
        "add a row for each of these metrics to the metric table of docs/operations.md "
        f"(Health and metrics): {', '.join(missing)}"
    )


# --- reasons -------------------------------------------------------------------------------


def test_the_reason_table_lists_exactly_the_reasons_of_ooto_reasons() -> None:
    code = {r.value for r in Reason} | {r.value for r in EventReason}
    table = {_backticked(cell)[0] for cell in _table_first_cells(_text(OPERATIONS), "| reason |")}
    assert not table - code, (
        "docs/operations.md's reason table lists reasons ooto/domain/reasons.py does not define: "
        f"remove the rows or add them to Reason/EventReason: {sorted(table - code)}"
    )
    assert not code - table, (
        "add a row to the reason table of docs/operations.md (Troubleshooting by condition "
        f"reason) for: {sorted(code - table)}"
    )
    readme = {_backticked(cell)[0] for cell in _table_first_cells(_text(README), "| reason |")}
    readme = {r for cell in readme for r in cell.split(" / ")}
    assert readme <= code, (
        f"README.md's reason table names reasons the code does not have: {sorted(readme - code)}"
    )


# --- chart values and names ----------------------------------------------------------------


def test_every_top_level_value_is_documented_and_every_documented_value_exists() -> None:
    values = yaml.safe_load(_text(VALUES))
    cells = _table_first_cells(_text(OPERATIONS), "| value |")
    documented: set[str] = set()
    for cell in cells:
        names = _backticked(cell)
        for name in names:
            # `webhook.port`, `failurePolicy` and `.issuerRef` continue the first name's parent
            parent = names[0].rsplit(".", 1)[0] if "." in names[0] else ""
            full = parent + name if name.startswith(".") else name
            if name is not names[0] and parent and not name.startswith(".") and "." not in name:
                full = f"{parent}.{name}"
            documented.add(full)
    missing = sorted(k for k in values if not any(d.split(".")[0] == k for d in documented))
    assert not missing, (
        "add these top-level keys of charts/ooto/values.yaml to the Chart values table of "
        f"docs/operations.md: {', '.join(missing)}"
    )
    unknown = []
    for name in sorted(documented):
        node = values
        for part in name.lstrip(".").split("."):
            if not isinstance(node, dict) or part not in node:
                unknown.append(name)
                break
            node = node[part]
    assert not unknown, (
        "docs/operations.md's Chart values table names values charts/ooto/values.yaml does not "
        f"have: fix or remove: {', '.join(unknown)}"
    )


def test_object_names_in_the_docs_are_the_names_the_chart_renders() -> None:
    templates = "\n".join(_text(p) for p in sorted(TEMPLATES.rglob("*")) if p.is_file())
    rendered = set(re.findall(r'include "ooto\.fullname" \. }}-([a-z-]+)', templates))
    rendered |= set(re.findall(r'printf "%s-([a-z-]+)" \(include "ooto\.fullname"', templates))
    rendered |= set(re.findall(r'include "ooto\.suffixed" \(list \. "([a-z-]+)"\)', templates))
    documented = {n for p in DOCS for n in re.findall(r"<fullname>-([a-z-]*[a-z])", _text(p))}
    assert documented <= rendered, (
        "the docs name chart objects the templates do not render (as <fullname>-SUFFIX): "
        f"{sorted(documented - rendered)}"
    )
    wrong = {m for p in DOCS for m in re.findall(r"<release>-ooto-[a-z-]+", _text(p))}
    assert not wrong, (
        f"write these names as <fullname>-SUFFIX (ooto.fullname, see _helpers.tpl): {wrong}"
    )


# --- counts --------------------------------------------------------------------------------


def _collected(*patterns: str) -> int:
    files = sorted(str(p) for pattern in patterns for p in ROOT.glob(pattern))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"(\d+) tests? collected", out)
    assert found, out[-2000:]
    return int(found[1])


def test_reliability_md_states_the_test_counts_pytest_collects() -> None:
    text = _text(ROOT / "docs" / "reliability.md")
    stated = re.search(r"\((\d+) integration tests, .*?; (\d+) unit tests", text, re.DOTALL)
    assert stated, "docs/reliability.md lost its '(N integration tests, ...; M unit tests' line"
    integration = _collected("tests/integration/test_reliability_*.py")
    unit = _collected("tests/unit/test_hostile_input.py")
    assert (int(stated[1]), int(stated[2])) == (integration, unit), (
        f"docs/reliability.md says {stated[1]} integration and {stated[2]} unit tests; pytest "
        f"collects {integration} and {unit}: change the numbers in its 'Run them' line"
    )


# --- tests cited as evidence ---------------------------------------------------------------


def test_every_test_the_docs_cite_exists() -> None:
    defined: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names = set(re.findall(r"^\s*(?:async )?(?:def|class) (\w+)", _text(path), re.M))
        defined.setdefault(path.name, set()).update(names)
    everywhere = set().union(*defined.values())
    missing = []
    for path in DOCS:
        text = _text(path)
        for file, parts in re.findall(r"(test_\w+\.py)((?:::\w+)+)", text):
            name = parts.rsplit("::", 1)[-1]
            if name not in defined.get(file, set()):
                missing.append(f"{file}{parts} (in {path.name})")
        for file in re.findall(r"(?<![\w/*])(test_\w+\.py)", text):
            if file not in defined:
                missing.append(f"{file} (in {path.name})")
        for name in re.findall(r"`(test_\w+)`", text):
            if name not in everywhere:
                missing.append(f"{name} (in {path.name})")
    assert not missing, (
        "the docs cite tests that do not exist (renamed or removed?): fix the reference: "
        + "; ".join(sorted(set(missing)))
    )


def test_the_preflight_verdict_table_lists_exactly_the_verdicts() -> None:
    from ooto.domain.api.preflight import Verdict

    table = {_backticked(cell)[0] for cell in _table_first_cells(_text(OPERATIONS), "| verdict |")}
    code = {v.value for v in Verdict}
    assert table == code, (
        "docs/operations.md's preflight verdict table (Before a kernel upgrade) must list exactly "
        "ooto.domain.api.preflight.Verdict: "
        f"add {sorted(code - table)}, remove {sorted(table - code)}"
    )


def test_every_status_field_is_in_the_status_table() -> None:
    from ooto.domain.api.module import KernelStatus, ModuleStatus

    cells = _table_first_cells(_text(OPERATIONS), "| field |")
    documented: set[str] = set()
    for cell in cells:
        names = _backticked(cell)
        prefix = names[0].rsplit(".", 1)[0] + "." if "." in names[0] else ""
        documented.update(prefix + n[1:] if n.startswith(".") else n for n in names)
    fields = {f.alias or name for name, f in ModuleStatus.model_fields.items()}
    fields = {"conditions[]" if f == "conditions" else f for f in fields}
    fields |= {f"kernels[].{f.alias or n}" for n, f in KernelStatus.model_fields.items()}
    missing = sorted(fields - documented - {"kernels"})
    assert not missing, (
        "add these Module status fields to the status field table of docs/operations.md "
        f"(Troubleshooting by condition reason): {', '.join(missing)}"
    )
    unknown = sorted(documented - fields - {"kernels[]"})
    assert not unknown, (
        f"docs/operations.md's status field table names fields ModuleStatus lacks: {unknown}"
    )


def test_the_alert_table_lists_exactly_the_shipped_alerts() -> None:
    rules = yaml.safe_load(_text(ROOT / "charts" / "ooto" / "files" / "prometheus-rules.yaml"))
    shipped = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    table = {_backticked(cell)[0] for cell in _table_first_cells(_text(OPERATIONS), "| alert |")}
    assert table == shipped, (
        "docs/operations.md's alert table (Alerts) must list exactly the alerts of "
        f"charts/ooto/files/prometheus-rules.yaml: add {sorted(shipped - table)}, "
        f"remove {sorted(table - shipped)}"
    )
