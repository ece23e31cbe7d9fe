"""The registry goes away (or crawls) while a Module needs a build: the kernel reports
ImageCheckFailed with the cause, retries with backoff instead of hammering the registry or the API
server, and converges when the registry returns; Modules that do not need it carry on meanwhile.

A `FaultProxy` stands in front of the session's registry, so only this test's images are hit.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ooto.testing.kubelet import SimulatedKubelet, build_destinations
from ooto.testing.podstatus import JobOutcome
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.fault_proxy import FaultProxy
from tests.integration.reliability_support import GPU, A
from tests.integration.scenario_support import (
    apply_module,
    condition,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    pods_on,
    ready_module,
)

DOCKERFILE = "FROM alpine\nARG KERNEL_FULL_VERSION\n"


@pytest_asyncio.fixture(loop_scope="session")
async def registry_proxy(registry: RegistryServer) -> AsyncIterator[FaultProxy]:
    host, _, port = registry.host.rpartition(":")
    async with FaultProxy(host, int(port)) as proxy:
        yield proxy


def push_to(registry: RegistryServer) -> object:
    """A kubelet `job_outcome` hook: each build pushes its destination (whatever host it names)
    to `registry` and succeeds."""

    async def decide(pod: JSON) -> JobOutcome:
        for image in build_destinations(pod):
            repo, _, tag = image.partition("/")[2].rpartition(":")
            await registry.push_manifest(repo, tag)
        return "Succeeded"

    return decide


def checks(refused_at: list[float], since: float) -> list[float]:
    """Start times of image checks: one check may open a few connections within a moment."""
    starts: list[float] = []
    for at in refused_at:
        if at >= since and (not starts or at - starts[-1] > 0.5):
            starts.append(at)
    return starts


async def test_registry_down_reports_image_check_failed_backs_off_and_recovers(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    registry_proxy: FaultProxy,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kubelet.job_outcome = push_to(registry)  # type: ignore[assignment]
    await kubelet.add_nodes([("g1-a", A, GPU)])
    operator = await start_operator(watch_namespace=namespace, build_backend="kaniko")
    registry_proxy.down()
    down_since = asyncio.get_running_loop().time()
    image = f"{registry_proxy.host}/down-{secrets.token_hex(3)}/mod:${{KERNEL_XYZ}}"
    build = {"dockerfile": DOCKERFILE, "push": {"insecure": True}}
    built = module_manifest("built", [{"literal": A, "containerImage": image, "build": build}])
    await apply_module(admin_rest, namespace, built)
    await apply_module(
        admin_rest, namespace, module_manifest("other", [literal(A, "r.example/other:1")])
    )

    async def check_failed() -> dict[str, str] | None:
        ready = condition(await get_module(admin_rest, namespace, "built"), "Ready")
        return ready if ready.get("reason") == "ImageCheckFailed" else None

    ready = await eventually(check_failed, timeout=30)
    assert registry_proxy.host in ready["message"]
    assert await eventually(lambda: ready_module(admin_rest, namespace, "other"), timeout=30)

    # While the registry stays down: retries are spaced out, status is not rewritten each time.
    loop, status = asyncio.get_running_loop(), operator.metrics.requests_total
    status_writes = status(verb="patch", resource="modules/status")
    # The backoff is counted in the kernel actor's retries (each logs "cannot check"), not in the
    # gaps between connections: the registry client caches an error for 3 s, so connections are
    # 3 s apart at least whatever the backoff, and comparing their gaps was a coin toss (3.3 s
    # against 3.2 s failed once).
    window = 14.0
    caplog.clear()
    await asyncio.sleep(window)
    attempts = checks(registry_proxy.refused_at, down_since)
    retries = [r for r in caplog.records if "cannot check" in r.getMessage()]
    rewrites = status(verb="patch", resource="modules/status") - status_writes
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
    seconds = loop.time() - down_since
    print(f"\nregistry down {seconds:.0f}s: {len(attempts)} checks (gaps {gaps} s); ", end="")
    print(f"{len(retries)} retries and {rewrites} status writes in the last {window:.0f}s")
    assert 2 <= len(attempts) <= 7, "the registry is asked again while it is down, not hammered"
    # 0.5 s doubling up to 5 s: about 5 retries in 14 s (28 at a fixed 0.5 s).
    assert 2 <= len(retries) <= 8, "retries must back off"
    assert rewrites <= 2

    # It comes back, slow: 300 ms per chunk each way.
    registry_proxy.latency = 0.3
    registry_proxy.up()
    back = time.monotonic()
    module = await eventually(lambda: ready_module(admin_rest, namespace, "built"), timeout=60)
    print(f"converged {time.monotonic() - back:.1f}s after the registry returned (slow)")
    assert kernel_status(module)[A]["build"] == "Built"
    pods = await pods_on(admin_rest, namespace)
    assert pods["g1-a"] in (image.replace("${KERNEL_XYZ}", "5.14.0"), "r.example/other:1")
    assert len(pods) == 1 or set(pods.values()) >= {"r.example/other:1"}
