"""Status that tells the truth in production (issue 13, sections 5 and 6), through the real API
server and the operator: NotReady nodes, kernels without a mapping, hostile kernel strings."""

from __future__ import annotations

import json
from typing import Any

from ooto.domain.render import NODE_KERNEL_LABEL
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import STRATEGIC_PATCH, KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.reliability_support import GPU, A, B, settled
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    pods_on,
)

HOSTILE = "6.1.0-9-amd64; touch /tmp/x $(id)"


async def test_a_notready_node_is_counted_apart_and_does_not_keep_the_module_rolling(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced: Ready needed every selected node's pod ready, so one NotReady node kept the
    Module Rolling for ever. A kernel no mapping matches is listed with its reason."""
    await kubelet.add_nodes([("s1-a", A, GPU), ("s1-down", A, GPU), ("s1-b", B, GPU)])
    kubelet.pod_outcome = lambda pod: "Pending" if pod["spec"]["nodeName"] == "s1-down" else None
    down = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Test"}]}}
    await admin_rest.patch("/api/v1/nodes/s1-down/status", down, STRATEGIC_PATCH)
    await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:a")]))

    async def settled() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        entry = kernel_status(module).get(A, {})
        return module if entry.get("phase") == "Ready" else None

    module = await eventually(settled, timeout=30)
    status = module["status"]
    assert (status["nodesReady"], status["nodesUnavailable"]) == (1, 1)
    assert kernel_status(module)[A]["nodesUnavailable"] == 1
    no_mapping = kernel_status(module)[B]
    assert no_mapping["reason"] == "NoMatchingMapping" and no_mapping["nodesDesired"] == 1


async def test_a_node_with_a_hostile_kernel_string_gets_nothing_but_an_event_and_a_count(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced: a node reporting a shell command as its kernel got a DaemonSet carrying it."""
    await kubelet.add_nodes([("s2-ok", A, GPU), ("s2-evil", HOSTILE, GPU)])
    await admin_rest.patch(
        "/api/v1/nodes/s2-evil", {"metadata": {"labels": {NODE_KERNEL_LABEL: "6.1.0-9-amd64"}}}
    )
    await start_operator(watch_namespace=namespace)
    mapping = {"regexp": "^.+$", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    async def counted() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        return module if (module.get("status") or {}).get("nodesInvalidKernel") == 1 else None

    module = await eventually(counted, timeout=30)
    assert set(kernel_status(module)) == {A}
    assert await pods_on(admin_rest, namespace) == {"s2-ok": f"r.example/m:{A}"}
    assert "touch" not in json.dumps(await daemonsets(admin_rest, namespace))

    async def warned() -> list[dict[str, Any]]:
        found = await admin_rest.get("/api/v1/namespaces/default/events")
        return [
            e
            for e in found.get("items", [])
            if e["involvedObject"].get("name") == "s2-evil" and e.get("reason") == "InvalidKernel"
        ]

    (event,) = await eventually(warned, timeout=15)
    assert "touch /tmp/x" in event["message"] and event["type"] == "Warning"

    async def label_removed() -> bool:
        node = await admin_rest.get("/api/v1/nodes/s2-evil")
        return NODE_KERNEL_LABEL not in (node["metadata"].get("labels") or {})

    await eventually(label_removed, timeout=15)


async def test_pods_the_daemonset_controller_cannot_create_are_the_kernels_reason(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced: a ResourceQuota (PodSecurity, an SCC ...) refusing the loader pods showed only
    as "0/1 nodes ready", Rolling for ever. Now the DaemonSet controller's FailedCreate Event is
    the kernel's message, with reason PodCreateFailed, and nothing is written over and over."""
    await kubelet.add_nodes([("s3-a", A, GPU)])
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"}}
    quota["spec"] = {"hard": {"pods": "0"}}
    path = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await admin_rest.post(path, quota)
    # Admission enforces a quota once its status is computed; the local control plane runs no
    # resourcequota controller, so write the status it would write.
    computed = {"status": {"hard": {"pods": "0"}, "used": {"pods": "0"}}}
    await admin_rest.patch(f"{path}/no-pods/status", computed)
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:a")]))

    async def reported() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        return module if condition(module, "Ready").get("reason") == "PodCreateFailed" else None

    module = await eventually(reported, timeout=60)
    entry = kernel_status(module)[A]
    assert entry["reason"] == "PodCreateFailed"
    assert "quota" in entry["message"], entry["message"]
    await settled(operator)  # the controller's repeated Events cause no write storm
