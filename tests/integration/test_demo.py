"""`ooto demo`, as the README's first command runs it: its own control plane, the sample Module
converging, then the guided tour (an image bump rolled out node by node, `ooto preflight` for the
next kernels, the metrics), ending on its own with exit code 0."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from ooto.testing.binaries import Binaries

NODES = {"fedora-1", "gke-1", "rpi-1"}
STEP = re.compile(r"^  (\S+)\s+(pod-deletion-required|pod-restart-required|uncordon-required|"
                  r"upgrade-failed|upgraded)\b", re.MULTILINE)  # fmt: skip


def upgrade_runs(output: str) -> list[tuple[str, list[str]]]:
    """The tour's node lines grouped into runs of one node: [(node, [states...]), ...]."""
    runs: list[tuple[str, list[str]]] = []
    for node, state in STEP.findall(output):
        if runs and runs[-1][0] == node and runs[-1][1][-1] != "upgraded":
            runs[-1][1].append(state)
        else:
            runs.append((node, [state]))
    return runs


def test_the_demo_tours_an_upgrade_preflight_and_metrics_and_exits_0(binaries: Binaries) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ooto.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "ooto: Module Ready" in output, output
    # Node by node: each node's states form one uninterrupted run that ends upgraded, and the
    # three nodes follow one another (maxParallel 1): exactly three runs.
    runs = upgrade_runs(output)
    assert [states[-1] for _, states in runs] == ["upgraded"] * 3, runs
    assert {node for node, _ in runs} == NODES, runs
    assert all("pod-restart-required" in states for _, states in runs), runs
    table = {
        tuple(line.split()[1:3]) for line in output.splitlines() if "ooto-demo/demo-kmod" in line
    }
    assert ("5.4.0-1060-gke", "WillBuild") in table, output
    assert ("5.17.0-300.fc36.x86_64", "NoMapping") in table, output
    metric = 'ooto_upgrade_nodes{module="demo-kmod",namespace="ooto-demo",state="upToDate"} 3.0'
    assert metric in output, output
    assert re.search(r"metrics at http://127\.0\.0\.1:\d+/metrics", output), output
    assert "ooto: tour complete" in output, output
    print(f"ooto demo took {seconds:.1f} s")
