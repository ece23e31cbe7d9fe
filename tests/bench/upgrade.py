"""Upgrade benchmark (issue 12): `python -m tests.bench.upgrade [--nodes 500] [--max-parallel 50]`.

Own local control plane, simulated kubelet in this process, the operator as a child process. N
nodes (one kernel each) converge on a Module with a device plugin; then its image changes and the
operator upgrades every node, `maxParallel` at a time. Watches of Nodes and loader pods time every
step; the report gives the operator's own share per node:

- ready -> label back: from the new loader pod's Ready (as the watch saw it) to the ready label
  back on the Node;
- slot -> next start: from a node's label back (its slot free) to the next node's label off;
- writes per node, by verb and resource, and writes in a quiet period afterwards (should be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ooto.domain.upgrade.keys import ready_label_key
from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from tests.bench.fleet import (
    GROUP_PATH,
    ObjectWatch,
    add_fleet,
    create_namespace,
    fleet,
    module_manifest,
    percentile,
)
from tests.bench.operator_process import OperatorProcess
from tests.bench.scale import bench_context

JSON = dict[str, Any]
LOADER = "ooto.sigs.k8s.io/role=module-loader"
STEP_HISTOGRAM = "ooto_upgrade_step_latency_seconds"
LOG_LEVEL = os.environ.get("OOTO_BENCH_LOG_LEVEL", "WARNING")


class Timeline:
    """When each node's label went off and came back, and when its new loader pod got Ready."""

    def __init__(self, label: str, nodes: set[str]) -> None:
        self.label, self.nodes = label, nodes
        self.off: dict[str, float] = {}
        self.back: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.armed = False
        self.old_pods: set[str] = set()

    def node(self, obj: JSON) -> None:
        name = obj["metadata"]["name"]
        if not self.armed or name not in self.nodes:
            return
        labelled = (obj["metadata"].get("labels") or {}).get(self.label) == "true"
        if not labelled and name not in self.off:
            self.off[name] = time.monotonic()
        elif labelled and name in self.off and name not in self.back:
            self.back[name] = time.monotonic()

    def pod(self, obj: JSON) -> None:
        if not self.armed or obj["metadata"]["uid"] in self.old_pods:
            return
        conditions = (obj.get("status") or {}).get("conditions") or []
        node = obj["spec"].get("nodeName", "")
        if node and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            self.ready.setdefault(node, time.monotonic())


def hooked(watch: ObjectWatch, see: Any) -> ObjectWatch:
    original = watch._apply

    async def apply(kind: str, obj: JSON) -> None:
        if kind != "DELETED":
            see(obj)
        await original(kind, obj)

    watch._apply = apply  # type: ignore[method-assign]
    return watch


async def run(n: int, max_parallel: int, profile: Path | None) -> dict[str, Any]:
    with LocalCluster(Binaries.expected()) as cluster:
        async with bench_context(cluster, quick=True) as bench:
            return await upgrade(bench, n, max_parallel, profile)


async def upgrade(bench: Any, n: int, max_parallel: int, profile: Path | None) -> dict[str, Any]:
    namespace, nodes = "bench-upgrade", fleet("u", n)
    await add_fleet(bench.kubelet, nodes)
    await create_namespace(bench.rest, namespace)
    label = ready_label_key(namespace, "mod")
    timeline = Timeline(label, {name for name, _ in nodes})
    node_watch = await hooked(ObjectWatch(bench.rest, "/api/v1/nodes"), timeline.node).start()
    pod_path = f"/api/v1/namespaces/{namespace}/pods"
    pod_watch = await hooked(
        ObjectWatch(bench.rest, pod_path, {"labelSelector": LOADER}), timeline.pod
    ).start()
    operator = bench.operator = OperatorProcess(
        bench.cluster.admin_kubeconfig, bench.workdir / "operator.log", f"--log-level={LOG_LEVEL}"
    )
    await operator.start()
    operator.go()
    manifest = module_manifest("mod")
    manifest["spec"]["devicePlugin"] = {"name": "dp", "image": "registry.invalid/dp:1"}
    manifest["spec"]["upgradePolicy"] = {"maxParallel": max_parallel}
    await bench.rest.post(f"{GROUP_PATH}/namespaces/{namespace}/modules", manifest)
    started = time.monotonic()
    await node_watch.wait_for(lambda objs: all_labelled(objs, label, timeline.nodes), 900)
    day1 = time.monotonic() - started
    print(f"day 1: {n} nodes labelled in {day1:.1f} s", flush=True)

    timeline.old_pods = {p["metadata"]["uid"] for p in pod_watch.objects.values()}
    before = await operator.write_requests()
    timeline.armed = True
    profiler = operator.profile(profile / "upgrade.txt") if profile else None
    bumped = time.monotonic()
    image = "registry.invalid/ooto-bench/mod:v2-${KERNEL_FULL_VERSION}"
    mapping = [{"regexp": "^.+$", "containerImage": image}]
    await bench.rest.patch(
        f"{GROUP_PATH}/namespaces/{namespace}/modules/mod", {"spec": {"kernelMappings": mapping}}
    )
    await node_watch.wait_for(lambda _: len(timeline.back) == n, 1800)
    total = time.monotonic() - bumped
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        await asyncio.to_thread(profiler.wait)
    await settled(bench, namespace, n)
    after = await operator.write_requests()
    own = {
        step: bucket_summary(await operator.buckets(STEP_HISTOGRAM, step=step))
        for step in ("label_back", "next_start")
    }
    print(f"settled; operator log: {bench.workdir / 'operator.log'}", flush=True)
    module_path = f"{GROUP_PATH}/namespaces/{namespace}/modules/mod"
    status_then = (await bench.rest.get(module_path)).get("status") or {}
    await asyncio.sleep(10)
    quiet = await operator.write_requests()
    status_now = (await bench.rest.get(module_path)).get("status") or {}
    changed = sorted(
        k for k in {*status_then, *status_now} if status_then.get(k) != status_now.get(k)
    )
    if changed:
        print(f"status changed at rest: {changed}; conditions {conditions(status_now)}")
    await node_watch.stop()
    await pod_watch.stop()
    results = report(timeline, n, max_parallel, total, day1, before, after, quiet)
    results["operator_label_back_ms"] = own["label_back"]
    results["operator_next_start_ms"] = own["next_start"]
    return results


async def settled(bench: Any, namespace: str, n: int) -> None:
    """The Module's final status is in: every node up to date, and Ready and Progressing say so
    for this generation. nodesUpToDate == n alone comes too early: the ready labels (and so
    nodesUpToDate) follow the loader pods' Ready, while each kernel's nodesReady follows its
    DaemonSet's status, which the DaemonSet controller updates a little later; the status that
    turns Ready (Rolling -> Converged) is one more write, and news, not a write at rest."""
    path = f"{GROUP_PATH}/namespaces/{namespace}/modules/mod"
    for _ in range(1200):
        module = await bench.rest.get(path)
        status = module.get("status") or {}
        final = conditions(status) == {"Ready": "True", "Progressing": "False"}
        if (
            final
            and status.get("observedGeneration") == module["metadata"]["generation"]
            and (status.get("upgrade") or {}).get("nodesUpToDate") == n
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("status never showed the upgrade done and the Module Ready")


def conditions(status: Mapping[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions") or ()}


def all_labelled(objs: Mapping[str, JSON], label: str, nodes: set[str]) -> bool:
    found = [o for name, o in objs.items() if name in nodes]
    return len(found) == len(nodes) and all(
        (o["metadata"].get("labels") or {}).get(label) == "true" for o in found
    )


def report(
    timeline: Timeline,
    n: int,
    max_parallel: int,
    total: float,
    day1: float,
    before: Mapping[tuple[str, str], int],
    after: Mapping[tuple[str, str], int],
    quiet: Mapping[tuple[str, str], int],
) -> dict[str, Any]:
    ready_to_back = [
        (timeline.back[node] - timeline.ready[node]) * 1000
        for node in timeline.back
        if node in timeline.ready
    ]
    offs = sorted(timeline.off.values())
    gaps = []
    for back in sorted(timeline.back.values()):
        later = [t for t in offs if t >= back]
        if later and len(gaps) < n - max_parallel:
            gaps.append((later[0] - back) * 1000)
    writes = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    return {
        "nodes": n,
        "maxParallel": max_parallel,
        "day1_seconds": round(day1, 2),
        "upgrade_seconds": round(total, 2),
        "ready_to_label_back_ms": summary(ready_to_back),
        "slot_to_next_start_ms": summary(gaps),
        "writes_per_node": {
            f"{v} {r}": round(c / n, 2) for (v, r), c in sorted(writes.items()) if c
        },
        "writes_at_rest": {
            f"{v} {r}": c - after.get((v, r), 0)
            for (v, r), c in sorted(quiet.items())
            if c != after.get((v, r), 0)
        },
    }


def bucket_summary(buckets: Mapping[float, float]) -> dict[str, float | str]:
    """Count and the bucket bounds p50 and p99 fall under ("<= 75" means within 75 ms), from the
    operator's cumulative histogram buckets."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0
    if not total:
        return {}

    def bound(q: float) -> str:
        upper = next(le for le, count in ordered if count >= q * total)
        return f"<= {upper * 1000:g}" if upper != float("inf") else "> last bucket"

    return {"n": int(total), "p50": bound(0.5), "p99": bound(0.99)}


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--max-parallel", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="py-spy the operator's upgrade into DIR")
    args = parser.parse_args()
    results = asyncio.run(run(args.nodes, args.max_parallel, args.profile))
    for key, value in results.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
