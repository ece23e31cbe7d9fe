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
from ooto.kube.client import KubeApi
from ooto.kube.resources import DAEMONSETS, NODES
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import JSON, KubeRest, RestError, WatchGoneError

GROUP_PATH = "/apis/ooto.sigs.k8s.io/v1alpha1"
FLOOR_LABEL = "bench.ooto.sigs.k8s.io/floor"


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


def all_ready(pods: dict[str, JSON], count: int) -> bool:
    """`count` pods, each with condition Ready=True."""
    ready = sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        for pod in pods.values()
    )
    return ready >= count


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
) -> float:
    """Seconds for the raw client to label N nodes and create N rendered DaemonSets at once.

    The DaemonSets are the operator's own renderings for a real Module. With `pods_follow` the
    writes are exactly the operator's (its label key, so each DaemonSet gets its pod and the
    DaemonSet controller, scheduler and kubelet load the cluster as they do while the operator
    converges); without, the label goes under another key, no DaemonSet selects a node and no pod
    follows: the API server alone. `unlabel` undoes the node labels afterwards.
    """
    stored = await apply_module(rest, namespace, "floor")
    module = Module.model_validate(stored)
    manifests = []
    for _, kernel in nodes:
        plan = plan_kernel(module, kernel)
        assert plan is not None
        manifests.extend(render_daemonsets(module, plan))
    began = time.monotonic()
    await asyncio.gather(
        *(api.patch(NODES, name, patch) for name, patch in floor_patches(nodes, pods_follow)),
        *(api.create(DAEMONSETS, manifest) for manifest in manifests),
    )
    return time.monotonic() - began


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


async def unlabel(rest: KubeRest, nodes: list[tuple[str, str]], pods_follow: bool) -> None:
    """Take the floor's (or the operator's) labels off the nodes: the next run writes them all."""
    removals = floor_patches(nodes, pods_follow, remove=True)
    await asyncio.gather(*(rest.patch(f"/api/v1/nodes/{name}", patch) for name, patch in removals))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]
