"""The operator killed with SIGKILL (no cleanup, no last status write) in the middle of a build and
in the middle of a rollout, then started again: it adopts the running build instead of starting
another, deletes the DaemonSets of kernels that left while it was dead, and finishes converging.

The operator runs as `ooto run` in a child process, as in its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from ooto.builds.model import BUILD_SELECTOR
from ooto.domain.kernels import kernel_label_value
from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet, build_destinations
from ooto.testing.podstatus import JobOutcome
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest, RestError
from tests.integration import operator_process
from tests.integration.reliability_support import GPU, A, B
from tests.integration.scenario_support import (
    apply_module,
    daemonsets,
    eventually,
    kernel_status,
    literal,
    module_manifest,
    node_selector_kernel,
    patch_module,
    pods_on,
    ready_module,
)

C = "6.1.0-rpi7-rpi-v8+"
DOCKERFILE = "FROM alpine\nARG KERNEL_FULL_VERSION\n"
FLAGS = (
    "--no-leader-election",
    "--build-backend=kaniko",
    "--status-debounce-seconds=0.1",
    "--backoff-initial-seconds=0.5",
    "--backoff-max-seconds=5",
)


class HeldBuilds:
    """A kubelet `job_outcome` hook: build pods stay Running until `release()`; then each pushes
    its destination to `registry` (as Kaniko would) and succeeds."""

    def __init__(self, kubelet: SimulatedKubelet, registry: RegistryServer) -> None:
        self.kubelet, self.registry = kubelet, registry
        self.released = False
        self.pods: set[str] = set()
        kubelet.job_outcome = self

    async def __call__(self, pod: JSON) -> JobOutcome:
        self.pods.add(pod["metadata"]["name"])
        if not self.released:
            return "Running"
        for image in build_destinations(pod):
            repo, _, tag = image.partition("/")[2].rpartition(":")
            await self.registry.push_manifest(repo, tag)
        return "Succeeded"

    def release(self, job_name: str) -> None:
        self.released = True
        self.kubelet.set_job_outcome(job_name, "Succeeded")  # re-handles the job's pods


@pytest_asyncio.fixture(loop_scope="session")
async def spawn(
    cluster: LocalCluster, crd: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Any]:
    watched = f"--watch-namespace={namespace}"
    async with operator_process.replicas(
        cluster.admin_kubeconfig, tmp_path, watched, *FLAGS
    ) as start:
        yield start


async def jobs(rest: KubeRest, ns: str) -> list[dict[str, Any]]:
    found = await rest.get(
        f"/apis/batch/v1/namespaces/{ns}/jobs", {"labelSelector": BUILD_SELECTOR}
    )
    return list(found.get("items", []))


async def test_killed_mid_build_the_restarted_operator_adopts_the_running_build(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    spawn: Any,
) -> None:
    held = HeldBuilds(kubelet, registry)
    await kubelet.add_nodes([("k1-a", A, GPU)])
    first = spawn("first")
    image = f"{registry.host}/kill-{secrets.token_hex(3)}/mod:${{KERNEL_XYZ}}"
    mapping = {
        "literal": A,
        "containerImage": image,
        "build": {"dockerfile": DOCKERFILE, "push": {"insecure": True}},
    }
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    [job] = await eventually(lambda: jobs(admin_rest, namespace), timeout=60)
    await eventually(lambda: asyncio.sleep(0, bool(held.pods)), timeout=30)  # its pod runs
    first.kill()

    second = spawn("second")
    await eventually(lambda: ready_replica(second), timeout=30)
    # The new operator's decision about the build, as it logs it ("adopting running Job ..." or,
    # were the bug back, "started Job ..."): only after it is the Job count evidence.
    await eventually(lambda: asyncio.sleep(0, "build of " in second.log_tail(400)), timeout=30)
    assert "adopting running Job" in second.log_tail(400)
    assert [j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)] == [
        job["metadata"]["uid"]
    ], "the restarted operator must adopt the running build, not start another"
    held.release(job["metadata"]["name"])

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)
    built = image.replace("${KERNEL_XYZ}", "5.14.0")
    assert kernel_status(module)[A]["build"] in ("Built", "NotNeeded")
    # No second build; the adopted Job itself is deleted once its image is in use.
    assert {j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)} <= {
        job["metadata"]["uid"]
    }
    pinned = await registry.digest(built.partition("/")[2].rpartition(":")[0], "5.14.0")
    assert await pods_on(admin_rest, namespace) == {"k1-a": f"{built}@{pinned}"}, "by digest"
    assert len(await daemonsets(admin_rest, namespace)) == 1


async def test_killed_mid_rollout_the_restarted_operator_finishes_and_leaves_no_orphans(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, spawn: Any
) -> None:
    await kubelet.add_nodes([("k2-a", A, GPU), ("k2-b", B, GPU)])
    first = spawn("first")
    v1 = [literal(A, "r.example/m:a1"), literal(B, "r.example/m:b1"), literal(C, "r.example/m:c1")]
    await apply_module(admin_rest, namespace, module_manifest("mod", v1))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)

    # v2 pods never get ready while the first operator lives: it dies mid-rollout.
    kubelet.pod_outcome = lambda pod: "Pending" if pod_image(pod).endswith("2") else None
    v2 = [literal(A, "r.example/m:a2"), literal(B, "r.example/m:b2"), literal(C, "r.example/m:c2")]
    await patch_module(admin_rest, namespace, "mod", {"spec": {"kernelMappings": v2}})

    async def rolling() -> bool:
        images = {image_of(ds) for ds in await daemonsets(admin_rest, namespace)}
        return images == {"r.example/m:a2", "r.example/m:b2"}

    await eventually(rolling, timeout=30)
    first.kill()
    # While no operator runs, node k2-b moves to kernel C: kernel B's DaemonSet is an orphan.
    await kubelet.set_kernel("k2-b", C)
    kubelet.pod_outcome = None
    await poke_pods(admin_rest, namespace)  # the kubelet looks at the held pods again

    spawn("second")
    wanted = {kernel_label_value(A): "r.example/m:a2", kernel_label_value(C): "r.example/m:c2"}

    async def converged() -> bool:
        sets = await daemonsets(admin_rest, namespace)
        return {node_selector_kernel(ds): image_of(ds) for ds in sets} == wanted and len(sets) == 2

    await eventually(converged, timeout=60)
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)
    assert set(kernel_status(module)) == {A, C}
    assert await pods_on(admin_rest, namespace) == {
        "k2-a": "r.example/m:a2",
        "k2-b": "r.example/m:c2",
    }


async def ready_replica(replica: operator_process.OperatorProcess) -> bool:
    return (await replica.get("/readyz"))[0] == 200


async def poke_pods(rest: KubeRest, ns: str) -> None:
    for pod in (await rest.get(f"/api/v1/namespaces/{ns}/pods")).get("items", []):
        path = f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}"
        with contextlib.suppress(RestError):
            await rest.patch(path, {"metadata": {"annotations": {"poked": "1"}}})


def pod_image(pod: JSON) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def image_of(ds: dict[str, Any]) -> str:
    return str(ds["spec"]["template"]["spec"]["containers"][0]["image"])
