"""The benchmark's results and the table it prints (markdown, so docs/benchmarks.md can hold it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from tests.bench.ready_writes import READY_LABEL_RESOURCE

Writes = dict[tuple[str, str], int]


@dataclass
class ConvergeRow:
    n: int
    floor: float  # the operator's own writes by the raw client; pods follow, as they do for it
    api_floor: float = 0.0  # the same writes with no pod following: the API server alone
    created: float = 0.0  # all DaemonSets exist and all nodes carry their kernel label
    pods_ready: float = 0.0  # the simulated kubelet reported every pod Ready
    ds_ready: float = 0.0  # the DaemonSet controller reported every DaemonSet rolled out
    ready: float = 0.0  # the operator wrote Ready=True on the Module
    ready_labels: float = 0.0  # every node carries the Module's ready label (after its pod Ready)
    floor_ready_labels: float = 0.0  # the same for the floor's client (with pods following)
    writes: Writes = field(default_factory=dict)  # ready-label writes under READY_LABEL_RESOURCE
    round_ratios: list[float] = field(default_factory=list)  # created / floor, per round
    label_ratios: list[float] = field(default_factory=list)  # ready labels / floor's, per round
    cpu: float = 0.0  # operator CPU seconds until Module Ready
    cpu_created: float = 0.0  # operator CPU seconds until all DaemonSets + labels


@dataclass
class Results:
    concurrency: int = 0
    rounds: int = 1
    rows: list[ConvergeRow] = field(default_factory=list)
    quiet: tuple[float, int, float] | None = None  # seconds, writes, CPU seconds
    restart: tuple[float, float, int] | None = None  # seconds to ready, settle seconds, writes
    latency: tuple[float, float, int] | None = None  # p50, p99, samples
    memory: tuple[int, int, float, float, int, int] | None = None
    # modules, kernels, seconds to all Ready, RSS MB, threads, actors


def median_row(rows: list[ConvergeRow]) -> ConvergeRow:
    """Each figure's median over the rounds (ratios then compare medians); the writes of the
    last round; the per-round ratios kept to show the spread."""
    last = rows[-1]
    row = ConvergeRow(last.n, median([r.floor for r in rows]), median([r.api_floor for r in rows]))
    for name in ("created", "pods_ready", "ds_ready", "ready", "cpu", "cpu_created"):
        setattr(row, name, median([getattr(r, name) for r in rows]))
    row.ready_labels = median([r.ready_labels for r in rows])
    row.floor_ready_labels = median([r.floor_ready_labels for r in rows])
    row.writes = last.writes
    row.round_ratios = [r.created / r.floor for r in rows]
    row.label_ratios = [r.ready_labels / r.floor_ready_labels for r in rows]
    return row


def _spread(ratios: list[float]) -> str:
    """` (rounds 1.13-1.37x)`: the lowest and highest round, when there are several."""
    if len(ratios) < 2:
        return ""
    return f" (rounds {min(ratios):.2f}-{max(ratios):.2f}x)"


def split_writes(writes: Writes) -> tuple[Writes, int]:
    """The day-1 writes, and apart from them the ready-label writes (see ready_writes.py)."""
    ready = ("patch", READY_LABEL_RESOURCE)
    return {key: n for key, n in writes.items() if key != ready}, writes.get(ready, 0)


def _writes(row: ConvergeRow) -> str:
    minimum = {
        ("patch", "nodes"): row.n,
        ("create", "daemonsets"): row.n,
        ("patch", "modules/status"): 1,
    }
    writes, _ = split_writes(row.writes)
    keys = sorted(set(writes) | set(minimum))
    parts = [
        f"{verb} {res} {writes.get((verb, res), 0)} (min {minimum.get((verb, res), 0)})"
        for verb, res in keys
    ]
    total = sum(writes.values())
    return f"{total} (min {sum(minimum.values())}): " + ", ".join(parts)


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor > 0 else "-"


def report_lines(results: Results, machine: str) -> list[str]:
    lines = [
        f"Machine: {machine}. Operator: `ooto run` child process, api_concurrency "
        f"{results.concurrency}, default settings. Each row: the median of {results.rounds} "
        "rounds, each round a floor, a floor without pods and a convergence, in that order.",
        "",
        "| N | floor (s) | all DaemonSets + labels (s) | ratio | floor, no pods (s) | ratio "
        "| pods Ready (s) | ready labels (s) | floor, ready labels (s) | ratio "
        "| DaemonSets rolled out (s) | Module Ready (s) | ratio "
        "| operator CPU to DaemonSets + labels / to Ready (s) | CPU per kernel (ms) "
        "| writes during convergence, ready labels apart | ready-label writes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | --- | --- |",
    ]
    for row in results.rows:
        _, ready_writes = split_writes(row.writes)
        lines.append(
            f"| {row.n} | {row.floor:.2f} | {row.created:.2f} | {row.created / row.floor:.2f}x"
            f"{_spread(row.round_ratios)} "
            f"| {row.api_floor:.2f} | {row.created / row.api_floor:.2f}x "
            f"| {row.pods_ready:.2f} | {row.ready_labels:.2f} | {row.floor_ready_labels:.2f} "
            f"| {_ratio(row.ready_labels, row.floor_ready_labels)}{_spread(row.label_ratios)} "
            f"| {row.ds_ready:.2f} | {row.ready:.2f} | {row.ready / row.floor:.2f}x "
            f"| {row.cpu_created:.2f} / {row.cpu:.2f} | {1000 * row.cpu / row.n:.1f} "
            f"| {_writes(row)} | {ready_writes} (min {row.n}) |"
        )
    lines += ["", "| check | result | target |", "| --- | --- | --- |"]
    if results.quiet:
        seconds, writes, cpu = results.quiet
        lines.append(
            f"| quiet {seconds:.0f} s after convergence | {writes} writes, {cpu:.2f} CPU s "
            "| 0 writes |"
        )
    if results.restart:
        ready, settle, writes = results.restart
        lines.append(
            f"| restart on the converged cluster | ready in {ready:.2f} s, {writes} writes "
            f"in its first {ready + settle:.0f} s | 0 writes |"
        )
    if results.latency:
        p50, p99, count = results.latency
        lines.append(
            f"| kernel change, {count} nodes one by one (node patch -> new DaemonSet) "
            f"| p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms | p99 < 1 s |"
        )
    if results.memory:
        modules, kernels, took, rss, threads, actors = results.memory
        lines.append(
            f"| memory, {modules} Modules x {kernels} kernels (all Ready in {took:.1f} s) "
            f"| RSS {rss:.0f} MB, {threads} threads, {actors} actors "
            f"(threads - actors = {threads - actors}) | RSS < 400 MB, threads = actors + small |"
        )
    return lines


def print_report(results: Results, machine: str) -> None:
    print("\n".join(report_lines(results, machine)), flush=True)
