"""Day 2 on the real control plane (issue 12): module-ready labels, a device plugin that follows
the module, load digests, and ordered, workload-aware upgrades.

Label and pod changes are watched (every event, in the API server's order), never sampled.
"""

from __future__ import annotations

from typing import Any

from ooto.domain import render
from ooto.domain.upgrade.keys import ready_label_key
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory, RunningOperator
from tests.integration.scenario_support import (
    apply_module,
    condition,
    delete_module,
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


def bump(image: str) -> dict[str, Any]:
    return {"spec": {"kernelMappings": [{"regexp": ".", "containerImage": image}]}}


async def converged(
    rest: KubeRest,
    kubelet: SimulatedKubelet,
    namespace: str,
    start: OperatorFactory,
    count: int,
    **policy: Any,
) -> tuple[list[str], str, str, RunningOperator]:
    """`count` nodes with the Module Ready and labelled: nodes, ready label, loader digest and
    the operator."""
    nodes = await add_fleet(
        kubelet, f"u{namespace[-5:]}", KERNELS, count, {"ooto-test/day2": "true"}
    )
    label = ready_label_key(namespace, "mod")
    operator = await start(watch_namespace=namespace)
    await apply_module(rest, namespace, fleet_module("example.invalid/mod:1", **policy))
    await eventually(lambda: ready_module(rest, namespace, "mod"), timeout=120)
    await eventually(lambda: labelled(rest, nodes, label), timeout=60)
    return nodes, label, digest_of((await loader_pods(rest, namespace))[0]), operator


async def test_a_loader_that_never_gets_ready_stops_the_rollout_until_a_fix(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Done-when 2: the first node fails, nothing else starts, a new generation resumes."""
    policy = {"readyTimeoutSeconds": 3, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, label, old, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 6, **policy
    )
    kubelet.fail_images = {"example.invalid/mod:broken"}
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:broken"))

        async def failed() -> dict[str, Any] | None:
            module = await get_module(admin_rest, namespace, "mod")
            return module if condition(module, "Ready").get("reason") == "UpgradeFailed" else None

        module = await eventually(failed, timeout=60)
        (first,) = [p["spec"]["nodeName"] for p in pods.loader_deletions()]
        assert f"node {first}:" in condition(module, "Ready")["message"]
        assert "not Ready within 3s" in condition(module, "Ready")["message"]
        assert module["status"]["upgrade"]["nodesFailed"] == 1
        found = await nodes_by_name(admin_rest, nodes)
        assert found[first]["spec"].get("unschedulable") is True  # no workload lands there
        others = [n for n in nodes if n != first]
        assert await labelled(admin_rest, others, label)
        running = {
            p["spec"]["nodeName"]: digest_of(p) for p in await loader_pods(admin_rest, namespace)
        }
        assert all(running[n] == old for n in others)
        node_events = await admin_rest.get(
            "/api/v1/namespaces/default/events",
            {"fieldSelector": f"involvedObject.name={first},reason=UpgradeFailed"},
        )
        assert node_events["items"], "an Event on the Node"

        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:fixed"))
        await eventually(lambda: rolled_out(admin_rest, namespace, nodes, label, old), timeout=120)

    # Each node's old loader replaced once, plus the broken pod on the first node: had another
    # node started while the rollout was stopped, it would have needed a second replacement.
    deleted = [p["spec"]["nodeName"] for p in pods.loader_deletions()]
    assert sorted(deleted) == sorted([*nodes, first])
    found = await nodes_by_name(admin_rest, nodes)
    assert not any(obj["spec"].get("unschedulable") for obj in found.values())
    await eventually(lambda: _up_to_date(admin_rest, namespace, 6), timeout=30)
    # Ready again once the device plugins are back too (they follow the labels).
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)


async def test_changes_outside_the_load_digest_restart_nothing(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    namespace: str,
    start_operator: OperatorFactory,
    monkeypatch: Any,
) -> None:
    """Done-when 4: tolerations, labels, annotations, priority class, a new ooto rendering."""
    nodes, label, _, operator = await converged(admin_rest, kubelet, namespace, start_operator, 6)
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        changes = {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "b"}},
            "spec": {
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "priorityClassName": "system-cluster-critical",
            },
        }
        module = await patch_module(admin_rest, namespace, "mod", changes)
        await eventually(
            lambda: _settled(admin_rest, namespace, module["metadata"]["generation"], 6),
            timeout=60,
        )
        # A new ooto release renders the loader differently (outside the digest): restart it.
        original = render._template_metadata
        monkeypatch.setattr(
            render,
            "_template_metadata",
            lambda *a: {**original(*a), "labels": {**original(*a)["labels"], "new": "render"}},
        )
        await operator.stop()
        await start_operator(watch_namespace=namespace)
        await eventually(lambda: _templates_carry(admin_rest, namespace, "new"), timeout=60)
        await eventually(
            lambda: _settled(admin_rest, namespace, module["metadata"]["generation"], 6),
            timeout=60,
        )
    assert pods.loader_deletions() == []
    assert labels.removals == []


async def _templates_carry(rest: KubeRest, namespace: str, label: str) -> bool:
    found = await rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets")
    loaders = [
        d
        for d in found["items"]
        if d["metadata"]["labels"].get("ooto.sigs.k8s.io/role") == "module-loader"
    ]
    return bool(loaders) and all(
        label in d["spec"]["template"]["metadata"]["labels"] for d in loaders
    )


async def _settled(rest: KubeRest, namespace: str, generation: int, count: int) -> bool:
    module = await get_module(rest, namespace, "mod")
    status = module.get("status") or {}
    upgrade = status.get("upgrade") or {}
    return status.get("observedGeneration") == generation and upgrade.get("nodesUpToDate") == count


async def test_the_skip_label_and_manual_mode_leave_loaders_alone(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Done-when 6: a skipped node keeps its loader; Manual mode replaces nothing, and a pod an
    admin deletes comes back on the new digest with its label."""
    nodes, label, old, _ = await converged(admin_rest, kubelet, namespace, start_operator, 4)
    skipped = nodes[0]
    await kubelet.set_labels(skipped, {"ooto.sigs.k8s.io/upgrade.skip": "true"})
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))
        await eventually(
            lambda: rolled_out(admin_rest, namespace, nodes[1:], label, old), timeout=120
        )
        await eventually(lambda: _counts(admin_rest, namespace, upToDate=3, pending=1), timeout=30)
        running = {
            p["spec"]["nodeName"]: digest_of(p) for p in await loader_pods(admin_rest, namespace)
        }
        assert running[skipped] == old
        assert skipped not in labels.removals

        await patch_module(
            admin_rest, namespace, "mod", {"spec": {"upgradePolicy": {"mode": "Manual"}}}
        )
        manual = await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:3"))
        await eventually(
            lambda: _pending_for(admin_rest, namespace, manual["metadata"]["generation"], 4),
            timeout=60,
        )
        before = len(pods.loader_deletions())
        assert before == 3  # the Auto rollout above; Manual added none
        victim = next(
            p for p in await loader_pods(admin_rest, namespace) if p["spec"]["nodeName"] == nodes[1]
        )
        await admin_rest.delete(f"/api/v1/namespaces/{namespace}/pods/{victim['metadata']['name']}")
        new = await eventually(
            lambda: _ready_pod_on(admin_rest, namespace, nodes[1], victim["metadata"]["uid"]),
            timeout=60,
        )
        assert digest_of(new) not in (old, running[nodes[1]])
        await eventually(lambda: labelled(admin_rest, [nodes[1]], label), timeout=30)
    assert len(pods.loader_deletions()) == before + 1


async def _counts(rest: KubeRest, namespace: str, **counts: int) -> bool:
    module = await get_module(rest, namespace, "mod")
    upgrade = (module.get("status") or {}).get("upgrade") or {}
    return all(upgrade.get(f"nodes{k[0].upper()}{k[1:]}") == v for k, v in counts.items())


async def _pending(rest: KubeRest, namespace: str, count: int) -> dict[str, Any] | None:
    module = await get_module(rest, namespace, "mod")
    upgrade = (module.get("status") or {}).get("upgrade") or {}
    return module if upgrade.get("nodesPending") == count else None


async def _pending_for(rest: KubeRest, namespace: str, generation: int, count: int) -> bool:
    module = await _pending(rest, namespace, count)
    return module is not None and module["status"].get("observedGeneration") == generation


async def _ready_pod_on(
    rest: KubeRest, namespace: str, node: str, old_uid: str
) -> dict[str, Any] | None:
    for pod in await loader_pods(rest, namespace):
        if pod["spec"]["nodeName"] == node and pod["metadata"]["uid"] != old_uid and is_ready(pod):
            return pod
    return None


async def test_a_120_character_namespace_and_name_gets_a_valid_unique_ready_label(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Done-when 7: the label key is shortened with a hash, valid, and reported in status."""
    name = ("long-module-name-" * 10)[: 118 - len(namespace)] + "z"
    assert len(f"{namespace}.{name}") == 120
    nodes = await add_fleet(
        kubelet, f"u7{namespace[-4:]}", KERNELS[:1], 2, {"ooto-test/day2": "true"}
    )
    await start_operator(watch_namespace=namespace)
    manifest = fleet_module("example.invalid/mod:1")
    manifest["metadata"]["name"] = name
    await apply_module(admin_rest, namespace, manifest)
    label = ready_label_key(namespace, name)
    _, _, part = label.partition("/")
    assert len(part) <= 63 and part != f"{namespace}.{name}"
    await eventually(lambda: labelled(admin_rest, nodes, label), timeout=90)
    module = await eventually(lambda: ready_module(admin_rest, namespace, name), timeout=60)
    assert module["status"]["readyLabel"] == label
    other = ready_label_key(namespace, name[:-1] + "y")
    assert other != label

    await delete_module(admin_rest, namespace, name)  # the label goes with the Module

    async def unlabelled() -> bool:
        found = await nodes_by_name(admin_rest, nodes)
        return not any(label in (n["metadata"].get("labels") or {}) for n in found.values())

    await eventually(unlabelled, timeout=30)


async def test_a_disruption_budget_that_forbids_the_eviction_holds_then_fails_the_node(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Done-when 3: the node waits (status says why), then fails at the timeout."""
    policy = {"podDeletion": {"podSelector": f"app={WORKLOAD}", "timeoutSeconds": 8}}
    nodes, _, old, _ = await converged(admin_rest, kubelet, namespace, start_operator, 3, **policy)
    await add_workloads(admin_rest, namespace, nodes)
    pdbs = f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets"
    budget = {"minAvailable": 3, "selector": {"matchLabels": {"app": WORKLOAD}}}
    await admin_rest.post(pdbs, {"metadata": {"name": "all"}, "spec": budget})

    async def computed() -> bool:
        status = (await admin_rest.get(f"{pdbs}/all")).get("status") or {}
        return status.get("currentHealthy") == 3 and status.get("observedGeneration", 0) >= 1

    await eventually(computed, timeout=30)
    await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))

    async def waiting() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        progressing = condition(module, "Progressing")
        return module if "eviction refused" in progressing.get("message", "") else None

    module = await eventually(waiting, timeout=30)
    assert condition(module, "Progressing")["reason"] == "Upgrading"

    async def failed() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        return module if condition(module, "Ready").get("reason") == "UpgradeFailed" else None

    module = await eventually(failed, timeout=60)
    message = condition(module, "Ready")["message"]
    assert "still on the node after 8s" in message
    (first,) = [n for n in nodes if f"node {n}:" in message]
    running = {
        p["spec"]["nodeName"]: digest_of(p) for p in await loader_pods(admin_rest, namespace)
    }
    assert all(running[n] == old for n in nodes)  # no loader was replaced
    pods = await admin_rest.get(
        f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"app={WORKLOAD}"}
    )
    assert len(pods["items"]) == 3  # the budget held every workload in place
    found = await nodes_by_name(admin_rest, nodes)
    assert found[first]["spec"].get("unschedulable") is True
    assert module["status"]["upgrade"]["nodesFailed"] == 1
    assert module["status"]["upgrade"]["nodesUpgrading"] == 0


async def test_a_kernel_upgrade_moves_the_ready_label_with_the_module(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A node rebooting into a new kernel: label off while no loader of its kernel is Ready,
    back once the new kernel's loader is; the other node is untouched until it is no longer
    selected, which takes its label off."""
    nodes, label, _, _ = await converged(admin_rest, kubelet, namespace, start_operator, 2)
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await kubelet.set_kernel(nodes[0], "6.6.0-new-kernel")

        async def moved() -> bool:
            on_node = [
                p
                for p in await loader_pods(admin_rest, namespace)
                if p["spec"].get("nodeName") == nodes[0]
            ]
            kernel = "ooto.sigs.k8s.io/kernel"
            new = [p for p in on_node if p["metadata"]["labels"][kernel] == "6.6.0-new-kernel"]
            return bool(new) and is_ready(new[0]) and await labelled(admin_rest, [nodes[0]], label)

        await eventually(moved, timeout=60)
        assert labels.removals == [nodes[0]]

        await kubelet.set_labels(nodes[1], {"ooto-test/day2": None})  # no longer selected

        async def unlabelled() -> bool:
            found = await nodes_by_name(admin_rest, [nodes[1]])
            return label not in (found[nodes[1]]["metadata"].get("labels") or {})

        await eventually(unlabelled, timeout=60)


async def test_a_second_module_on_the_same_nodes_never_replaces_the_first_ones_loaders(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Two Modules in one namespace on the same nodes: each Module's rollout sees only its own
    loader pods. Reproduced before the fix: the second Module's RolloutActor counted the first
    one's pods (same namespace, same node) as its own loaders with another digest and deleted
    them, unloading a module that nobody changed."""
    nodes, first_label, _, _ = await converged(admin_rest, kubelet, namespace, start_operator, 3)
    first = {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
    labels, pods = LabelWatch(first_label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        second = module_manifest(
            "other",
            [{"regexp": ".", "containerImage": "example.invalid/other:1"}],
            selector={"ooto-test/day2": "true"},
        )
        await apply_module(admin_rest, namespace, second)
        await eventually(lambda: ready_module(admin_rest, namespace, "other"), timeout=120)
        label = ready_label_key(namespace, "other")
        await eventually(lambda: labelled(admin_rest, nodes, label), timeout=60)
    deleted = {p["metadata"]["uid"] for p in pods.loader_deletions()}
    assert not deleted & first, "the second Module deleted loader pods of the first"
    assert labels.removals == [], "the first Module's ready label went off"
    assert first <= {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
