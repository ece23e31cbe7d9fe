"""The health/metrics server on a real port: liveness with loop lag, readiness, metrics text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ooto.metrics import Metrics
from ooto.server import bound_port, make_app, start_server, stop_server


@dataclass
class FakeHealth:
    """A HealthSource whose answers the test sets."""

    alive: bool = True
    synced: bool = False

    def is_alive(self) -> bool:
        return self.alive

    def problems(self) -> list[str]:
        return [] if self.alive else ["a part died"]

    def is_synced(self) -> bool:
        return self.synced


@dataclass
class Served:
    health: FakeHealth
    metrics: Metrics
    base: str
    session: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, response.headers["Content-Type"], await response.text()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    health, metrics = FakeHealth(), Metrics()
    app = make_app(health, metrics, lag_interval=0.05, max_loop_lag=0.2)
    runner = await start_server(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{bound_port(runner)}"
            yield Served(health, metrics, base, session)
    finally:
        await stop_server(runner)


async def test_a_live_process_with_a_responsive_loop_is_healthy(served: Served) -> None:
    status, content_type, body = await served.get("/healthz")
    assert status == 200
    assert content_type.startswith("application/json")
    assert '"alive": true' in body


async def test_a_dead_part_makes_healthz_fail(served: Served) -> None:
    served.health.alive = False
    status, _, body = await served.get("/healthz")
    assert status == 503
    assert '"alive": false' in body


async def test_a_blocked_event_loop_fails_healthz_until_it_recovers(served: Served) -> None:
    await asyncio.sleep(0.1)  # the lag monitor has ticked
    time.sleep(0.5)  # noqa: ASYNC251  -- on purpose: a handler that blocks the loop
    await asyncio.sleep(0.06)  # let the monitor measure the lag first
    status, _, body = await served.get("/healthz")
    assert status == 503, body
    assert '"loop_responsive": false' in body
    await asyncio.sleep(0.6)  # ten monitor intervals without a stall
    status, _, _ = await served.get("/healthz")
    assert status == 200


async def test_readyz_waits_for_the_informers_to_sync(served: Served) -> None:
    assert (await served.get("/readyz"))[0] == 503
    served.health.synced = True
    assert (await served.get("/readyz"))[0] == 200


async def test_a_synced_standby_is_ready_too(served: Served) -> None:
    """Readiness is about informers, not leadership: a standby serves /metrics as well."""
    served.health.synced = True
    served.metrics.set_leader(False)
    assert (await served.get("/readyz"))[0] == 200


async def test_metrics_serves_the_registry_in_prometheus_text(served: Served) -> None:
    served.metrics.observe("create", "daemonsets", 201, 0.01)
    served.metrics.set_leader(True)
    status, content_type, body = await served.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("ooto_leader", ())] == 1
    key = (
        "ooto_kube_requests_total",
        (("code", "201"), ("resource", "daemonsets"), ("verb", "create")),
    )
    assert samples[key] == 1


async def test_stop_releases_the_port() -> None:
    runner = await start_server(make_app(FakeHealth(), Metrics()), "127.0.0.1", 0)
    port = bound_port(runner)
    await stop_server(runner)
    again = await start_server(make_app(FakeHealth(), Metrics()), "127.0.0.1", port)
    await stop_server(again)


async def test_a_port_in_use_is_reported() -> None:
    runner = await start_server(make_app(FakeHealth(), Metrics()), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await start_server(make_app(FakeHealth(), Metrics()), "127.0.0.1", bound_port(runner))
    finally:
        await stop_server(runner)
