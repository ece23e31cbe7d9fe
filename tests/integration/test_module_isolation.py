"""Modules that share a namespace, nodes, a kernel and a build never touch each other's objects.

Three Modules with in-cluster builds run on the same two nodes: `keep` (never changed), `bump`
(its image is bumped: a build, then a rolling upgrade) and `gone` (deleted; it and `keep` waited
on one build Job, which only the one that started it owns). Every pod, Node and DaemonSet event
is watched from before the changes until after them, in the API server's order, never sampled:
`keep`'s loader pods are never deleted, its ready label never leaves a node, its DaemonSets are
never deleted or changed, and it never reports a failed build.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ooto.domain.kernels import build_job_name, label_safe
from ooto.domain.render import LABEL_MODULE
from ooto.domain.upgrade.keys import ready_label_key
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    delete_module,
    events,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
    patch_module,
    ready_module,
)
from tests.integration.test_builds_operator import (
    KANIKO,
    BuildPlayer,
    built_mapping,
    unique_repo,
)
from tests.integration.upgrade_support import (
    LabelWatch,
    PodWatch,
    digest_of,
    is_ready,
    loader_pods,
    nodes_by_name,
    watching,
)

KERNEL = "5.14.0-70.13.1.el9_0.x86_64"
SHARED = {"ooto-test/shared": "true"}


def manifest(name: str, image: str) -> dict[str, Any]:
    mapping = built_mapping({"literal": KERNEL}, image)
    return module_manifest(
        name,
        [mapping],
        selector=SHARED,
        devicePlugin={"name": "dp", "image": "example.invalid/dp:1"},
    )


async def follow_daemonsets(
    rest: KubeRest, namespace: str, seen: list[tuple[str, dict[str, Any]]], ready: asyncio.Event
) -> None:
    """Every DaemonSet event of `namespace` into `seen`, from a list onwards."""
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    listed = await rest.get(path)
    seen.extend(("ADDED", item) for item in listed["items"])
    ready.set()
    version = listed["metadata"]["resourceVersion"]
    while True:
        async for event in rest.watch(path, {"resourceVersion": version, "timeoutSeconds": "60"}):
            version = event["object"]["metadata"].get("resourceVersion", version)
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                seen.append((event["type"], event["object"]))


def module_of(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("labels") or {}).get(LABEL_MODULE, ""))


async def all_ready(rest: KubeRest, namespace: str, nodes: list[str], names: list[str]) -> bool:
    pods = await loader_pods(rest, namespace)
    for name in names:
        if await ready_module(rest, namespace, name) is None:
            return False
        mine = [p for p in pods if module_of(p) == label_safe(name) and is_ready(p)]
        placed = {p["spec"].get("nodeName") for p in mine}
        if placed != set(nodes):
            return False
    return True


async def bumped_and_gone(
    rest: KubeRest, namespace: str, nodes: list[str], old_digest: str
) -> bool:
    pods = await loader_pods(rest, namespace)
    if any(module_of(p) == "gone" for p in pods) or await daemonsets(rest, namespace, "gone"):
        return False
    bumped = [p for p in pods if module_of(p) == "bump"]
    on_new = {p["spec"].get("nodeName") for p in bumped if digest_of(p) != old_digest}
    ready = all(is_ready(p) for p in bumped)
    return (
        on_new == set(nodes) and ready and await ready_module(rest, namespace, "bump") is not None
    )


async def test_a_bump_and_a_deletion_never_touch_a_third_module_on_the_same_nodes(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"  # the shared build runs until both Modules wait on it
    nodes = [f"iso-{namespace[-6:]}-{i}" for i in range(2)]
    await kubelet.add_nodes([(node, KERNEL, SHARED) for node in nodes])
    await start_operator(watch_namespace=namespace, **KANIKO)
    shared, own = unique_repo(registry, "shared"), unique_repo(registry, "bump")
    # bump first: keep's pods are then the newest on each node, which a rollout that counted
    # other Modules' pods as its own would take for the node's current loader.
    await apply_module(admin_rest, namespace, manifest("bump", f"{own}:1"))
    await eventually(lambda: building(admin_rest, namespace, ["bump"], 1))
    kubelet.set_job_outcome(build_job_name("bump", f"{own}:1"), "Succeeded")
    await eventually(lambda: all_ready(admin_rest, namespace, nodes, ["bump"]), timeout=120)
    await apply_module(admin_rest, namespace, manifest("gone", f"{shared}:1"))
    await apply_module(admin_rest, namespace, manifest("keep", f"{shared}:1"))
    await eventually(lambda: building(admin_rest, namespace, ["gone", "keep"], 1))
    for job in await jobs(admin_rest, namespace):  # the one both wait on (either may start it)
        kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    kubelet.default_job_outcome = "Succeeded"
    everyone = ["gone", "keep", "bump"]
    await eventually(lambda: all_ready(admin_rest, namespace, nodes, everyone), timeout=120)
    label = ready_label_key(namespace, "keep")
    await eventually(lambda: labelled(admin_rest, nodes, label), timeout=60)
    kept = {
        p["metadata"]["uid"]
        for p in await loader_pods(admin_rest, namespace)
        if module_of(p) == "keep"
    }
    old = next(
        digest_of(p) for p in await loader_pods(admin_rest, namespace) if module_of(p) == "bump"
    )

    labels, pods, sets, listed = LabelWatch(label, set(nodes)), PodWatch(), [], asyncio.Event()
    watch = asyncio.create_task(follow_daemonsets(admin_rest, namespace, sets, listed))
    try:
        await asyncio.wait_for(listed.wait(), 30)
        async with watching(admin_rest, namespace, labels, pods):
            bumped = manifest("bump", f"{own}:2")["spec"]["kernelMappings"]
            await patch_module(admin_rest, namespace, "bump", {"spec": {"kernelMappings": bumped}})
            await delete_module(admin_rest, namespace, "gone")
            await eventually(
                lambda: bumped_and_gone(admin_rest, namespace, nodes, old), timeout=240
            )
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)

    touched = [p["metadata"]["name"] for p in pods.loader_deletions() if module_of(p) == "keep"]
    assert touched == [], "loader pods of keep were deleted"
    assert labels.removals == [], "keep's ready label left a node"
    assert kept == {
        p["metadata"]["uid"]
        for p in await loader_pods(admin_rest, namespace)
        if module_of(p) == "keep"
    }
    ours = [(kind, ds["metadata"]) for kind, ds in sets if module_of(ds) == "keep"]
    first = {meta["uid"]: meta["generation"] for kind, meta in ours if kind == "ADDED"}
    assert len(first) == 2, "keep has a loader and a device-plugin DaemonSet"
    deleted = [m["name"] for kind, m in ours if kind == "DELETED" or m.get("deletionTimestamp")]
    assert deleted == [], "a DaemonSet of keep was deleted"
    assert {(m["uid"], m["generation"]) for _, m in ours} == set(first.items()), "keep changed"
    failed = [
        e
        for e in await events(admin_rest, namespace, "BuildFailed")
        if e["involvedObject"]["name"] == "keep"
    ]
    assert failed == []
    assert await ready_module(admin_rest, namespace, "keep") is not None


async def jobs(rest: KubeRest, namespace: str) -> list[dict[str, Any]]:
    found = await rest.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")
    return list(found.get("items", []))


async def building(rest: KubeRest, namespace: str, names: list[str], running: int) -> bool:
    """`names` all wait on a build, and `running` Jobs run."""
    for name in names:
        module = await get_module(rest, namespace, name)
        phases = {k.get("build") for k in kernel_status(module).values()}
        if phases != {"Building"}:
            return False
    found = await jobs(rest, namespace)
    return len([j for j in found if not (j.get("status") or {}).get("succeeded")]) == running


async def labelled(rest: KubeRest, nodes: list[str], label: str) -> bool:
    found = await nodes_by_name(rest, nodes)
    return all((found[n]["metadata"].get("labels") or {}).get(label) == "true" for n in nodes)


async def test_a_module_named_after_another_ones_hashed_label_is_refused_until_that_one_goes(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A Module name over 63 characters is cut and hashed into its label value; a second Module
    can be named after that value. Both would carry one Module label: reproduced before the
    fix, the second one's rollout took the first one's loader pods for its own and deleted
    them. The younger one is refused (status and Event) until the older one is deleted."""
    long_name = "long-" + "a" * 60
    crafted = label_safe(long_name)
    assert crafted != long_name
    nodes = [f"iso-{namespace[-6:]}-c{i}" for i in range(2)]
    await kubelet.add_nodes([(node, KERNEL, SHARED) for node in nodes])
    await start_operator(watch_namespace=namespace)
    mapping = [{"regexp": ".", "containerImage": "example.invalid/long:1"}]
    await apply_module(admin_rest, namespace, module_manifest(long_name, mapping, selector=SHARED))
    await eventually(lambda: all_ready(admin_rest, namespace, nodes, [long_name]), timeout=120)
    first = {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}

    # creationTimestamps count whole seconds (a tie goes by name): make the first one older.
    await asyncio.sleep(1.1)
    labels = LabelWatch(ready_label_key(namespace, long_name), set(nodes))
    pods = PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        other = [{"regexp": ".", "containerImage": "example.invalid/crafted:1"}]
        created = await apply_module(
            admin_rest, namespace, module_manifest(crafted, other, selector=SHARED)
        )
        refused = await eventually(lambda: not_ready_because(admin_rest, namespace, crafted))
    assert long_name in condition(refused, "Ready")["message"]
    assert [p["metadata"]["uid"] for p in pods.loader_deletions()] == []
    assert labels.removals == []
    assert first == {p["metadata"]["uid"] for p in await loader_pods(admin_rest, namespace)}
    owners = {
        ref["uid"]
        for ds in (await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets"))[
            "items"
        ]
        for ref in ds["metadata"].get("ownerReferences") or []
    }
    assert created["metadata"]["uid"] not in owners
    assert await events(admin_rest, namespace, "InvalidSpec")

    await delete_module(admin_rest, namespace, long_name)
    await eventually(lambda: ready_module(admin_rest, namespace, crafted), timeout=120)


async def not_ready_because(rest: KubeRest, namespace: str, name: str) -> dict[str, Any] | None:
    module = await get_module(rest, namespace, name)
    ready = condition(module, "Ready")
    return module if ready.get("reason") == "InvalidSpec" else None


async def test_an_operator_starting_with_both_rivals_stored_runs_only_the_older(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Both Modules exist before the operator starts (a restart): whichever it hears of first,
    the older one runs and the younger is refused; no pod is ever made for the younger."""
    long_name = "start-" + "b" * 60
    crafted = label_safe(long_name)
    nodes = [f"iso-{namespace[-6:]}-s{i}" for i in range(2)]
    await kubelet.add_nodes([(node, KERNEL, SHARED) for node in nodes])
    mapping = [{"regexp": ".", "containerImage": "example.invalid/long:1"}]
    await apply_module(admin_rest, namespace, module_manifest(long_name, mapping, selector=SHARED))
    await asyncio.sleep(1.1)  # creationTimestamps count whole seconds: make the first one older
    other = [{"regexp": ".", "containerImage": "example.invalid/crafted:1"}]
    created = await apply_module(
        admin_rest, namespace, module_manifest(crafted, other, selector=SHARED)
    )
    labels, pods = LabelWatch(ready_label_key(namespace, long_name), set(nodes)), PodWatch()
    async with watching(admin_rest, namespace, labels, pods):
        await start_operator(watch_namespace=namespace)
        await eventually(lambda: not_ready_because(admin_rest, namespace, crafted))
        await eventually(lambda: all_ready(admin_rest, namespace, nodes, [long_name]), timeout=120)
    assert pods.loader_deletions() == []
    daemonset_owners = {
        ref["uid"]
        for ds in (await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets"))[
            "items"
        ]
        for ref in ds["metadata"].get("ownerReferences") or []
    }
    assert created["metadata"]["uid"] not in daemonset_owners  # nothing was made for it
