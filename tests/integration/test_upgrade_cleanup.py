"""What a deleted Module leaves on Nodes (ready labels, upgrade records, ooto's cordons) goes,
even when the operator was not running when the Module was deleted (a restart finds it)."""

from __future__ import annotations

from typing import Any

from ooto.domain.upgrade.keys import upgrade_annotation_key
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import delete_module, eventually
from tests.integration.test_upgrade_teardown import blocked
from tests.integration.upgrade_support import nodes_by_name


async def test_a_restarted_operator_cleans_what_a_module_deleted_meanwhile_left(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    operator = await blocked(admin_rest, kubelet, namespace, start_operator)
    record = upgrade_annotation_key(namespace, "mod")
    label = f"ready.ooto.sigs.k8s.io/{namespace}.mod"

    async def marked() -> dict[str, Any] | None:
        nodes = await admin_rest.get("/api/v1/nodes")
        ours = [n for n in nodes["items"] if label in n["metadata"].get("labels", {})]
        held = [n for n in nodes["items"] if record in n["metadata"].get("annotations", {})]
        return {"labelled": ours, "held": held} if ours and held else None

    found = await eventually(marked, timeout=30)
    (held,) = found["held"]
    assert held["spec"].get("unschedulable") is True  # ooto cordoned it for the eviction
    names = [n["metadata"]["name"] for n in found["labelled"] + found["held"]]
    await operator.stop()  # as if killed: nothing is cleaned on the way out
    await delete_module(admin_rest, namespace, "mod")
    await start_operator(watch_namespace=namespace)

    async def clean() -> bool:
        nodes = await nodes_by_name(admin_rest, names)
        return all(
            label not in n["metadata"].get("labels", {})
            and record not in n["metadata"].get("annotations", {})
            and not n["spec"].get("unschedulable")
            for n in nodes.values()
        )

    await eventually(clean, timeout=30)
