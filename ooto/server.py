"""The operator's HTTP endpoints: `/healthz`, `/readyz` and `/metrics` on one aiohttp app.

- `/healthz` (liveness): the process is alive (`HealthSource.problems()` is empty: see
  `ooto.health`; the body lists the problems otherwise) and the event loop is responsive. A
  background task sleeps a fixed interval and measures how late it wakes up (loop lag). While
  the loop is blocked the probe itself hangs and the kubelet's timeout fails it. A loop blocked
  over and over can still let probes slip through between blocks, so a lag over the limit is
  reported (503) for a window of ten intervals after it was measured: one stall costs one
  failed probe, a loop that keeps stalling fails probes until the kubelet restarts it.
- `/readyz` (readiness): the informers have synced. A standby (not leader) that has synced is
  ready too: readiness gates Service traffic to `/metrics`, not leadership.
- `/metrics`: the `Metrics` registry in the Prometheus text format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ooto.kube.tasks import SupervisedTask
from ooto.metrics import Metrics

LAG_INTERVAL_SECONDS = 1.0
MAX_LOOP_LAG_SECONDS = 5.0


class HealthSource(Protocol):
    """What the composition root knows about the operator's health."""

    def is_alive(self) -> bool:
        """False when a part that must run (actor system, informer tasks) has died."""
        ...

    def problems(self) -> list[str]:
        """Why it is not alive, one line each (empty when alive)."""
        ...

    def is_synced(self) -> bool:
        """True once every informer has listed its resource at least once."""
        ...


@dataclass
class LoopLag:
    """Last loop-lag measurement, updated by `_measure_loop_lag`."""

    interval: float
    max_lag: float
    last_lag: float = 0.0
    last_tick: float | None = None  # loop.time() of the last measurement
    last_stall: float | None = None  # loop.time() when a lag over max_lag was last measured

    def record(self, lag: float, now: float) -> None:
        self.last_lag, self.last_tick = lag, now
        if lag > self.max_lag:
            self.last_stall = now

    def healthy(self, now: float) -> bool:
        if self.last_tick is None:
            return True  # just started; the first tick is at most one interval away
        if now - self.last_tick > self.interval + self.max_lag:
            return False  # the monitor task stopped ticking
        return self.last_stall is None or now - self.last_stall > 10 * self.interval


HEALTH_KEY = web.AppKey("health", HealthSource)
METRICS_KEY = web.AppKey("metrics", Metrics)
LAG_KEY = web.AppKey("loop_lag", LoopLag)


async def _measure_loop_lag(lag: LoopLag, metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(lag.interval)
        now = loop.time()
        lag.record(max(0.0, now - before - lag.interval), now)
        metrics.set_loop_lag(lag.last_lag)


async def _lag_monitor(app: web.Application) -> AsyncIterator[None]:
    lag, metrics = app[LAG_KEY], app[METRICS_KEY]
    task = SupervisedTask("loop-lag", lambda: _measure_loop_lag(lag, metrics), observer=metrics)
    task.start()
    yield
    await task.stop()


async def healthz(request: web.Request) -> web.Response:
    lag = request.app[LAG_KEY]
    problems = request.app[HEALTH_KEY].problems()
    alive = not problems
    responsive = lag.healthy(asyncio.get_running_loop().time())
    body = {
        "alive": alive,
        "problems": problems,
        "loop_responsive": responsive,
        "loop_lag_seconds": lag.last_lag,
    }
    return web.json_response(body, status=200 if alive and responsive else 503)


async def readyz(request: web.Request) -> web.Response:
    synced = request.app[HEALTH_KEY].is_synced()
    return web.json_response({"synced": synced}, status=200 if synced else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(
    health: HealthSource,
    metrics: Metrics,
    *,
    lag_interval: float = LAG_INTERVAL_SECONDS,
    max_loop_lag: float = MAX_LOOP_LAG_SECONDS,
) -> web.Application:
    """The app; the loop-lag monitor runs while the app runs (aiohttp cleanup context)."""
    app = web.Application()
    app[HEALTH_KEY] = health
    app[METRICS_KEY] = metrics
    app[LAG_KEY] = LoopLag(interval=lag_interval, max_lag=max_loop_lag)
    app.cleanup_ctx.append(_lag_monitor)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port (0 = a free port, see `bound_port`); stop with `stop_server`."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner listens on (useful after `start_server(..., port=0)`)."""
    address = runner.addresses[0]
    return int(address[1])


async def stop_server(runner: web.AppRunner) -> None:
    await runner.cleanup()
