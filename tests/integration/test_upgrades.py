"""Day 2 on the real control plane (issue 12): module-ready labels, a device plugin that follows
the module, load digests, and ordered, workload-aware upgrades.

Label and pod changes are watched (every event, in the API server's order), never sampled.
"""

from __future__ import annotations

from typing import Any

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from ooto.upgrade.keys import ready_label_key
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    eventually,
    get_module,
    module_manifest,
    patch_module,
    ready_module,
)
from tests.integration.upgrade_support import (
    WORKLOAD,
    LabelWatch,
    PodWatch,
    add_fleet,
    add_workloads,
    digest_of,
    is_ready,
    loader_pods,
    nodes_by_name,
    watching,
)

KERNELS = ["5.14.0-70.13.1.el9_0.x86_64", "5.4.0-1054-gke", "6.1.0-rpi7-rpi-v8+"]
DEVICE_PLUGIN = {"name": "dp", "image": "example.invalid/dp:1"}


def fleet_module(image: str, **policy: Any) -> dict[str, Any]:
    return module_manifest(
        "mod",
        [{"regexp": ".", "containerImage": image}],
        selector={"ooto-test/day2": "true"},
        devicePlugin=DEVICE_PLUGIN,
        upgradePolicy=policy,
    )


async def rolled_out(
    rest: KubeRest, namespace: str, nodes: list[str], label: str, old: str
) -> bool:
    """Every node runs a Ready loader pod with a digest other than `old`, and has the label."""
    pods = {p["spec"].get("nodeName"): p for p in await loader_pods(rest, namespace)}
    if any(n not in pods or digest_of(pods[n]) == old or not is_ready(pods[n]) for n in nodes):
        return False
    found = await nodes_by_name(rest, nodes)
    return all((found[n]["metadata"].get("labels") or {}).get(label) == "true" for n in nodes)


async def labelled(rest: KubeRest, nodes: list[str], label: str) -> bool:
    found = await nodes_by_name(rest, nodes)
    return all((found[n]["metadata"].get("labels") or {}).get(label) == "true" for n in nodes)


async def test_an_image_bump_upgrades_nodes_in_order_never_more_than_max_parallel(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Done-when 1: 20 nodes, three kernels, maxParallel 3, workloads evicted first."""
    nodes = await add_fleet(kubelet, f"u1{namespace[-4:]}", KERNELS, 20, {"ooto-test/day2": "true"})
    label = ready_label_key(namespace, "mod")
    await start_operator(watch_namespace=namespace)
    policy = {"maxParallel": 3, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    await apply_module(admin_rest, namespace, fleet_module("example.invalid/mod:1", **policy))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=120)
    await eventually(lambda: labelled(admin_rest, nodes, label), timeout=60)
    old = digest_of((await loader_pods(admin_rest, namespace))[0])
    await add_workloads(admin_rest, namespace, nodes)
    admin_cordoned = nodes[5]
    await admin_rest.patch(f"/api/v1/nodes/{admin_cordoned}", {"spec": {"unschedulable": True}})

    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(
            admin_rest,
            namespace,
            "mod",
            {
                "spec": {
                    "kernelMappings": [{"regexp": ".", "containerImage": "example.invalid/mod:2"}]
                }
            },
        )
        await eventually(lambda: rolled_out(admin_rest, namespace, nodes, label, old), timeout=240)

    assert labels.most_missing == 3, labels.most_missing
    assert sorted(labels.removals) == sorted(nodes)  # every node once: label off, then back
    deleted = pods.loader_deletions()
    assert sorted(p["spec"]["nodeName"] for p in deleted) == sorted(nodes)  # one each
    for pod in deleted:
        node, uid = pod["spec"]["nodeName"], pod["metadata"]["uid"]
        assert pods.present_when(uid, node, WORKLOAD) == [], node
        assert pods.present_when(uid, node, "device-plugin") == [], node
    found = await nodes_by_name(admin_rest, nodes)
    cordoned = sorted(n for n, obj in found.items() if obj["spec"].get("unschedulable"))
    assert cordoned == [admin_cordoned]
    module = await eventually(lambda: _up_to_date(admin_rest, namespace, 20), timeout=30)
    assert module["status"]["readyLabel"] == label
    assert condition(module, "Progressing")["reason"] != "Upgrading"


async def _up_to_date(rest: KubeRest, namespace: str, count: int) -> dict[str, Any] | None:
    module = await get_module(rest, namespace, "mod")
    upgrade = (module.get("status") or {}).get("upgrade") or {}
    return module if upgrade.get("nodesUpToDate") == count else None
