"""Liveness tells the truth: the real `Health` over real supervised tasks, served by the real
aiohttp app. A task that keeps failing makes `/healthz` answer 503 with the reason; one failure
that is followed by a steady run does not."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ooto.health import Health
from ooto.kube.backoff import Backoff
from ooto.kube.tasks import SupervisedTask
from ooto.metrics import Metrics
from ooto.server import bound_port, make_app, start_server, stop_server


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, str]]:
    health = Health()
    runner = await start_server(make_app(health, Metrics()), "127.0.0.1", 0)
    try:
        yield health, f"http://127.0.0.1:{bound_port(runner)}/healthz"
    finally:
        await stop_server(runner)


async def healthz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_a_task_that_keeps_failing_makes_healthz_fail_with_the_reason(
    served: tuple[Health, str],
) -> None:
    health, url = served
    failed = asyncio.Event()

    async def broken() -> None:
        failed.set()
        raise ConnectionResetError("the thing it needs is gone")

    task = SupervisedTask("broken", broken, backoff=Backoff(0.01, 0.01), failure_limit=3)
    health.tasks.append(task)
    assert (await healthz(url))[0] == 200
    task.start()
    try:
        while task.failures_in_a_row < 3:
            failed.clear()
            await asyncio.wait_for(failed.wait(), 5)
        status, body = await healthz(url)
        assert status == 503 and body["alive"] is False
        # It keeps failing (10 ms apart) while the probe is served: at least the limit, maybe more.
        problems = body["problems"]
        assert isinstance(problems, list) and len(problems) == 1
        found = re.fullmatch(
            r"task broken failed (\d+) times in a row: "
            r"ConnectionResetError: the thing it needs is gone",
            problems[0],
        )
        assert found is not None and int(found.group(1)) >= 3, problems
    finally:
        await task.stop()
    assert (await healthz(url))[0] == 200  # stopped on purpose: not a problem


async def test_one_failure_then_a_steady_run_stays_healthy(served: tuple[Health, str]) -> None:
    health, url = served
    steady = asyncio.Event()
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("transient")
        steady.set()
        await asyncio.Event().wait()

    task = SupervisedTask("once", once, backoff=Backoff(0.01, 0.01), failure_limit=2)
    health.tasks.append(task)
    task.start()
    try:
        await asyncio.wait_for(steady.wait(), 5)
        status, body = await healthz(url)
        assert status == 200 and body["problems"] == []
    finally:
        await task.stop()
