"""Actors never die silently, and retiring a kernel leaves nothing behind (issue 13, sections 2
and 3), through the real API server and the operator."""

from __future__ import annotations

import copy
from typing import Any

from ooto.domain.kernels import kernel_label_value
from ooto.domain.render import LABEL_KERNEL
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.reliability_support import GPU, A, B
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    eventually,
    get_module,
    literal,
    module_manifest,
    ready_module,
)


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_a_module_nested_too_deep_is_cut_at_the_door_and_nothing_dies(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced before the CRD was bounded: a subtree nested 600 levels in free-form metadata of
    a volume claim template made rendering raise RecursionError in the kernel actor's start-up;
    the actor died and the Module's status froze (the actor's side, a RenderFailed kernel and no
    death, is tested without the API server in tests/unit/test_actor_supervision.py). Now the
    schema keeps only labels and annotations there: the API server prunes the subtree, and the
    Module converges like any other."""
    await kubelet.add_nodes([("d1-a", A, GPU)])
    operator = await start_operator(watch_namespace=namespace)
    template = {"metadata": {"annotations": {"k": "v"}, "x": nested(600)}, "spec": {}}
    volumes = [{"name": "v", "ephemeral": {"volumeClaimTemplate": template}}]
    deep = module_manifest("deep", [literal(A, "r.example/m:a")], additionalVolumes=volumes)
    await apply_module(admin_rest, namespace, deep)
    await apply_module(
        admin_rest, namespace, module_manifest("fine", [literal(A, "r.example/m:a")])
    )

    stored = await get_module(admin_rest, namespace, "deep")
    claim = stored["spec"]["additionalVolumes"][0]["ephemeral"]["volumeClaimTemplate"]
    assert claim["metadata"] == {"annotations": {"k": "v"}}
    await eventually(lambda: ready_module(admin_rest, namespace, "fine"))

    async def judged() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "deep")
        return module if condition(module, "Ready").get("reason") else None

    module = await eventually(judged, timeout=30)
    # A verdict, not a frozen status: on this 1.20 API server generic ephemeral volumes are off,
    # so its DaemonSet is refused (ApplyFailed); with them on it would roll out.
    assert condition(module, "Ready")["reason"] in ("ApplyFailed", "Rolling", "AllKernelsReady")
    assert operator.metrics.actor_failures_total(died=True) == 0


async def test_a_stray_daemonset_of_the_module_is_deleted_when_it_appears(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A DaemonSet carrying the Module's labels and ownership for a kernel no actor serves (a
    create that landed after its kernel retired) is deleted, not left loading the module."""
    await kubelet.add_nodes([("d2-a", A, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:a")]))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    (live,) = await daemonsets(admin_rest, namespace, "mod")

    stray = copy.deepcopy(live)
    meta = stray["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    stray.pop("status", None)
    meta["name"] = "mod-ml-stray"
    for labels in (meta["labels"], stray["spec"]["template"]["metadata"]["labels"]):
        labels[LABEL_KERNEL] = kernel_label_value(B)
    if LABEL_KERNEL in stray["spec"]["selector"].get("matchLabels", {}):
        stray["spec"]["selector"]["matchLabels"][LABEL_KERNEL] = kernel_label_value(B)
    await admin_rest.post(f"/apis/apps/v1/namespaces/{namespace}/daemonsets", stray)

    async def swept() -> bool:
        names = {d["metadata"]["name"] for d in await daemonsets(admin_rest, namespace, "mod")}
        return names == {live["metadata"]["name"]}

    await eventually(swept, timeout=20)
