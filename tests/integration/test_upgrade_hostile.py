"""Day 2 as a hostile admin would run it: the Module changed under a node mid-upgrade, hands on
ooto's labels and records, pods the podDeletion selector should never have named."""

from __future__ import annotations

from typing import Any

from ooto.domain.upgrade import record as upgrade_record
from ooto.domain.upgrade.keys import upgrade_annotation_key
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.barrier import has_seen, version_of
from tests.integration.conftest import OperatorFactory, RunningOperator
from tests.integration.reliability_support import write_log
from tests.integration.scenario_support import (
    condition,
    eventually,
    get_module,
    patch_module,
    ready_module,
)
from tests.integration.test_upgrades import bump, converged, labelled, rolled_out
from tests.integration.upgrade_support import (
    WORKLOAD,
    LabelWatch,
    PodWatch,
    add_workloads,
    loader_pods,
    nodes_by_name,
    watching,
)

PDBS = "/apis/policy/v1beta1/namespaces/{}/poddisruptionbudgets"


async def forbid_evictions(rest: KubeRest, namespace: str, count: int) -> None:
    """A PodDisruptionBudget that refuses every eviction of the workloads (one per node)."""
    pdbs = PDBS.format(namespace)
    budget = {"minAvailable": count, "selector": {"matchLabels": {"app": WORKLOAD}}}
    await rest.post(pdbs, {"metadata": {"name": "all"}, "spec": budget})

    async def computed() -> bool:
        status = (await rest.get(f"{pdbs}/all")).get("status") or {}
        return status.get("currentHealthy") == count and status.get("observedGeneration", 0) >= 1

    await eventually(computed, timeout=30)


async def waiting_on(rest: KubeRest, namespace: str, nodes: list[str], label: str) -> str:
    """The node whose evictions a budget refuses (status says so): its label is off."""

    async def refused() -> bool:
        module = await get_module(rest, namespace, "mod")
        return "eviction refused" in condition(module, "Progressing").get("message", "")

    await eventually(refused, timeout=60)
    found = await nodes_by_name(rest, nodes)
    (node,) = [n for n in nodes if label not in (found[n]["metadata"].get("labels") or {})]
    return node


async def held_mid_eviction(
    rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start: OperatorFactory
) -> tuple[list[str], str, str, RunningOperator]:
    """Two nodes, an image bump, the first node's evictions refused (its timeout far away):
    nodes, ready label, the node held in pod-deletion-required."""
    policy = {"podDeletion": {"podSelector": f"app={WORKLOAD}", "timeoutSeconds": 600}}
    nodes, label, _, operator = await converged(rest, kubelet, namespace, start, 2, **policy)
    await add_workloads(rest, namespace, nodes)
    await forbid_evictions(rest, namespace, len(nodes))
    await patch_module(rest, namespace, "mod", bump("example.invalid/mod:2"))
    held = await waiting_on(rest, namespace, nodes, label)
    found = await nodes_by_name(rest, [held])
    assert found[held]["spec"].get("unschedulable") is True  # ooto cordoned it
    return nodes, label, held, operator


async def back_at_rest(rest: KubeRest, namespace: str, nodes: list[str], label: str) -> bool:
    """Every node labelled, schedulable, without an upgrade record, none upgrading."""
    key = upgrade_annotation_key(namespace, "mod")
    found = await nodes_by_name(rest, nodes)
    for node in found.values():
        if node["spec"].get("unschedulable") or key in (node["metadata"].get("annotations") or {}):
            return False
    module = await get_module(rest, namespace, "mod")
    upgrade = (module.get("status") or {}).get("upgrade") or {}
    return upgrade.get("nodesUpgrading") == 0 and await labelled(rest, nodes, label)


async def test_the_image_reverted_mid_eviction_withdraws_the_node_without_replacing_its_loader(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced before the fix: the node stayed in pod-deletion-required (label off, cordoned)
    for a digest nobody wanted any more, and would have had its loader pod replaced by one with
    the digest it already ran."""
    nodes, label, _, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    before = {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
    await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:1"))
    await eventually(lambda: back_at_rest(admin_rest, namespace, nodes, label), timeout=30)
    assert {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)} == before
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)


async def test_switching_to_manual_mid_eviction_replaces_no_loader(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """`mode: Manual` means ooto replaces no running loader pod: a node still waiting for its
    pods to leave is withdrawn (label back, ooto's cordon off), its loader stays."""
    nodes, label, _, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    before = {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
    manual = {"spec": {"upgradePolicy": {"mode": "Manual"}}}
    await patch_module(admin_rest, namespace, "mod", manual)
    await eventually(lambda: back_at_rest(admin_rest, namespace, nodes, label), timeout=30)
    assert {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)} == before


async def test_the_skip_label_put_on_a_node_mid_eviction_withdraws_it(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """`upgrade.skip` means "leave this node on its current loader": while its pods still leave,
    its loader is current, so the node is withdrawn (the next node then takes the slot)."""
    _, label, held, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    before = {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
    await kubelet.set_labels(held, {"ooto.sigs.k8s.io/upgrade.skip": "true"})
    key = upgrade_annotation_key(namespace, "mod")

    async def withdrawn() -> bool:
        node = (await nodes_by_name(admin_rest, [held]))[held]
        return (
            not node["spec"].get("unschedulable")
            and key not in _annotations(node)
            and await labelled(admin_rest, [held], label)
        )

    await eventually(withdrawn, timeout=30)
    assert before <= {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}


def _annotations(node: dict[str, Any]) -> dict[str, str]:
    return dict(node["metadata"].get("annotations") or {})


async def test_a_record_edited_to_garbage_is_put_right_with_an_event(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A hand-edited upgrade record: on a node at rest it goes; on a node mid-upgrade the record
    ooto holds is written back (a restart must still resume it); an Event on the Node each time."""
    nodes, label, held, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    key = upgrade_annotation_key(namespace, "mod")
    record = _annotations((await nodes_by_name(admin_rest, [held]))[held])[key]
    idle = next(n for n in nodes if n != held)
    for node in nodes:
        await admin_rest.patch(
            f"/api/v1/nodes/{node}", {"metadata": {"annotations": {key: "{not json"}}}
        )

    async def repaired() -> bool:
        found = await nodes_by_name(admin_rest, nodes)
        return _annotations(found[held]).get(key) == record and key not in _annotations(found[idle])

    await eventually(repaired, timeout=30)

    assert await eventually(lambda: edited_events(admin_rest, nodes), timeout=10) == sorted(nodes)
    found = await nodes_by_name(admin_rest, nodes)
    assert found[held]["spec"].get("unschedulable") is True  # still mid-upgrade, as recorded
    assert label not in (found[held]["metadata"].get("labels") or {})


async def edited_events(rest: KubeRest, nodes: list[str]) -> list[str]:
    """The nodes with an Event saying their record was edited (once each: Events aggregate)."""
    found = await rest.get(
        "/api/v1/namespaces/default/events", {"fieldSelector": "reason=UpgradeRecordEdited"}
    )
    named = (e["involvedObject"]["name"] for e in found["items"])
    return sorted(name for name in named if name in nodes)


async def test_a_record_garbled_while_no_operator_ran_leaves_the_node_safe(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """The restarted operator cannot tell what was under way on that node: it drops the record
    (Event), judges the node afresh from its loader pod and keeps the cordon it cannot place
    (it might be an admin's): when it starts its upgrade again, it is a node cordoned by
    someone else, which ooto will not uncordon."""
    nodes, _, held, operator = await held_mid_eviction(
        admin_rest, kubelet, namespace, start_operator
    )
    await operator.stop()
    key = upgrade_annotation_key(namespace, "mod")
    await admin_rest.patch(f"/api/v1/nodes/{held}", {"metadata": {"annotations": {key: "]["}}})
    await start_operator(watch_namespace=namespace)
    assert await eventually(lambda: edited_events(admin_rest, nodes), timeout=30) == [held]

    async def judged_afresh() -> dict[str, Any] | None:
        node = (await nodes_by_name(admin_rest, [held]))[held]
        return node if _annotations(node).get(key) != "][" else None

    node = await eventually(judged_afresh, timeout=30)
    text = _annotations(node).get(key)
    found = upgrade_record.decode(text)  # none, or a new attempt (if it got the slot first)
    assert text is None or (found is not None and not found.cordoned)
    assert node["spec"].get("unschedulable") is True


async def test_hand_edits_of_the_ready_label_are_put_right(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Each hand edit is answered by exactly one Node write, and a Node change after that by
    none (the barrier waits until the operator has seen it and gone idle)."""
    nodes, label, _, running = await converged(admin_rest, kubelet, namespace, start_operator, 2)
    stranger = f"stranger-{namespace[-5:]}"
    added = await kubelet.add_node(stranger, "5.4.0-1054-gke", {})  # not selected: no module
    await has_seen(running, "nodes", version_of(added))  # its kernel label is written by then
    before = node_patches(running)
    await admin_rest.patch(f"/api/v1/nodes/{nodes[0]}", {"metadata": {"labels": {label: None}}})
    await admin_rest.patch(f"/api/v1/nodes/{stranger}", {"metadata": {"labels": {label: "true"}}})
    await admin_rest.patch(f"/api/v1/nodes/{nodes[1]}", {"metadata": {"labels": {label: "yes"}}})

    async def truth() -> bool:
        found = await nodes_by_name(admin_rest, [*nodes, stranger])
        return await labelled(admin_rest, nodes, label) and label not in (
            found[stranger]["metadata"].get("labels") or {}
        )

    await eventually(truth, timeout=30)
    assert node_patches(running) - before == 3
    touched = await admin_rest.patch(
        f"/api/v1/nodes/{nodes[0]}", {"metadata": {"labels": {"unrelated": "x"}}}
    )
    await has_seen(running, "nodes", version_of(touched))
    assert node_patches(running) - before == 3  # at rest: nothing more


def node_patches(running: RunningOperator) -> int:
    return sum(n for (verb, resource, _), n in write_log(running).items() if resource == "nodes")


BROKEN = {"regexp": ".", "containerImage": "example.invalid/mod:broken"}


async def first_restarting(rest: KubeRest, namespace: str, pods: PodWatch) -> str:
    """The node whose old loader pod went first (its upgrade in pod-restart-required)."""

    async def deleted() -> list[str]:
        return [p["spec"]["nodeName"] for p in pods.loader_deletions()]

    (node,) = await eventually(deleted, timeout=60)
    return str(node)


async def test_a_node_deleted_while_its_new_loader_is_awaited_frees_its_slot(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """No failure, no wait for readyTimeoutSeconds: the rollout goes on with the other nodes."""
    policy = {"readyTimeoutSeconds": 600, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, label, old, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 3, **policy
    )
    kubelet.fail_images = {"example.invalid/mod:broken"}
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:broken"))
        gone = await first_restarting(admin_rest, namespace, pods)
        await kubelet.remove_node(gone)
        kubelet.fail_images = set()  # the image works on the nodes left
        rest_ = [n for n in nodes if n != gone]
        await eventually(lambda: rolled_out(admin_rest, namespace, rest_, label, old), timeout=60)
    await eventually(lambda: back_at_rest(admin_rest, namespace, rest_, label), timeout=30)
    module = await get_module(admin_rest, namespace, "mod")
    assert module["status"]["upgrade"]["nodesFailed"] == 0


async def test_a_node_rebooted_into_a_new_kernel_while_its_new_loader_is_awaited_is_done(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """The new kernel's loader (another DaemonSet) comes up Ready: the module is loaded, the
    node's upgrade is over (label back, ooto's cordon off) though the image it was waiting for
    never gets Ready."""
    policy = {"readyTimeoutSeconds": 600, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, label, _, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 3, **policy
    )
    kubelet.fail_images = {"example.invalid/mod:broken"}
    mappings = [{"literal": "6.6.0-new", "containerImage": "example.invalid/mod:new"}, BROKEN]
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await patch_module(admin_rest, namespace, "mod", {"spec": {"kernelMappings": mappings}})
        node = await first_restarting(admin_rest, namespace, pods)
        await kubelet.set_kernel(node, "6.6.0-new")

        async def done() -> bool:
            found = (await nodes_by_name(admin_rest, [node]))[node]
            key = upgrade_annotation_key(namespace, "mod")
            return (
                not found["spec"].get("unschedulable")
                and key not in _annotations(found)
                and await labelled(admin_rest, [node], label)
            )

        await eventually(done, timeout=60)
    module = await get_module(admin_rest, namespace, "mod")
    assert module["status"]["upgrade"]["nodesFailed"] == 0


async def test_a_cordon_an_admin_lifted_mid_upgrade_and_put_back_stays(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """An admin uncordons the node ooto cordoned while its evictions wait: ooto does not cordon
    it again, and records that the cordon is no longer its own; the admin cordons it again (for
    maintenance): once the upgrade is done, that cordon stays. Failed before the fix: the record
    kept saying ooto had cordoned the node, so the last step would lift the admin's cordon."""
    _, label, held, _ = await held_mid_eviction(admin_rest, kubelet, namespace, start_operator)
    key = upgrade_annotation_key(namespace, "mod")
    await admin_rest.patch(f"/api/v1/nodes/{held}", {"spec": {"unschedulable": False}})

    async def handed_over() -> bool:
        node = (await nodes_by_name(admin_rest, [held]))[held]
        found = upgrade_record.decode(_annotations(node).get(key))
        return found is not None and not found.cordoned

    await eventually(handed_over, timeout=30)
    node = (await nodes_by_name(admin_rest, [held]))[held]
    assert not node["spec"].get("unschedulable")  # not cordoned again
    await admin_rest.patch(f"/api/v1/nodes/{held}", {"spec": {"unschedulable": True}})
    await admin_rest.delete(f"{PDBS.format(namespace)}/all")

    async def upgraded() -> bool:
        node = (await nodes_by_name(admin_rest, [held]))[held]
        return key not in _annotations(node) and await labelled(admin_rest, [held], label)

    await eventually(upgraded, timeout=60)
    node = (await nodes_by_name(admin_rest, [held]))[held]
    assert node["spec"].get("unschedulable") is True


async def test_max_parallel_lowered_mid_rollout_starts_nothing_until_under_the_new_limit(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """maxParallel 2 -> 1 while two nodes wait for a budget: the third node starts only once
    both are done, alone."""
    policy = {"maxParallel": 2, "podDeletion": {"podSelector": f"app={WORKLOAD}"}}
    nodes, label, _, _ = await converged(
        admin_rest, kubelet, namespace, start_operator, 3, **policy
    )
    await add_workloads(admin_rest, namespace, nodes)
    await forbid_evictions(admin_rest, namespace, len(nodes))
    await patch_module(admin_rest, namespace, "mod", bump("example.invalid/mod:2"))

    async def two_waiting() -> bool:
        module = await get_module(admin_rest, namespace, "mod")
        upgrade = (module.get("status") or {}).get("upgrade") or {}
        return upgrade.get("nodesUpgrading") == 2 and "eviction refused" in condition(
            module, "Progressing"
        ).get("message", "")

    await eventually(two_waiting, timeout=60)
    lowered = await patch_module(
        admin_rest, namespace, "mod", {"spec": {"upgradePolicy": {"maxParallel": 1}}}
    )
    generation = lowered["metadata"]["generation"]

    async def judged() -> bool:
        module = await get_module(admin_rest, namespace, "mod")
        status = module.get("status") or {}
        upgrade = status.get("upgrade") or {}
        return status.get("observedGeneration") == generation and (
            upgrade.get("nodesUpgrading"),
            upgrade.get("nodesPending"),
        ) == (2, 1)

    await eventually(judged, timeout=30)  # the new generation is judged: the two go on alone
    labels, pods = LabelWatch(label, set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await admin_rest.delete(f"{PDBS.format(namespace)}/all")
        await eventually(lambda: back_at_rest(admin_rest, namespace, nodes, label), timeout=90)
    # The first two are the nodes without the label when the watch began; then the third, once,
    # when the two before it were done.
    assert len(labels.removals) == 3 and labels.missing_at_removal[2:] == [1], labels
