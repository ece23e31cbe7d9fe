"""Faults between the operator and the API server: a restart in the middle of convergence, watches
that come back 410 Gone, and a slow network in front of the API server.

These tests restart the API server, so they run on a private control plane (its own etcd, API
server, controllers and simulated kubelet) and never disturb the session's shared cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ooto.domain.kernels import kernel_label_value
from ooto.domain.render import NODE_KERNEL_LABEL
from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.barrier import has_seen, version_of
from tests.integration.fault_proxy import FaultProxy
from tests.integration.reliability_support import (
    GPU,
    A,
    B,
    bump_etcd_revision,
    kubeconfig_via,
    private_crd,
    private_kubelet,
    private_namespace,
    private_rest,
    relists,
    settled,
    start_in_process,
    write_log,
)
from tests.integration.scenario_support import (
    apply_module,
    daemonsets,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    node_selector_kernel,
    patch_module,
    pods_on,
    ready_module,
)

__all__ = ["private_crd", "private_kubelet", "private_namespace", "private_rest"]

C = "6.1.0-rpi7-rpi-v8+"


def per_kernel(sets: list[dict[str, Any]]) -> Counter[str]:
    return Counter(node_selector_kernel(ds) for ds in sets)


async def test_api_server_restart_mid_convergence_converges_without_duplicates(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
    private_namespace: str,
) -> None:
    rest, ns = private_rest, private_namespace
    await private_kubelet.add_nodes([("r1-a1", A, GPU), ("r1-a2", A, GPU), ("r1-b", B, GPU)])
    operator = await start_in_process(private_cluster.admin_kubeconfig, watch_namespace=ns)
    try:
        mappings = [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]
        await apply_module(rest, ns, module_manifest("mod", mappings))
        await asyncio.sleep(0.3)  # the operator is creating DaemonSets and writing status
        began = time.monotonic()
        await asyncio.to_thread(private_cluster.restart_apiserver)
        # Changes while the operator's watches are broken: they must not be missed.
        await private_kubelet.set_kernel("r1-b", C)
        await patch_module(
            rest, ns, "mod", {"spec": {"kernelMappings": [*mappings, literal(C, "r.example/m:c")]}}
        )

        module = await eventually(lambda: ready_module(rest, ns, "mod"), timeout=60)
        print(f"\nconverged {time.monotonic() - began:.1f}s after the restart began")

        sets = await daemonsets(rest, ns, "mod")
        assert per_kernel(sets) == Counter({A: 1, kernel_label_value(C): 1}), "duplicates/orphans"
        assert await pods_on(rest, ns) == {
            "r1-a1": "r.example/m:a",
            "r1-a2": "r.example/m:a",
            "r1-b": "r.example/m:c",
        }
        kernels = kernel_status(module)
        assert set(kernels) == {A, C}
        assert (kernels[A]["nodesReady"], kernels[C]["nodesReady"]) == (2, 1)
        assert operator.operator.synced.is_set()
        await settled(operator, quiet=2.0)  # and then it stops writing
    finally:
        await operator.stop()


async def test_watches_gone_after_a_restart_relist_miss_nothing_and_write_nothing_spurious(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
    private_namespace: str,
) -> None:
    rest, ns = private_rest, private_namespace
    await private_kubelet.add_nodes([("r2-a", A, GPU), ("r2-b", B, GPU)])
    operator = await start_in_process(private_cluster.admin_kubeconfig, watch_namespace=ns)
    try:
        mappings = [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]
        await apply_module(rest, ns, module_manifest("mod", mappings))
        await eventually(lambda: ready_module(rest, ns, "mod"))
        await settled(operator)
        before = write_log(operator)
        # A restart starts a fresh watch cache at etcd's current revision: every watch resumed
        # from an older resourceVersion is answered 410 Gone, so each informer relists.
        await asyncio.to_thread(private_cluster.stop_apiserver)
        await asyncio.to_thread(bump_etcd_revision, private_cluster)
        await asyncio.to_thread(private_cluster.start_apiserver)
        # Changes the relists must deliver: a new node (to be labelled with its kernel; no
        # Module selects it) and a Module metadata change (nothing to write).
        await private_kubelet.add_node("r2-new", C)
        await patch_module(rest, ns, "mod", {"metadata": {"labels": {"touched": "yes"}}})

        async def label_written() -> bool:
            node = await rest.get("/api/v1/nodes/r2-new")
            return bool(node["metadata"]["labels"].get(NODE_KERNEL_LABEL) == kernel_label_value(C))

        await eventually(label_written, timeout=30)
        informers = operator.operator._informers
        # Events have no watch cache in the API server: their watch resumes from etcd, which has
        # the old revision, so it reconnects without a 410 (and needs no relist).
        cached = [i for i in informers if i.resource.plural != "events"]
        await eventually(
            lambda: asyncio.sleep(0, [i for i in cached if i.relists == 0] == []), timeout=30
        )
        assert all(i.restarts > 0 for i in informers if i not in cached)
        modules = next(i for i in informers if i.resource.plural == "modules")
        assert modules.get(ns, "mod")["metadata"]["labels"] == {"touched": "yes"}
        # Everything the relists brought, and the node as labelled, seen and answered:
        await has_seen(operator, "nodes", version_of(await rest.get("/api/v1/nodes/r2-new")))
        await has_seen(operator, "modules", version_of(await get_module(rest, ns, "mod")))
        writes = write_log(operator) - before
        print(f"\nrelists: {relists(operator)}; writes after the restart: {dict(writes)}")
        assert writes == Counter({("patch", "nodes", "200"): 1}), "only the new node's label"
        assert per_kernel(await daemonsets(rest, ns, "mod")) == Counter({A: 1, B: 1})
        assert await ready_module(rest, ns, "mod")
    finally:
        await operator.stop()


async def test_a_slow_api_server_delays_convergence_but_causes_no_restarts(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
    private_namespace: str,
    tmp_path: Path,
) -> None:
    rest, ns = private_rest, private_namespace
    await private_kubelet.add_nodes([("r7-a", A, GPU), ("r7-b", B, GPU)])
    target = urlsplit(private_cluster.server)
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 443) as proxy:
        # 400 ms on every chunk each way: a TLS handshake alone costs seconds.
        proxy.latency = 0.4
        kubeconfig = kubeconfig_via(
            private_cluster.admin_kubeconfig, f"https://{proxy.host}", tmp_path / "slow.kubeconfig"
        )
        began = time.monotonic()
        operator = await start_in_process(kubeconfig, watch_namespace=ns)
        try:
            mappings = [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]
            await apply_module(rest, ns, module_manifest("mod", mappings))
            await eventually(lambda: ready_module(rest, ns, "mod"), timeout=90)
            await patch_module(
                rest,
                ns,
                "mod",
                {"spec": {"kernelMappings": [literal(A, "r.example/m:a2"), mappings[1]]}},
            )
            await eventually(lambda: ready_module(rest, ns, "mod"), timeout=90)
            seconds = time.monotonic() - began
            restarts = sum(i.restarts for i in operator.operator._informers)
            failed = sum(
                operator.metrics.requests_total(code=code) for code in (0, 408, 500, 503, 504)
            )
            print(
                f"\nslow API ({proxy.latency * 1000:.0f} ms/chunk): converged twice in "
                f"{seconds:.1f}s over {proxy.connections} connections; watch restarts "
                f"{restarts}, failed requests {failed}"
            )
            assert restarts == 0 and relists(operator) == 0
            assert failed == 0
            assert per_kernel(await daemonsets(rest, ns, "mod")) == Counter({A: 1, B: 1})
            assert (await pods_on(rest, ns))["r7-a"] == "r.example/m:a2"
        finally:
            await operator.stop()
