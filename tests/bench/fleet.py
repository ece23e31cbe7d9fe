"""The benchmark's view of the cluster: watches that time when things appear, the fleet of
simulated nodes, the Modules, and the raw-write floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

import aiohttp

from ooto.domain.api import Module
from ooto.domain.kernels import plan_kernel
from ooto.domain.render import (
    NODE_KERNEL_ANNOTATION,
    NODE_KERNEL_LABEL,
    node_kernel_labels,
    render_daemonsets,
)
from ooto.domain.upgrade.keys import ready_label_key
from ooto.kube.client import KubeApi
from ooto.kube.resources import DAEMONSETS, NODES, PODS
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import JSON, KubeRest, RestError, WatchGoneError

GROUP_PATH = "/apis/ooto.sigs.k8s.io/v1alpha1"
FLOOR_LABEL = "bench.ooto.sigs.k8s.io/floor"
FLOOR_MODULE = "floor"


class ObjectWatch:
    """List, then watch `path`; keeps the objects and when each name was first seen."""

    def __init__(self, rest: KubeRest, path: str, params: Mapping[str, str] | None = None) -> None:
        self.rest, self.path, self.params = rest, path, dict(params or {})
        self.objects: dict[str, JSON] = {}
        self.first_seen: dict[str, float] = {}
        self.last_event_at = time.monotonic()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> ObjectWatch:
        version = await self._relist()
        self._task = asyncio.create_task(self._run(version), name=f"bench-watch {self.path}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _relist(self) -> str:
        listed = await self.rest.get(self.path, self.params)
        self.objects = {_name(obj): obj for obj in listed.get("items", [])}
        for name in self.objects:
            self.first_seen.setdefault(name, time.monotonic())
        version: str = listed["metadata"]["resourceVersion"]
        return version

    async def _run(self, version: str) -> None:
        while True:
            try:
                params = {**self.params, "resourceVersion": version}
                async for event in self.rest.watch(self.path, params):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        await self._apply(event["type"], obj)
            except WatchGoneError:
                version = await self._relist()
            except (aiohttp.ClientError, RestError, TimeoutError, OSError):
                await asyncio.sleep(0.5)
                version = await self._relist()

    async def _apply(self, kind: str, obj: JSON) -> None:
        now = time.monotonic()
        name = _name(obj)
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
            self.first_seen.setdefault(name, now)
        self.last_event_at = now
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, done: Callable[[dict[str, JSON]], bool], timeout: float) -> float:
        """Monotonic time of the event after which `done(objects)` held."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: done(self.objects)), timeout)
        return self.last_event_at


def _name(obj: JSON) -> str:
    return str(obj["metadata"]["name"])


def kernel_of(run: str, index: int) -> str:
    return f"5.14.0-{index}.{run}.el9.x86_64"


def fleet(run: str, count: int) -> list[tuple[str, str]]:
    return [(f"{run}-node-{i:04d}", kernel_of(run, i)) for i in range(count)]


async def add_fleet(kubelet: SimulatedKubelet, nodes: list[tuple[str, str]]) -> None:
    await kubelet.add_nodes((name, kernel, None) for name, kernel in nodes)


def module_manifest(name: str) -> JSON:
    """One Module for every kernel of every Linux node; the image needs no build."""
    return {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": name},
        "spec": {
            "selector": {"kubernetes.io/os": "linux"},
            "moduleLoader": {
                "name": "loader",
                "image": "ignored",
                "lifecycle": {"preStop": {"exec": {"command": ["modprobe", "-r", "mod"]}}},
            },
            "kernelMappings": [
                {
                    "regexp": "^.+$",
                    "containerImage": "registry.invalid/ooto-bench/mod:${KERNEL_FULL_VERSION}",
                }
            ],
        },
    }


async def apply_module(rest: KubeRest, namespace: str, name: str) -> JSON:
    return await rest.post(f"{GROUP_PATH}/namespaces/{namespace}/modules", module_manifest(name))


def module_ready(module: JSON) -> bool:
    meta, status = module["metadata"], module.get("status") or {}
    return any(
        c.get("type") == "Ready"
        and c.get("status") == "True"
        and c.get("observedGeneration") == meta.get("generation")
        for c in status.get("conditions") or []
    )


def pod_ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def all_ready(pods: dict[str, JSON], count: int) -> bool:
    """`count` pods, each with condition Ready=True."""
    return sum(pod_ready(pod) for pod in pods.values()) >= count


def all_rolled_out(daemonsets: dict[str, JSON], count: int) -> bool:
    """`count` DaemonSets whose controller reports every scheduled pod ready."""
    done = 0
    for ds in daemonsets.values():
        status = ds.get("status") or {}
        current = status.get("observedGeneration", 0) >= ds["metadata"].get("generation", 0)
        wanted = status.get("desiredNumberScheduled", 0)
        done += current and wanted > 0 and status.get("numberReady", 0) >= wanted
    return done >= count


def labelled(nodes: list[tuple[str, str]]) -> Callable[[dict[str, JSON]], bool]:
    want = {name: node_kernel_labels(kernel)[0][NODE_KERNEL_LABEL] for name, kernel in nodes}

    def done(objects: dict[str, JSON]) -> bool:
        return all(
            (objects.get(name, {}).get("metadata", {}).get("labels") or {}).get(NODE_KERNEL_LABEL)
            == label
            for name, label in want.items()
        )

    return done


def carry(nodes: list[tuple[str, str]], key: str) -> Callable[[dict[str, JSON]], bool]:
    """Every node carries label `key` = "true" (a ready label)."""
    names = [name for name, _ in nodes]

    def done(objects: dict[str, JSON]) -> bool:
        return all(
            (objects.get(name, {}).get("metadata", {}).get("labels") or {}).get(key) == "true"
            for name in names
        )

    return done


async def create_namespace(rest: KubeRest, name: str) -> None:
    await rest.post("/api/v1/namespaces", {"metadata": {"name": name}})


async def delete_namespace(rest: KubeRest, name: str, timeout: float = 180.0) -> None:
    """Delete and wait until it is gone, so its garbage does not load the next measurement."""
    with contextlib.suppress(RestError):
        await rest.delete(f"/api/v1/namespaces/{name}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await rest.get(f"/api/v1/namespaces/{name}")
        except RestError as error:
            if error.status == 404:
                return
            raise
        await asyncio.sleep(0.5)
    raise TimeoutError(f"namespace {name} still there after {timeout}s")


async def measure_floor(
    api: KubeApi,
    rest: KubeRest,
    namespace: str,
    nodes: list[tuple[str, str]],
    pods_follow: bool,
) -> tuple[float, float]:
    """When the raw client began, and the seconds it took to label N nodes and create N rendered
    DaemonSets at once; with `pods_follow`, returns once it has also put a ready label on each
    node after its pod was Ready (`label_when_ready`). Its pod watch starts once those writes
    are answered, so they are timed as before the ready labels (the first pods are Ready about
    when the last writes are answered, the last ones seconds later, and a watch from the start
    lists the pods already there).

    The DaemonSets are the operator's own renderings for a real Module. With `pods_follow` the
    writes are exactly the operator's (its label key, so each DaemonSet gets its pod and the
    DaemonSet controller, scheduler and kubelet load the cluster as they do while the operator
    converges, and the ready label key of the floor's Module); without, the label goes under
    another key, no DaemonSet selects a node, no pod follows and no ready label: the API server
    alone. `unlabel` undoes the node labels afterwards.
    """
    manifests = await floor_manifests(rest, namespace, nodes)
    patches = floor_patches(nodes, pods_follow)
    began = time.monotonic()
    await asyncio.gather(
        *(api.patch(NODES, name, patch) for name, patch in patches),
        *(api.create(DAEMONSETS, manifest) for manifest in manifests),
    )
    seconds = time.monotonic() - began
    if pods_follow:
        key = ready_label_key(namespace, FLOOR_MODULE)
        await asyncio.wait_for(label_when_ready(api, namespace, key, len(nodes)), 600)
    return began, seconds


async def floor_manifests(
    rest: KubeRest, namespace: str, nodes: list[tuple[str, str]]
) -> list[JSON]:
    """The DaemonSets the operator renders for the floor's Module (created in `namespace`)."""
    stored = await apply_module(rest, namespace, FLOOR_MODULE)
    module = Module.model_validate(stored)
    manifests = []
    for _, kernel in nodes:
        plan = plan_kernel(module, kernel)
        assert plan is not None
        manifests.extend(render_daemonsets(module, plan))
    return manifests


async def label_when_ready(api: KubeApi, namespace: str, key: str, count: int) -> None:
    """The floor's ready labels, the least a client can do for them: one pod watch, and each
    pod's node patched with `key` = "true" as soon as the pod is Ready (not waiting for the
    reply); returns once `count` nodes are patched and every patch is answered."""
    patches: dict[str, asyncio.Task[JSON]] = {}
    version = ""  # from the start: the pods already there come first, as ADDED
    while len(patches) < count:
        async with contextlib.aclosing(
            api.watch(PODS, namespace, resource_version=version)
        ) as events:
            async for event in events:
                pod = event["object"]
                version = pod.get("metadata", {}).get("resourceVersion", version)
                node = (pod.get("spec") or {}).get("nodeName")
                if event["type"] == "DELETED" or not node or node in patches or not pod_ready(pod):
                    continue
                label = {"metadata": {"labels": {key: "true"}}}
                patches[node] = asyncio.create_task(api.patch(NODES, node, label))
                if len(patches) == count:
                    break
    await asyncio.gather(*patches.values())


def floor_patches(
    nodes: list[tuple[str, str]], pods_follow: bool, remove: bool = False
) -> list[tuple[str, JSON]]:
    """The floor's node patches: the operator's label and annotation, or the same under
    FLOOR_LABEL; with `remove`, the patches that take them off again."""
    patches: list[tuple[str, JSON]] = []
    for name, kernel in nodes:
        labels, annotations = node_kernel_labels(kernel)
        if not pods_follow:
            labels = {FLOOR_LABEL: labels[NODE_KERNEL_LABEL]}
            annotations = {FLOOR_LABEL: annotations[NODE_KERNEL_ANNOTATION]}
        values: dict[str, str | None] = {**labels}
        notes: dict[str, str | None] = {**annotations}
        if remove:
            values, notes = dict.fromkeys(labels), dict.fromkeys(annotations)
        patches.append((name, {"metadata": {"labels": values, "annotations": notes}}))
    return patches


async def unlabel(
    rest: KubeRest, nodes: list[tuple[str, str]], pods_follow: bool, ready_key: str = ""
) -> None:
    """Take the floor's (or the operator's) labels off the nodes: the next run writes them all.

    `ready_key` too: a ready label of a Module that is gone is a leftover the next operator's
    node cleaner would remove, writes that are not the convergence's."""
    removals = floor_patches(nodes, pods_follow, remove=True)
    if ready_key:
        for _, patch in removals:
            patch["metadata"]["labels"][ready_key] = None
    await asyncio.gather(*(rest.patch(f"/api/v1/nodes/{name}", patch) for name, patch in removals))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]
