"""Upgrades end cleanly: an eviction a PodDisruptionBudget refuses is retried by a coroutine the
RolloutActor owns; it ends at once when the operator stops (shutdown, a lost Lease) or its Module
goes, and nothing it started writes afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory, RunningOperator
from tests.integration.scenario_support import (
    condition,
    delete_module,
    eventually,
    get_module,
    patch_module,
)
from tests.integration.test_upgrades import bump, converged
from tests.integration.upgrade_support import WORKLOAD, add_workloads


def clearings() -> list[asyncio.Task[Any]]:
    """The eviction coroutines (`ooto.kube.evictions.clear_node`) running on this loop."""
    return [t for t in asyncio.all_tasks() if not t.done() and "clear_node" in repr(t.get_coro())]


async def blocked(
    rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start: OperatorFactory
) -> RunningOperator:
    """One node upgrading whose workload a PodDisruptionBudget keeps: its eviction is retried."""
    policy = {"maxParallel": 1, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, _, _, operator = await converged(rest, kubelet, namespace, start, 2, **policy)
    await add_workloads(rest, namespace, nodes)
    pdbs = f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets"
    budget = {"minAvailable": 2, "selector": {"matchLabels": {"app": WORKLOAD}}}
    await rest.post(pdbs, {"metadata": {"name": "all"}, "spec": budget})

    async def computed() -> bool:
        status = (await rest.get(f"{pdbs}/all")).get("status") or {}
        return status.get("currentHealthy") == 2 and status.get("observedGeneration", 0) >= 1

    await eventually(computed, timeout=30)
    await patch_module(rest, namespace, "mod", bump("example.invalid/mod:2"))

    async def waiting() -> bool:
        module = await get_module(rest, namespace, "mod")
        return "eviction refused" in condition(module, "Progressing").get("message", "")

    await eventually(waiting, timeout=60)
    assert clearings(), "the refused eviction is being retried"
    return operator


async def test_stopping_the_operator_ends_its_evictions_before_stop_returns(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    operator = await blocked(admin_rest, kubelet, namespace, start_operator)
    await operator.operator.stop()  # as on a lost Lease: stop() is where writing ends
    assert clearings() == []  # ended, not left to retry (it slept up to 30 s past stop before)


async def test_deleting_the_module_ends_its_evictions(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await blocked(admin_rest, kubelet, namespace, start_operator)
    await delete_module(admin_rest, namespace, "mod")

    async def ended() -> bool:
        return not clearings()

    # The watch the eviction waits in lasts 5 s between retries: well before that, it is gone.
    await eventually(ended, timeout=3)


def cleared_nodes() -> set[str]:
    frames = (t.get_coro().cr_frame for t in clearings())  # type: ignore[union-attr]
    return {str(f.f_locals.get("node")) for f in frames if f is not None}


async def test_deleting_the_node_mid_upgrade_ends_its_evictions(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await blocked(admin_rest, kubelet, namespace, start_operator)
    (node,) = cleared_nodes()
    await admin_rest.delete(f"/api/v1/nodes/{node}")

    async def ended() -> bool:
        return node not in cleared_nodes()

    await eventually(ended, timeout=3)
