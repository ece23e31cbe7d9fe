"""A replica that is not alive says so and lets go: the real `Health` over a real operator, served
by the real aiohttp app, reports a dead actor system (503 with the reason), and `ooto run`'s
leadership loop then stops, releases the Lease at once (a standby need not wait for it to expire)
and ends with exit code 1 so the Deployment starts a fresh process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import aiohttp
import pykka
import pytest

from actors.root import OperatorRoot
from ooto.app import run
from ooto.health import Health
from ooto.metrics import Metrics
from ooto.server import bound_port, make_app, start_server, stop_server
from ooto.settings import Settings
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import eventually


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_a_dead_actor_system_fails_healthz_with_the_reason(
    namespace: str, start_operator: OperatorFactory
) -> None:
    running = await start_operator(watch_namespace=namespace)
    health = Health()
    health.operator = running.operator
    runner = await start_server(make_app(health, Metrics()), "127.0.0.1", 0)
    try:
        port = bound_port(runner)
        status, body = await healthz(port)
        assert status == 200 and body["problems"] == []

        root = running.operator._root
        assert root is not None
        await asyncio.to_thread(root.stop)  # as if its thread had died

        status, body = await healthz(port)
        assert status == 503 and body["problems"] == ["actor OperatorRoot is dead"]
    finally:
        await stop_server(runner)


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """`run` tunes the process's collector (it owns the process); give the test process back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def lease_holder(rest: KubeRest, namespace: str, name: str) -> str | None:
    try:
        lease = await rest.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    except RestError:
        return None
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def test_a_leader_that_is_not_alive_releases_the_lease_and_exits_1(
    cluster: LocalCluster, admin_rest: KubeRest, namespace: str, crd: str, restore_gc: None
) -> None:
    settings = Settings.load(
        {
            "watch_namespace": namespace,
            "operator_namespace": namespace,
            "lease_name": "liveness",
            "metrics_host": "127.0.0.1",
            "metrics_port": 0,
        }
    )
    stop = asyncio.Event()
    replica = asyncio.create_task(run(settings, str(cluster.admin_kubeconfig), stop))
    try:
        holder = await eventually(lambda: lease_holder(admin_rest, namespace, "liveness"))
        roots = await eventually(
            lambda: asyncio.sleep(0, pykka.ActorRegistry.get_by_class(OperatorRoot))
        )
        await asyncio.to_thread(roots[0].stop)  # the actor system dies under the leader

        code = await asyncio.wait_for(replica, 20)
        assert code == 1
        assert await lease_holder(admin_rest, namespace, "liveness") == ""  # released, not left
        assert holder  # it did hold it
    finally:
        stop.set()
        if not replica.done():
            await asyncio.wait_for(replica, 20)
