"""Objects that carry the name ooto needs but belong to someone else are never overwritten.

A DaemonSet without ooto's labels is not in the operator's cache, so the first sign of it is the
409 of a create: the operator must read the owner before it writes, not PUT its own spec over it.
"""

from __future__ import annotations

from ooto.domain.kernels import daemonset_name
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
)

KERNEL = "5.14.0-70.13.1.el9_0.x86_64"
GPU = {"ooto-test/gpu": "true"}


def _foreign(name: str) -> dict[str, object]:
    labels = {"app": "someone-elses"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"nowhere": "true"},
                    "containers": [{"name": "c", "image": "r.example/theirs:1"}],
                },
            },
        },
    }


async def test_a_foreign_daemonset_under_our_name_is_reported_and_never_overwritten(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("fo-a", KERNEL, GPU)])
    name = daemonset_name("taken", "module-loader", KERNEL)
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    created = await admin_rest.post(path, _foreign(name))
    await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest, namespace, module_manifest("taken", [literal(KERNEL, "r.example/m:a")])
    )

    async def reported() -> dict[str, object] | None:
        status = kernel_status(await get_module(admin_rest, namespace, "taken")).get(KERNEL, {})
        return status if "not ours" in str(status.get("message", "")) else None

    status = await eventually(reported)
    assert status is not None and status["phase"] == "Degraded"
    stored = await admin_rest.get(f"{path}/{name}")
    assert stored["metadata"]["generation"] == created["metadata"]["generation"]
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "r.example/theirs:1"
