"""Node events to RolloutActors: `python -m tests.bench.node_fanout [--modules 50] [--nodes 200]
[--selected 4]`.

In-process (no API server): real RolloutActors (one per Module, each selecting `--selected`
nodes of its own), the real `RolloutRoutes`, and a bridge on a loop thread. Every node gets one
MODIFIED event (a status heartbeat, say), delivered on the loop thread as the Node informer does;
the run ends when every actor has handled everything told to it. Reports messages told to
RolloutActors, wall and CPU time per Node event, and Node writes (must be 0: nothing changed).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

from actors.bridge import Bridge
from actors.messages import Flush, RolloutTargets
from actors.ports import ActorContext, ActorSettings
from actors.rollout import RolloutActor
from actors.routes import RolloutRoutes
from ooto.domain.api import Module
from ooto.domain.render import LABEL_MODULE


class Store:
    def __init__(self, objs: dict[str, dict[str, Any]] | None = None) -> None:
        self.objs = objs or {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objs.get(name)

    def list(self) -> list[dict[str, Any]]:
        return list(self.objs.values())


class IO:
    def __init__(self, nodes: dict[str, dict[str, Any]]) -> None:
        self.nodes, self.loader_pods, self.daemonsets = Store(nodes), Store(), Store()
        self.writes = 0

    async def patch_node(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        raise RuntimeError("the bench writes nothing")


class Metrics:
    def upgrade_nodes(self, *args: Any) -> None: ...

    def node_upgraded(self, *args: Any) -> None: ...

    def upgrade_step(self, *args: Any) -> None: ...


class Parent:
    """Stands for the ModuleSupervisor: takes the reports."""

    def tell(self, message: object) -> None: ...


class CountingBridge(Bridge):
    told = 0

    def tell(self, ref: Any, message: object) -> None:
        CountingBridge.told += 1
        super().tell(ref, message)


def module(index: int) -> Module:
    raw = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": f"m{index}", "namespace": "ns", "uid": f"u{index}", "generation": 1},
        "spec": {
            "selector": {"m": str(index)},
            "moduleLoader": {"name": "loader", "image": "unused"},
            "kernelMappings": [{"regexp": ".", "containerImage": "r.example/m:a"}],
        },
    }
    return Module.model_validate(raw)


def node(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version), "labels": {}}}


def run(modules: int, nodes: int, selected: int) -> dict[str, float]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    bridge = CountingBridge(loop)
    names = [f"node-{i}" for i in range(nodes)]
    io = IO({n: node(n, 1) for n in names})
    routes = RolloutRoutes(bridge, LABEL_MODULE)
    context = ActorContext(bridge, io, ActorSettings(), Metrics(), None, routes)  # type: ignore[arg-type]
    actors = []
    for i in range(modules):
        mine = frozenset(names[(i * selected + j) % nodes] for j in range(selected))
        ref = RolloutActor.start(context, Parent(), module(i))
        ref.tell(RolloutTargets(module(i), {"k": ("digest", mine, f"ds{i}")}))
        actors.append(ref)
    barrier(loop, actors)
    CountingBridge.told = 0
    cpu, wall = time.process_time(), time.monotonic()

    def deliver() -> None:
        for n in names:
            routes.deliver_node("MODIFIED", node(n, 2))

    loop.call_soon_threadsafe(deliver)
    barrier(loop, actors)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    told = CountingBridge.told
    for ref in actors:
        ref.stop()
    loop.call_soon_threadsafe(loop.stop)
    return {
        "told": told,
        "wall_us_per_event": wall / nodes * 1e6,
        "cpu_us_per_event": cpu / nodes * 1e6,
        "writes": io.writes,
    }


def barrier(loop: asyncio.AbstractEventLoop, actors: list[Any]) -> None:
    for _ in range(2):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(30)
    for ref in actors:
        ref.ask(Flush("barrier"), timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modules", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--selected", type=int, default=4)
    args = parser.parse_args()
    result = run(args.modules, args.nodes, args.selected)
    print(" ".join(f"{k}={v:.0f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
