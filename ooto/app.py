"""Composition root: settings, the loop, server, webhook, leader election, the `ooto run` command.

One leadership term (informers, actors and their wiring) is an `Operator` (`ooto/operator.py`);
this module runs terms: it acts only while it leads and is alive, and exits 1 otherwise, so the
Deployment restarts it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from typing import Any

import pykka

from ooto.builds.model import BuildBackend
from ooto.builds.select import select_backend
from ooto.health import Health
from ooto.kube.client import KubeApi
from ooto.kube.config import KubeconfigError, make_api_client, resolve_kubeconfig
from ooto.kube.leader import LeaderElector
from ooto.logs import configure_logging
from ooto.metrics import Metrics
from ooto.operator import Operator
from ooto.preflight import ClusterUnreachableError, StartupError, check_cluster
from ooto.server import make_app, start_server, stop_server
from ooto.settings import Settings, SettingsError
from ooto.webhook import AdmissionServer, WebhookConfig

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic collector runs after 50,000 net allocations instead of 700. Converging allocates
mostly acyclic JSON that reference counting frees; at 700, 500 kernels ran ~450 collections
(0.17-0.43 of ~2 CPU s, young collections walking dicts about to die or be cached, older ones
walking every cached object); at 50,000, 5 (docs/benchmarks.md)."""

HEALTH_CHECK_SECONDS = 1.0
"""How often a replica asks itself whether it is alive (`ooto.health`); one that is not gives its
Lease up and exits within about this long."""


async def run(settings: Settings, kubeconfig: str | None, stop: asyncio.Event) -> int:
    """Run until `stop` is set (0), or leadership is lost or this replica is not alive (1: the
    Deployment restarts us). Raises `KubeconfigError` or `StartupError` before anything starts."""
    api = KubeApi(await make_api_client(kubeconfig), concurrency=settings.api_concurrency)
    try:
        await check_cluster(api, settings)
    except BaseException:
        await api.close()
        raise
    # The process is ours: tune its collector here (not in Operator.start, which tests run in
    # their own process). Imports and settings live as long as the process: never walk them again.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    metrics = Metrics()
    api.observer = metrics
    health = Health()
    runner = await start_server(
        make_app(health, metrics), settings.metrics_host, settings.metrics_port
    )
    webhook = start_webhook(settings, metrics)
    if webhook is not None:
        health.tasks.append(webhook.task)
    try:
        backend = await select_backend(api, settings)
        return await _lead_and_run(settings, api, metrics, backend, health, stop)
    finally:
        await asyncio.to_thread(pykka.ActorRegistry.stop_all, block=True, timeout=10)
        if webhook is not None:
            await webhook.stop()
        await stop_server(runner)
        await api.close()


def start_webhook(settings: Settings, metrics: Metrics) -> AdmissionServer | None:
    """The admission webhook, served by every replica (leader or not) unless its port is 0."""
    if settings.webhook_port == 0:
        return None
    config = WebhookConfig(
        policy=settings.module_policy(),
        cert_dir=settings.webhook_cert_dir,
        host=settings.metrics_host,
        port=settings.webhook_port,
    )
    server = AdmissionServer(config, observer=metrics)
    server.start()
    return server


async def _lead_and_run(
    settings: Settings,
    api: KubeApi,
    metrics: Metrics,
    backend: BuildBackend,
    health: Health,
    stop: asyncio.Event,
) -> int:
    operator = Operator(settings, api, metrics, backend)
    if not settings.leader_election:
        metrics.set_leader(True)  # the only replica acts: `max(ooto_leader) == 0` means nobody does
        return await _act(operator, health, stop, asyncio.Event())
    lost = asyncio.Event()
    leading = asyncio.Event()
    elector = LeaderElector(
        api,
        settings.operator_namespace,
        settings.lease_name,
        _identity(),
        lease_duration=settings.lease_duration_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry_period=settings.retry_period_seconds,
        on_started_leading=leading.set,
        on_stopped_leading=lost.set,
        observer=metrics,
    )
    health.standby = True
    health.tasks.append(elector.task)
    elector.start()
    try:
        waited = await _first(stop.wait(), leading.wait(), _until_unhealthy(health))
        if waited != 1:
            return 0 if waited == 0 else 1
        metrics.set_leader(True)
        return await _act(operator, health, stop, lost)
    finally:
        metrics.set_leader(False)
        await elector.stop()  # releases the Lease if we hold it


async def _act(operator: Operator, health: Health, stop: asyncio.Event, lost: asyncio.Event) -> int:
    """Start `operator`; act until `stop` (0), or `lost` or this replica is not alive (1)."""
    health.operator = operator
    outcome = await _first(
        stop.wait(), lost.wait(), _until_unhealthy(health), _start_and_run(operator)
    )
    await operator.stop()
    if outcome == 1:
        log.error("lost the leader lease: stopped writing; exiting", extra={"reason": "LeaseLost"})
    return 0 if outcome == 0 else 1


async def _start_and_run(operator: Operator) -> None:
    """Start `operator` and wait until cancelled; return (the caller exits 1) if it cannot start."""
    try:
        await operator.start()
    except Exception:
        log.exception("the operator could not start; exiting", extra={"reason": "StartFailed"})
        return
    await asyncio.get_running_loop().create_future()


async def _until_unhealthy(health: Health, interval: float = HEALTH_CHECK_SECONDS) -> None:
    """Return once this replica is not alive, saying why."""
    # A poll, like the kubelet's probe: an actor's death is not an event anyone can await.
    while not (problems := health.problems()):  # noqa: ASYNC110
        await asyncio.sleep(interval)
    log.error(
        "not alive: %s; stopping, giving the Lease up and exiting",
        "; ".join(problems),
        extra={"reason": "Unhealthy"},
    )


async def _first(*awaitables: Any) -> int:
    """Index of the first awaitable to finish; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return next(i for i, task in enumerate(tasks) if task in done)


def _identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def run_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_args(args)
    except SettingsError as error:
        print(error)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        kubeconfig = resolve_kubeconfig(args.kubeconfig)
        return asyncio.run(_main(settings, kubeconfig))
    except (KubeconfigError, StartupError) as error:
        # One line with the cause and the fix: a traceback would bury it.
        print(f"ooto run: {error}", file=sys.stderr)
        return 1 if isinstance(error, ClusterUnreachableError) else 2


async def _main(settings: Settings, kubeconfig: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(settings, kubeconfig, stop)


async def run_demo_operator(kubeconfig: str, stop: asyncio.Event, metrics_port: int = 0) -> None:
    """The operator as `ooto demo` runs it: no leader election, metrics on localhost only (on
    `metrics_port`, 0: any free port)."""
    settings = Settings.load(
        {
            "leader_election": False,
            "metrics_host": "127.0.0.1",
            "metrics_port": metrics_port,
            "status_debounce_seconds": 0.5,
            "webhook_port": 0,
        }
    )
    await run(settings, kubeconfig, stop)
