"""Done-when 5: the operator killed (SIGKILL) in the middle of a rollout and started again
resumes it from the Nodes' upgrade records: no workload pod is evicted twice, no loader pod is
deleted twice. The operator runs as `ooto run` in child processes; their logs (one line per
eviction and per loader deletion, written after the API server accepted it) are the count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from ooto.domain.upgrade.keys import ready_label_key
from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration import operator_process
from tests.integration.scenario_support import apply_module, eventually, patch_module, ready_module
from tests.integration.test_upgrades import KERNELS, bump, fleet_module, labelled, rolled_out
from tests.integration.upgrade_support import (
    WORKLOAD,
    LabelWatch,
    PodWatch,
    add_fleet,
    add_workloads,
    digest_of,
    loader_pods,
    watching,
)

FLAGS = (
    "--no-leader-election",
    "--status-debounce-seconds=0.1",
    "--backoff-initial-seconds=0.5",
    "--backoff-max-seconds=5",
)


@pytest_asyncio.fixture(loop_scope="session")
async def spawn(
    cluster: LocalCluster, crd: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Any]:
    watched = f"--watch-namespace={namespace}"
    async with operator_process.replicas(
        cluster.admin_kubeconfig, tmp_path, watched, *FLAGS
    ) as start:
        yield start


def logged(replica: operator_process.OperatorProcess, text: str) -> list[dict[str, Any]]:
    lines = replica.log_file.read_text(errors="replace").splitlines()
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if text in entry.get("message", ""):
            found.append(entry)
    return found


async def test_killed_mid_rollout_the_restarted_operator_resumes_without_repeating(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, spawn: Any
) -> None:
    nodes = await add_fleet(kubelet, f"k5{namespace[-4:]}", KERNELS, 8, {"ooto-test/day2": "true"})
    label = ready_label_key(namespace, "mod")
    first = spawn("first")
    policy = {"maxParallel": 2, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    await apply_module(admin_rest, namespace, fleet_module("example.invalid/mod:1", **policy))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=120)
    await eventually(lambda: labelled(admin_rest, nodes, label), timeout=60)
    old = digest_of((await loader_pods(admin_rest, namespace))[0])
    await add_workloads(admin_rest, namespace, nodes)
    # Workloads take 8 s to stop: the kill lands, and the restart comes, while some are leaving.
    kubelet.graceful = lambda pod: (pod["metadata"].get("labels") or {}).get("app") == WORKLOAD
    kubelet.graceful_cap = 8.0

    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))

        async def mid_rollout() -> bool:
            return len(logged(first, "evicted pod")) >= 2 and len(labels.removals) < len(nodes)

        await eventually(mid_rollout, timeout=60, interval=0.05)
        first.kill()
        second = spawn("second")
        await eventually(lambda: rolled_out(admin_rest, namespace, nodes, label, old), timeout=180)

    assert logged(second, "resumes"), "the second operator picked up records from the Nodes"
    evictions = Counter(
        entry["message"].split()[-1] for r in (first, second) for entry in logged(r, "evicted pod")
    )
    assert evictions and max(evictions.values()) == 1, evictions
    deletions = Counter(
        entry["message"].split()[-1]
        for r in (first, second)
        for entry in logged(r, "deleted the loader pod")
    )
    assert deletions and max(deletions.values()) == 1, deletions
    replaced = Counter(p["spec"]["nodeName"] for p in pods.loader_deletions())
    assert sorted(replaced) == sorted(nodes) and set(replaced.values()) == {1}
    assert sorted(labels.removals) == sorted(nodes)
    found = await admin_rest.get("/api/v1/nodes")
    ours = [n for n in found["items"] if n["metadata"]["name"] in nodes]
    assert not any(n["spec"].get("unschedulable") for n in ours)
