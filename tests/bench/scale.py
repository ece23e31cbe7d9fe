"""Scale benchmark (issue 7): `python -m tests.bench.scale [--sizes 100,250,500] [--quick]`.

Starts its own local control plane, a simulated kubelet in this process and the operator as a
child process (`ooto run`, imports paid before the clock starts: see launcher.py), then prints
one table: the raw-write floor, convergence per N (DaemonSets and kernel labels, pods Ready,
ready labels, each against a floor where one applies), writes (ready-label writes apart), quiet,
restart, kernel-change latency and memory for 10 Modules x the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from ooto.domain.kernels import daemonset_name
from ooto.domain.upgrade.keys import ready_label_key
from ooto.kube.client import KubeApi
from ooto.kube.config import make_api_client
from ooto.settings import Settings
from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from ooto.testing.crds import install_crds
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.bench.fleet import (
    FLOOR_MODULE,
    GROUP_PATH,
    ObjectWatch,
    add_fleet,
    all_ready,
    all_rolled_out,
    apply_module,
    carry,
    create_namespace,
    delete_namespace,
    fleet,
    labelled,
    measure_floor,
    module_ready,
    percentile,
    unlabel,
)
from tests.bench.operator_process import OperatorProcess
from tests.bench.report import ConvergeRow, Results, median_row, print_report, split_writes

TIMEOUT = 600.0
MODULE = "mod"


@dataclass
class Bench:
    cluster: LocalCluster
    rest: KubeRest
    kubelet: SimulatedKubelet
    concurrency: int
    workdir: Path
    quick: bool
    rounds: int = 3
    profile_dir: Path | None = None
    results: Results = field(default_factory=Results)
    operator: OperatorProcess | None = None

    async def stop_operator(self) -> None:
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None

    def new_operator(self) -> OperatorProcess:
        log_file = self.workdir / "operator.log"
        return OperatorProcess(self.cluster.admin_kubeconfig, log_file, tag_ready_writes=True)


async def install_crd(rest: KubeRest) -> None:
    await install_crds(rest)


async def floor_once(
    bench: Bench, namespace: str, nodes: list[tuple[str, str]], pods_follow: bool
) -> tuple[float, float]:
    """One floor measurement in its own namespace, cleaned up (labels too) before returning:
    seconds for its writes, and (with `pods_follow`, else 0) seconds until every node carries
    its ready label, as the benchmark's node watch saw it (as for the operator).

    The benchmark's own watches run as they do while the operator converges, so both
    measurements share the machine with the same observers.
    """
    await create_namespace(bench.rest, namespace)
    watches = await observe(bench.rest, namespace)
    key = ready_label_key(namespace, FLOOR_MODULE) if pods_follow else ""
    node_watch = watches[1]
    labels = asyncio.create_task(node_watch.wait_for(carry(nodes, key), TIMEOUT)) if key else None
    # A fresh client, like the operator's: its connection set-up is inside the time too.
    client = await make_api_client(str(bench.cluster.admin_kubeconfig))
    api = KubeApi(client, concurrency=bench.concurrency)
    try:
        began, seconds = await measure_floor(api, bench.rest, namespace, nodes, pods_follow)
        return seconds, (await labels) - began if labels is not None else 0.0
    finally:
        if labels is not None:
            labels.cancel()
        for watch in watches:
            await watch.stop()
        await api.close()
        await delete_namespace(bench.rest, namespace)
        await unlabel(bench.rest, nodes, pods_follow, key)


async def observe(rest: KubeRest, namespace: str) -> list[ObjectWatch]:
    """The benchmark's watches during a convergence: DaemonSets, nodes, Modules, pods."""
    return [
        await ObjectWatch(rest, f"/apis/apps/v1/namespaces/{namespace}/daemonsets").start(),
        await ObjectWatch(rest, "/api/v1/nodes").start(),
        await ObjectWatch(rest, f"{GROUP_PATH}/namespaces/{namespace}/modules").start(),
        await ObjectWatch(rest, f"/api/v1/namespaces/{namespace}/pods").start(),
    ]


async def converge(bench: Bench, n: int) -> tuple[ObjectWatch, ObjectWatch, list[tuple[str, str]]]:
    """Rounds of (floor, floor without pods, operator convergence) for N nodes, one kernel each,
    and one Module selecting all; the row is their median. Alternating the three within a round
    exposes them to the same moment of a shared, noisy machine. The last round's operator and
    watches stay for the steps that follow."""
    nodes = fleet(f"n{n}", n)
    await add_fleet(bench.kubelet, nodes)
    rows: list[ConvergeRow] = []
    for i in range(bench.rounds):
        floor, floor_labels = await floor_once(bench, f"bench-floor-{n}-{i}", nodes, True)
        api_floor, _ = await floor_once(bench, f"bench-nopods-{n}-{i}", nodes, pods_follow=False)
        last = i == bench.rounds - 1
        namespace = f"bench-{n}" if last else f"bench-{n}-{i}"
        row, daemonsets, modules = await converge_once(bench, n, nodes, namespace, floor)
        row.api_floor, row.floor_ready_labels = api_floor, floor_labels
        rows.append(row)
        print(round_line(row, i), flush=True)
        if last:
            bench.results.rows.append(median_row(rows))
            return daemonsets, modules, nodes
        await daemonsets.stop()
        await bench.stop_operator()
        await delete_namespace(bench.rest, namespace)
        await unlabel(bench.rest, nodes, True, ready_label_key(namespace, MODULE))
    raise ValueError("rounds must be at least 1")


def round_line(row: ConvergeRow, i: int) -> str:
    return (
        f"N={row.n} round {i + 1}: floor {row.floor:.2f} s (no pods {row.api_floor:.2f} s), "
        f"DaemonSets + labels {row.created:.2f} s ({row.created / row.floor:.2f}x), "
        f"ready labels {row.ready_labels:.2f} s (floor {row.floor_ready_labels:.2f} s, "
        f"{row.ready_labels / row.floor_ready_labels:.2f}x), Module Ready {row.ready:.2f} s"
    )


async def converge_once(
    bench: Bench, n: int, nodes: list[tuple[str, str]], namespace: str, floor: float
) -> tuple[ConvergeRow, ObjectWatch, ObjectWatch]:
    """A fresh operator converges one new Module over the (unlabelled) nodes."""
    await create_namespace(bench.rest, namespace)
    await apply_module(bench.rest, namespace, MODULE)
    daemonsets, node_watch, modules, pods = await observe(bench.rest, namespace)
    operator = bench.operator = bench.new_operator()
    await operator.start()
    profile = bench.profile_dir
    profiler = operator.profile(profile / f"converge-{n}-{namespace}.txt") if profile else None
    cpu = operator.stats().cpu_seconds
    began = operator.go()
    synced = asyncio.create_task(operator.wait_ready())
    # Waited for from the start, like the floor's: they may come before the DaemonSets are all in.
    ready_key = ready_label_key(namespace, MODULE)
    ready_labels = asyncio.create_task(node_watch.wait_for(carry(nodes, ready_key), TIMEOUT))
    row = ConvergeRow(n, floor)
    row.created = await daemonsets.wait_for(lambda objs: len(objs) >= n, TIMEOUT) - began
    labels_done = await node_watch.wait_for(labelled(nodes), TIMEOUT) - began
    row.created = max(row.created, labels_done)
    row.cpu_created = operator.stats().cpu_seconds - cpu
    row.pods_ready = await pods.wait_for(lambda objs: all_ready(objs, n), TIMEOUT) - began
    row.ds_ready = await daemonsets.wait_for(lambda objs: all_rolled_out(objs, n), TIMEOUT) - began
    row.ready = await modules.wait_for(lambda objs: module_ready(objs[MODULE]), TIMEOUT) - began
    row.cpu = operator.stats().cpu_seconds - cpu
    row.ready_labels = (await ready_labels) - began
    first_ds = min(daemonsets.first_seen.values()) - began
    print(f"  synced {await synced:.2f} s, first DaemonSet {first_ds:.2f} s", flush=True)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        await asyncio.to_thread(profiler.wait)
    for watch in (node_watch, modules, pods):
        await watch.stop()
    row.writes = await operator.write_requests()
    if split_writes(row.writes)[1] == 0:
        raise RuntimeError("no ready-label write counted apart: see tests/bench/ready_writes.py")
    await operator.save_metrics(bench.workdir / f"metrics-{namespace}.txt")
    return row, daemonsets, modules


async def tear_down(bench: Bench, n: int, daemonsets: ObjectWatch) -> None:
    await daemonsets.stop()
    await bench.stop_operator()
    await asyncio.gather(
        bench.kubelet.remove_all_nodes(), delete_namespace(bench.rest, f"bench-{n}")
    )


async def quiet(bench: Bench) -> None:
    assert bench.operator is not None
    seconds = 15.0 if bench.quick else 60.0
    writes, stats = await bench.operator.writes(), bench.operator.stats()
    await asyncio.sleep(seconds)
    after, stats_after = await bench.operator.writes(), bench.operator.stats()
    extra = sum(after.values()) - sum(writes.values())
    bench.results.quiet = (seconds, extra, stats_after.cpu_seconds - stats.cpu_seconds)


async def restart(bench: Bench) -> None:
    assert bench.operator is not None
    await bench.operator.stop()
    operator = bench.operator = bench.new_operator()
    await operator.start()
    operator.go()
    ready = await operator.wait_ready()
    settle = 5.0 if bench.quick else 15.0
    await asyncio.sleep(settle)
    bench.results.restart = (ready, settle, sum((await operator.writes()).values()))


async def kernel_changes(
    bench: Bench, daemonsets: ObjectWatch, nodes: list[tuple[str, str]]
) -> None:
    """20 nodes reboot into a new kernel one after another; node patch -> new DaemonSet seen."""
    latencies = []
    for name, kernel in nodes[:20]:
        new_kernel = f"{kernel}.upd"
        wanted = daemonset_name("mod", "module-loader", new_kernel)
        sent = time.monotonic()
        await bench.kubelet.set_kernel(name, new_kernel)
        await daemonsets.wait_for(lambda objs, w=wanted: w in objs, 60)  # type: ignore[misc]
        latencies.append(daemonsets.first_seen[wanted] - sent)
        await asyncio.sleep(0.2)
    bench.results.latency = (
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        len(latencies),
    )


async def memory(bench: Bench, n: int, modules: ObjectWatch, count: int = 10) -> None:
    """count Modules x n kernels on the same n nodes; RSS and threads after all are Ready."""
    assert bench.operator is not None
    namespace, names = f"bench-{n}", [f"mod-{i}" for i in range(1, count)]
    await modules.start()
    began = time.monotonic()
    for name in names:
        await apply_module(bench.rest, namespace, name)
    all_names = ["mod", *names]
    ready = await modules.wait_for(
        lambda objs: all(k in objs and module_ready(objs[k]) for k in all_names), TIMEOUT
    )
    await asyncio.sleep(5)
    stats = bench.operator.stats()
    bench.operator.save_smaps(bench.workdir / "operator-smaps.txt")
    kernel_actors = await bench.operator.kernel_actors()
    # + a supervisor and a rollout actor per Module, the root, the node tracker, the node cleaner
    actors = kernel_actors + 2 * count + 3
    bench.results.memory = (count, n, ready - began, stats.rss_mb, stats.threads, actors)
    await modules.stop()


@contextlib.asynccontextmanager
async def bench_context(cluster: LocalCluster, quick: bool) -> AsyncIterator[Bench]:
    concurrency = Settings.load({"leader_election": False}).api_concurrency
    async with KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest:
        await install_crd(rest)
        kubelet = SimulatedKubelet(rest)
        task = asyncio.create_task(kubelet.run(), name="simulated-kubelet")
        await asyncio.wait_for(kubelet.synced.wait(), 30)
        workdir = Path(tempfile.mkdtemp(prefix="ooto-bench-"))
        bench = Bench(cluster, rest, kubelet, concurrency, workdir, quick)
        try:
            yield bench
        finally:
            if bench.operator is not None:
                await bench.operator.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run(
    cluster: LocalCluster,
    sizes: list[int],
    quick: bool,
    profile: Path | None,
    converge_only: bool = False,
    rounds: int = 3,
) -> Results:
    async with bench_context(cluster, quick) as bench:
        bench.rounds = bench.results.rounds = rounds
        bench.profile_dir = profile
        bench.results.concurrency = bench.concurrency
        print(f"operator log: {bench.workdir / 'operator.log'}", flush=True)
        for n in sizes[:-1]:
            daemonsets, _, _ = await converge(bench, n)
            print(f"N={n} done", flush=True)
            await tear_down(bench, n, daemonsets)
        n = sizes[-1]
        daemonsets, modules, nodes = await converge(bench, n)
        if converge_only:
            await daemonsets.stop()
            return bench.results
        print(f"N={n} done; quiet, restart, kernel changes, memory", flush=True)
        await quiet(bench)
        await restart(bench)
        await kernel_changes(bench, daemonsets, nodes)
        await memory(bench, n, modules)
        await daemonsets.stop()
        return bench.results


def machine() -> str:
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} CPUs, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="100,250,500", help="comma-separated N (default: %(default)s)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the operator's convergence into DIR")
    parser.add_argument("--converge-only", action="store_true", help="skip quiet ... memory")
    parser.add_argument("--quick", action="store_true", help="quiet 15 s instead of 60 s")
    parser.add_argument(
        "--rounds", type=int, default=3, help="floor/convergence rounds per N (default: 3)"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with LocalCluster(Binaries.expected()) as cluster:
        results = asyncio.run(
            run(cluster, sizes, args.quick, args.profile, args.converge_only, args.rounds)
        )
    print_report(results, machine())


if __name__ == "__main__":
    main()
