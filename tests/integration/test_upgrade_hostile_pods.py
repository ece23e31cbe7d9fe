"""Day 2 as a hostile admin would run it, the pods that must leave: pods the podDeletion
selector should never have named, budgets that change their mind, slow and late workloads."""

from __future__ import annotations

from typing import Any

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import condition, eventually, get_module, patch_module
from tests.integration.test_upgrade_hostile import PDBS, held_mid_eviction
from tests.integration.test_upgrades import bump, converged, labelled, rolled_out
from tests.integration.upgrade_support import (
    WORKLOAD,
    LabelWatch,
    PodWatch,
    add_workloads,
    watching,
)


async def test_a_pod_deletion_selector_never_evicts_daemonset_pods(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A DaemonSet pod the selector names would be recreated on the cordoned node at once (its
    pods tolerate the cordon): evicting it is a loop. ooto waits for it instead: one whose
    DaemonSet selects on the ready label leaves by itself; one that does not holds the node
    (status says why) until it fails at its timeout. Reproduced before the fix: ooto evicted
    the exporter pod again and again."""
    policy = {"podDeletion": {"podSelector": f"app={WORKLOAD}", "timeoutSeconds": 8}}
    nodes, label, _, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 2, **policy
    )
    for name, selector in (("follows", {label: "true"}), ("stays", {"ooto-test/day2": "true"})):
        await _daemonset(admin_rest, namespace, name, selector)

    async def placed() -> bool:
        found = await admin_rest.get(
            f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"app={WORKLOAD}"}
        )
        return len(found["items"]) == 2 * len(nodes)

    await eventually(placed, timeout=60)
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))

        async def says_why() -> bool:
            module = await get_module(admin_rest, namespace, "mod")
            message = condition(module, "Progressing").get("message", "")
            return f"must select on {label}=true" in message

        await eventually(says_why, timeout=8)

        async def failed() -> dict[str, Any] | None:
            module = await get_module(admin_rest, namespace, "mod")
            return module if condition(module, "Ready").get("reason") == "UpgradeFailed" else None

        module = await eventually(failed, timeout=60)
    assert "still on the node after 8s" in condition(module, "Ready")["message"]
    evicted = {
        pod["metadata"]["name"]
        for kind, pod in pods.events
        if (pod["metadata"].get("labels") or {}).get("app") == WORKLOAD
        and (kind == "DELETED" or pod["metadata"].get("deletionTimestamp"))
    }
    stays = [n for n in evicted if n.startswith("stays-")]
    assert stays == [], f"evicted DaemonSet pods {stays}"
    assert len([n for n in evicted if n.startswith("follows-")]) == 1  # left with the label
    assert pods.loader_deletions() == []


async def _daemonset(rest: KubeRest, namespace: str, name: str, selector: dict[str, str]) -> None:
    labels = {"app": WORKLOAD, "ds": name}
    body = {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"ds": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": selector,
                    "containers": [{"name": "main", "image": "example.invalid/exporter:1"}],
                },
            },
        },
    }
    await rest.post(f"/apis/apps/v1/namespaces/{namespace}/daemonsets", body)


async def test_a_budget_that_later_allows_the_eviction_and_a_slow_workload(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """The budget refuses, then allows (deleted); the workload takes its grace period to stop.
    The status stops saying "eviction refused" once the eviction is accepted, and the loader
    pod goes only after the workload is gone."""
    kubelet.graceful = lambda pod: (pod["metadata"].get("labels") or {}).get("app") == WORKLOAD
    kubelet.graceful_cap = 15.0  # the workloads' default terminationGracePeriodSeconds is 30
    labels, pods = LabelWatch("", set()), PodWatch()
    _, label, held, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    async with watching(admin_rest, namespace, labels, pods):
        await admin_rest.delete(f"{PDBS.format(namespace)}/all")

        async def evicted() -> bool:
            found = await admin_rest.get(f"/api/v1/namespaces/{namespace}/pods/work-{held}")
            return bool(found["metadata"].get("deletionTimestamp"))

        await eventually(evicted, timeout=15)

        async def says() -> str:
            module = await get_module(admin_rest, namespace, "mod")
            return str(condition(module, "Progressing").get("message", ""))

        async def no_longer_refused() -> bool:
            return "eviction refused" not in await says()

        await eventually(no_longer_refused, timeout=5)  # well inside the 15 s grace period
        await eventually(lambda: labelled(admin_rest, [held], label), timeout=60)
    (loader,) = [p for p in pods.loader_deletions() if p["spec"]["nodeName"] == held]
    assert pods.present_when(loader["metadata"]["uid"], held, WORKLOAD) == []


async def test_a_pod_that_lands_while_the_node_clears_is_evicted_too(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A pod podDeletion names is bound to the node while its workloads take their grace period
    to stop (an admin uncordoned it, or the pod tolerates the cordon): it is evicted at once, not
    after the 300 s the pod watch lasts (the podDeletion timeout would have failed the node
    first). Reproduced before the fix: it was only waited for."""
    kubelet.graceful = lambda pod: (pod["metadata"].get("labels") or {}).get("app") == WORKLOAD
    kubelet.graceful_cap = 20.0
    policy = {"podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, label, _, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 2, **policy
    )
    await add_workloads(admin_rest, namespace, nodes)
    await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))

    async def leaving() -> str | None:
        found = await admin_rest.get(
            f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"app={WORKLOAD}"}
        )
        going = [p for p in found["items"] if p["metadata"].get("deletionTimestamp")]
        return str(going[0]["spec"]["nodeName"]) if going else None

    node = await eventually(leaving, timeout=30)
    late = {
        "metadata": {"name": f"late-{node}", "labels": {"app": WORKLOAD}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "example.invalid/w:1"}],
        },
    }
    await admin_rest.post(f"/api/v1/namespaces/{namespace}/pods", late)

    async def evicted() -> bool:
        found = await admin_rest.get(f"/api/v1/namespaces/{namespace}/pods/late-{node}")
        return bool(found["metadata"].get("deletionTimestamp"))

    await eventually(evicted, timeout=10)  # the first workload still takes its 20 s
    await eventually(lambda: labelled(admin_rest, [node], label), timeout=60)


async def test_a_pod_deletion_selector_naming_ooto_s_own_pods_evicts_none_of_them(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """`podSelector: ooto.sigs.k8s.io/module=mod` names the Module's loader and device-plugin
    pods: the upgrade still replaces each loader once, by its own step (never by an eviction
    before the label is off and the device plugin gone), and completes. A guard: it passed
    before this review too (loaders were already never evicted, the device plugin waited for)."""
    policy = {"podDeletion": {"podSelector": "ooto.sigs.k8s.io/module=mod"}}
    nodes, label, old, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 2, **policy
    )
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))
        await eventually(lambda: rolled_out(admin_rest, namespace, nodes, label, old), timeout=90)
    deleted = pods.loader_deletions()
    assert sorted(p["spec"]["nodeName"] for p in deleted) == sorted(nodes)  # once each
    for pod in deleted:
        node, uid = pod["spec"]["nodeName"], pod["metadata"]["uid"]
        assert pods.present_when(uid, node, "device-plugin") == [], node
    assert sorted(labels.removals) == sorted(nodes)  # each label off once, then back
