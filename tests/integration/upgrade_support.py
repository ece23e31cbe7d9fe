"""Building blocks for the day-2 scenarios: a fleet of nodes, workloads on them, and watchers that
see every change (not samples) of ready labels and pods while a rollout runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from ooto.domain.digest import LOAD_DIGEST_ANNOTATION
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest

LOADER = "ooto.sigs.k8s.io/role=module-loader"
WORKLOAD = "uses-mod"


async def add_fleet(
    kubelet: SimulatedKubelet, prefix: str, kernels: list[str], count: int, selector: dict[str, str]
) -> list[str]:
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    await kubelet.add_nodes(
        (name, kernels[i % len(kernels)], selector) for i, name in enumerate(names)
    )
    return names


async def add_workloads(rest: KubeRest, namespace: str, nodes: Iterable[str]) -> None:
    """One pod per node that uses the module (bound directly: no scheduler needed)."""
    for node in nodes:
        pod = {
            "metadata": {"name": f"work-{node}", "labels": {"app": WORKLOAD}},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "main", "image": "example.invalid/work:1"}],
            },
        }
        await rest.post(f"/api/v1/namespaces/{namespace}/pods", pod)


async def loader_pods(rest: KubeRest, namespace: str) -> list[dict[str, Any]]:
    found = await rest.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": LOADER})
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def digest_of(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("annotations") or {}).get(LOAD_DIGEST_ANNOTATION, ""))


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def nodes_by_name(rest: KubeRest, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = set(names)
    found = await rest.get("/api/v1/nodes")
    return {n["metadata"]["name"]: n for n in found["items"] if n["metadata"]["name"] in wanted}


@dataclass
class LabelWatch:
    """Every Node event of `nodes`: the most nodes ever without the ready label at once, and
    every removal of the label."""

    label: str
    nodes: set[str]
    missing: set[str] = field(default_factory=set)
    most_missing: int = 0
    removals: list[str] = field(default_factory=list)
    missing_at_removal: list[int] = field(default_factory=list)
    """How many nodes lacked the label right after each removal (the removed one included)."""

    def see(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if name not in self.nodes:
            return
        labelled = (node["metadata"].get("labels") or {}).get(self.label) == "true"
        if not labelled and name not in self.missing:
            self.missing.add(name)
            self.removals.append(name)
            self.missing_at_removal.append(len(self.missing))
        elif labelled:
            self.missing.discard(name)
        self.most_missing = max(self.most_missing, len(self.missing))


@dataclass
class PodWatch:
    """Every pod event of a namespace, in the API server's order."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def see(self, kind: str, pod: dict[str, Any]) -> None:
        self.events.append((kind, pod))

    def loader_deletions(self) -> list[dict[str, Any]]:
        """Loader pods at the first event that showed them being deleted (at most once per uid)."""
        seen: set[str] = set()
        found = []
        for kind, pod in self.events:
            meta = pod["metadata"]
            if (meta.get("labels") or {}).get("ooto.sigs.k8s.io/role") != "module-loader":
                continue
            if (meta.get("deletionTimestamp") or kind == "DELETED") and meta["uid"] not in seen:
                seen.add(meta["uid"])
                found.append(pod)
        return found

    def present_when(self, uid: str, node: str, role_or_app: str) -> list[str]:
        """Pods of `role_or_app` still on `node` when pod `uid` was first seen being deleted."""
        alive: dict[str, str] = {}
        for kind, pod in self.events:
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            if meta["uid"] == uid and (meta.get("deletionTimestamp") or kind == "DELETED"):
                return sorted(alive.values())
            if pod["spec"].get("nodeName") != node:
                continue
            if role_or_app not in (labels.get("app"), labels.get("ooto.sigs.k8s.io/role")):
                continue
            if kind == "DELETED":
                alive.pop(meta["uid"], None)
            else:
                alive[meta["uid"]] = meta["name"]
        raise AssertionError(f"pod {uid} was never deleted")


@contextlib.asynccontextmanager
async def watching(
    rest: KubeRest, namespace: str, labels: LabelWatch, pods: PodWatch
) -> AsyncIterator[None]:
    """Follow Nodes and the namespace's pods from now until the block ends."""
    started = [asyncio.Event(), asyncio.Event()]

    async def follow(path: str, see: Any, ready: asyncio.Event) -> None:
        listed = await rest.get(path)
        for item in listed["items"]:
            see("ADDED", item)
        ready.set()
        version = listed["metadata"]["resourceVersion"]
        while True:
            params = {"resourceVersion": version, "timeoutSeconds": "60"}
            async for event in rest.watch(path, params):
                version = event["object"]["metadata"].get("resourceVersion", version)
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    see(event["type"], event["object"])

    tasks = [
        asyncio.create_task(follow("/api/v1/nodes", lambda _, node: labels.see(node), started[0])),
        asyncio.create_task(follow(f"/api/v1/namespaces/{namespace}/pods", pods.see, started[1])),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
