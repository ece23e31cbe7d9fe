"""Two `ooto run` replicas, one Lease: one leads, the other stands by and takes over when it dies.

Short timings (lease 3 s, renew deadline 2 s, retry 0.5 s) keep the test quick; the takeover
bound is the lease duration plus a retry period plus slack for a loaded machine. Each replica is
a real process with its own metrics server, so leadership is read where an admin reads it: the
`ooto_leader` gauge and the Lease's holder (identity `<hostname>-<pid>`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest, RestError
from tests.integration.operator_process import OperatorProcess, operators
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    delete_module,
    eventually,
    get_module,
    literal,
    module_manifest,
    patch_module,
)

KERNEL = "5.14.0-70.13.1.el9_0.x86_64"
GPU = {"ooto-test/gpu": "true"}
LEASE = 3.0
RETRY = 0.5
TAKEOVER_SLACK = 6.0  # a loaded 2-core machine: process scheduling, API latency


async def lease_holder(rest: KubeRest, namespace: str) -> str:
    try:
        lease = await rest.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/ooto-leader"
        )
    except RestError as error:
        if error.status == 404:
            return ""
        raise
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def leaders(replicas: list[OperatorProcess]) -> list[OperatorProcess]:
    return [r for r in replicas if await r.value("ooto_leader") == 1]


async def module_series(replica: OperatorProcess, namespace: str) -> bool:
    """What /metrics shows for one Ready Module on one node, and actor message latencies."""
    module = {"namespace": namespace, "module": "mod"}
    return (
        await replica.value("ooto_modules", state="Ready") == 1
        and await replica.value("ooto_modules", state="NotReady") == 0
        and await replica.value("ooto_module_daemonset_pods_desired", **module) == 1
        and await replica.value("ooto_module_daemonset_pods_ready", **module) == 1
        and await replica.value("ooto_kernel_actors", state="Ready") == 1
        and all(
            [
                (
                    await replica.value("ooto_actor_message_latency_seconds_count", actor_kind=kind)
                    or 0
                )
                > 0
                for kind in ("OperatorRoot", "ModuleSupervisor", "KernelActor", "NodeTracker")
            ]
        )
    )


async def module_forgotten(replica: OperatorProcess, namespace: str) -> bool:
    """After a Module's deletion: no per-Module series left, no Module counted."""
    samples = await replica.samples()
    per_module = [labels for _, labels, _ in samples if labels.get("module") == "mod"]
    return (
        bool(samples) and not per_module and await replica.value("ooto_modules", state="Ready") == 0
    )


async def all_serving(replicas: list[OperatorProcess]) -> bool:
    return all([(await r.get("/healthz"))[0] == 200 for r in replicas])


async def ready_with_image(rest: KubeRest, namespace: str, image: str) -> bool:
    module = await get_module(rest, namespace, "mod")
    generation = module["metadata"]["generation"]
    ready = condition(module, "Ready")
    images = {
        c["image"]
        for ds in await daemonsets(rest, namespace, "mod")
        for c in ds["spec"]["template"]["spec"]["containers"]
    }
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and images == {image}
    )


async def test_one_replica_leads_and_the_standby_takes_over_when_it_is_killed(
    cluster: LocalCluster,
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    await kubelet.add_node("le-1", KERNEL, GPU)
    flags = (
        f"--watch-namespace={namespace}",
        f"--operator-namespace={namespace}",
        f"--lease-duration-seconds={LEASE}",
        "--renew-deadline-seconds=2",
        f"--retry-period-seconds={RETRY}",
        "--status-debounce-seconds=0.1",
        "--backoff-initial-seconds=0.5",
        "--build-backend=kaniko",
    )
    async with operators(cluster.admin_kubeconfig, tmp_path, *flags, count=2) as replicas:
        await eventually(lambda: all_serving(replicas), timeout=30)
        (leader,) = await eventually(lambda: leaders(replicas), timeout=30)
        (standby,) = [r for r in replicas if r is not leader]
        holder = await lease_holder(admin_rest, namespace)
        assert holder.endswith(f"-{leader.pid}"), holder
        assert await standby.value("ooto_leader") == 0

        await apply_module(
            admin_rest, namespace, module_manifest("mod", [literal(KERNEL, "example/mod:v1")])
        )
        await eventually(lambda: ready_with_image(admin_rest, namespace, "example/mod:v1"), 30)
        await eventually(lambda: module_series(leader, namespace), timeout=10)
        assert await standby.value("ooto_modules", state="Ready") == 0
        for replica in replicas:  # the standby serves probes too
            assert (await replica.get("/healthz"))[0] == 200
            assert (await replica.get("/readyz"))[0] == 200
        assert await standby.value("ooto_leader") == 0

        killed_at = time.monotonic()
        leader.kill()
        await eventually(lambda: standby.value("ooto_leader"), timeout=LEASE + 20, interval=0.1)
        takeover = time.monotonic() - killed_at
        print(f"\nstandby took over {takeover:.1f}s after the leader was killed (lease {LEASE}s)")
        assert takeover <= LEASE + RETRY + TAKEOVER_SLACK
        assert (await lease_holder(admin_rest, namespace)).endswith(f"-{standby.pid}")

        await patch_module(
            admin_rest,
            namespace,
            "mod",
            {"spec": {"kernelMappings": [literal(KERNEL, "example/mod:v2")]}},
        )
        await eventually(lambda: ready_with_image(admin_rest, namespace, "example/mod:v2"), 30)
        await eventually(lambda: module_series(standby, namespace), timeout=10)
        assert len(await daemonsets(admin_rest, namespace, "mod")) == 1, "adopted, not duplicated"
        assert (await standby.get("/readyz"))[0] == 200
        assert (await standby.get("/healthz"))[0] == 200
        assert standby.alive()

        await delete_module(admin_rest, namespace, "mod")
        await eventually(lambda: module_forgotten(standby, namespace), timeout=10)
