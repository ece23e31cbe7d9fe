"""Composition root: settings, the asyncio loop, informers, the actor system, server, leadership.

Start order matters for "cluster state is the only truth": the caches of our DaemonSets and build
objects are synced (together with Nodes, which feed only the NodeTracker) before any Module is
delivered, so a supervisor's first view of its kernels is complete and it never deletes or
recreates what already exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from actors.base import Backoff
from actors.bridge import Bridge
from actors.messages import (
    BuildObserved,
    ModuleObserved,
    NodeObserved,
    PreflightObserved,
    SweepLeftovers,
)
from actors.node_cleaner import NodeCleaner
from actors.node_tracker import NodeTracker
from actors.ports import ActorContext, ActorSettings
from actors.root import OperatorRoot
from actors.routes import DaemonSetRoutes, RolloutRoutes
from ooto.builds.model import BUILD_SELECTOR, BuildBackend
from ooto.builds.select import select_backend
from ooto.domain.render import (
    LABEL_KERNEL,
    LABEL_MANAGED_BY,
    LABEL_MODULE,
    LABEL_ROLE,
    MANAGED_BY,
    MODULE_LOADER,
)
from ooto.domain.stored import trim_pod
from ooto.domain.upgrade.leftovers import carries_module_keys
from ooto.health import Health
from ooto.kube.client import KubeApi
from ooto.kube.config import KubeconfigError, make_api_client, resolve_kubeconfig
from ooto.kube.events import EventRecorder
from ooto.kube.informer import EventGate, Informer
from ooto.kube.leader import LeaderElector
from ooto.kube.resources import DAEMONSETS, EVENTS, MODULES, NODES, PODS, PREFLIGHTVALIDATIONS
from ooto.logs import configure_logging
from ooto.metrics import Metrics
from ooto.operator_io import KubeOperatorIO
from ooto.preflight import ClusterUnreachableError, StartupError, check_cluster
from ooto.registry import RegistryClient
from ooto.reports import InformerReports
from ooto.server import make_app, start_server, stop_server
from ooto.settings import Settings, SettingsError
from ooto.webhook import AdmissionServer, WebhookConfig

log = logging.getLogger(__name__)

ACTOR_STACK_BYTES = 512 * 1024
"""Actor threads run short handlers; 512 KiB instead of 8 MiB keeps 5000 actors cheap. Not less:
at 256 KiB a Module nested 500 levels deep in a free-form field crashes the process (SIGSEGV in
pydantic's validation) instead of failing validation."""

FAILED_CREATE_EVENTS = "involvedObject.kind=DaemonSet,reason=FailedCreate"

GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic collector runs after 50,000 net allocations instead of 700. Converging allocates
mostly acyclic JSON that reference counting frees; at 700, 500 kernels ran ~450 collections
(0.17-0.43 of ~2 CPU s, young collections walking dicts about to die or be cached, older ones
walking every cached object); at 50,000, 5 (docs/benchmarks.md)."""

GIL_SWITCH_SECONDS = 0.001
"""A thread waiting for the GIL gets it within 1 ms instead of CPython's default 5 ms. Spawning a
kernel actor is a GIL hand-off to the new thread and back; with the loop busy decoding responses,
each one cost ~3.5 ms at 5 ms (500 kernels: 1.75 s of spawning, longer than the writes)."""


class PhaseCounter:
    """`ActorMetrics`: kernel actors by phase, Modules by state, builds (from actor threads)."""

    def __init__(self, metrics: Metrics, backend: str) -> None:
        self._metrics = metrics
        self._backend = backend
        metrics.declare_build_backend(backend)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def kernel_phase_changed(self, old: str | None, new: str | None) -> None:
        with self._lock:
            if old is not None:
                self._counts[old] -= 1
            if new is not None:
                self._counts[new] += 1
            counts = {phase: n for phase, n in self._counts.items() if n > 0}
            self._metrics.set_kernel_actors_by_state(counts)  # under the lock: no stale overwrite

    def build_started(self) -> None:
        self._metrics.build_started(self._backend)

    def build_finished(self, succeeded: bool, seconds: float) -> None:
        self._metrics.build_finished(self._backend, succeeded=succeeded, seconds=seconds)

    def sign_finished(self, succeeded: bool) -> None:
        self._metrics.sign_finished(succeeded=succeeded)

    def module_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._metrics.observe_module(namespace, name, status)

    def module_gone(self, namespace: str, name: str) -> None:
        self._metrics.forget_module(namespace, name)

    def upgrade_nodes(self, namespace: str, name: str, counts: Mapping[str, int]) -> None:
        self._metrics.set_upgrade_nodes(namespace, name, counts)

    def node_upgraded(self, seconds: float) -> None:
        self._metrics.node_upgraded(seconds)

    def upgrade_step(self, step: str, seconds: float) -> None:
        self._metrics.upgrade_step(step, seconds)


class Operator:
    """The actor system with its informers, for one leadership term (start, then stop once)."""

    def __init__(
        self, settings: Settings, api: KubeApi, metrics: Metrics, backend: BuildBackend
    ) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics
        self._backend = backend
        self._informers: list[Informer] = []
        self._bridge: Bridge | None = None
        self._root: pykka.ActorRef[Any] | None = None
        self._tracker: pykka.ActorRef[Any] | None = None
        self._cleaner: pykka.ActorRef[Any] | None = None
        self._recorder = EventRecorder(api, observer=metrics)
        self._reports = InformerReports(metrics, self._recorder)
        self._registry = RegistryClient()
        self._stopping = False
        self.synced = asyncio.Event()

    def _informer(self, resource: Any, on_event: Any, **selectors: Any) -> Informer:
        informer = Informer(
            self.api,
            resource,
            namespace=self.settings.watch_namespace,
            on_event=on_event,
            observer=self._reports,
            **selectors,
        )
        self._informers.append(informer)
        self.metrics.watching(resource.plural)
        return informer

    async def start(self) -> None:
        threading.stack_size(ACTOR_STACK_BYTES)
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        bridge = self._bridge = Bridge(
            asyncio.get_running_loop(), latency=self.metrics, failures=self.metrics
        )
        ours = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        root_tell = self._tell_root
        routes = DaemonSetRoutes(bridge, LABEL_MODULE, LABEL_KERNEL)
        rollouts = RolloutRoutes(bridge, LABEL_MODULE)

        def on_daemonset(event: Any) -> None:
            routes.deliver(event.obj)
            rollouts.deliver_daemonset(event.obj)  # desired load digests: loader templates

        daemonsets = self._informer(DAEMONSETS, on_daemonset, label_selector=ours)
        builds = self._informer(
            self._backend.resource,
            lambda e: root_tell(BuildObserved(e.type, e.obj)),
            label_selector=BUILD_SELECTOR,
        )
        # Modules list at the same time as the caches above (before the tracker's burst of label
        # patches queues on the shared limiter), but reach the root only once the caches their
        # actors read are synced.
        gate = EventGate(lambda e: root_tell(ModuleObserved(e.type, e.obj)))
        modules = self._informer(MODULES, self._module_events(gate))

        def on_loader_pod(event: Any) -> None:
            # Ready labels and upgrades follow loader pods (RolloutActor); a kernel actor hears
            # of images its nodes cannot pull (a registry that lost a built image), and of why
            # its pods cannot run (its status says so: ImagePullFailed, LoaderCrashing).
            rollouts.deliver_pod(event.type, event.obj)
            routes.deliver_pod(event.obj, deleted=event.type == "DELETED")

        loader_pods = self._informer(
            PODS,
            on_loader_pod,
            label_selector=f"{LABEL_ROLE}={MODULE_LOADER},{ours}",
            trim=trim_pod,
        )

        def on_node(event: Any) -> None:  # informers deliver only after start: tracker exists
            if self._tracker is not None:
                bridge.tell(self._tracker, NodeObserved(event.type, event.obj))
            rollouts.deliver_node(event.type, event.obj)
            if carries_module_keys(event.obj):
                self._tell_cleaner(NodeObserved(event.type, event.obj))

        nodes = Informer(self.api, NODES, on_event=on_node, observer=self._reports)
        self._informers.append(nodes)
        self.metrics.watching(NODES.plural)
        io = KubeOperatorIO(
            self.api,
            daemonsets,
            builds,
            self._recorder,
            self._registry,
            self._backend,
            modules,
            nodes,
            loader_pods,
            signer_image=self.settings.signer_image,
            sign_secret_ttl=self.settings.sign_secrets_recheck_seconds * 0.9,
        )
        settings = ActorSettings(
            status_debounce_seconds=self.settings.status_debounce_seconds,
            backoff_initial_seconds=self.settings.backoff_initial_seconds,
            backoff_max_seconds=self.settings.backoff_max_seconds,
            sign_recheck_seconds=self.settings.sign_secrets_recheck_seconds,
            firmware_host_dir=self.settings.firmware_host_dir,
            module_policy=self.settings.module_policy(),
        )
        backoff = Backoff(self.settings.backoff_initial_seconds, self.settings.backoff_max_seconds)
        self._tracker = NodeTracker.start(bridge, io, backoff)
        self._cleaner = self._start_cleaner(bridge, io)
        counter = PhaseCounter(self.metrics, type(self._backend).__name__)
        context = ActorContext(bridge, io, settings, counter, routes, rollouts)
        self._root = OperatorRoot.start(context, self._tracker)
        self._recorder.start()
        # Nodes feed the tracker and the RolloutActors: they list with our objects' caches.

        # The DaemonSet controller's FailedCreate Events (quota, PodSecurity, SCC) become the
        # kernel's reason; only those are listed and watched, and they are never written.
        def failed_create(event: Any) -> None:
            if event.type != "DELETED":
                routes.deliver_failed_create(event.obj, daemonsets)

        self._informer(EVENTS, failed_create, field_selector=FAILED_CREATE_EVENTS).start()
        await self._sync(daemonsets, builds, nodes, loader_pods, modules)
        gate.open()
        self._tell_cleaner(SweepLeftovers())  # what Modules deleted meanwhile left
        self._watch_preflights()
        self.synced.set()
        log.info("operator started: caches synced", extra={"reason": "started"})

    def _start_cleaner(self, bridge: Bridge, io: KubeOperatorIO) -> pykka.ActorRef[Any]:
        """What deleted Modules left on Nodes goes, retried until done (NodeCleaner)."""
        settings = self.settings
        backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        return NodeCleaner.start(bridge, io, backoff, settings.watch_namespace)

    def _watch_preflights(self) -> None:
        """PreflightValidations read the Module cache, so they start once it is synced. Not part
        of readiness: an operator upgraded before its new CRD was applied still runs Modules (the
        informer logs the missing resource and retries with backoff)."""
        preflights = Informer(
            self.api,
            PREFLIGHTVALIDATIONS,
            on_event=lambda e: self._tell_root(PreflightObserved(e.type, e.obj)),
            observer=self._reports,
        )
        self._informers.append(preflights)
        self.metrics.watching(PREFLIGHTVALIDATIONS.plural)
        preflights.start()

    def _module_events(self, gate: EventGate) -> Callable[[Any], None]:
        def on_module(event: Any) -> None:
            gate(event)
            if event.type == "DELETED" and self.synced.is_set():
                self._tell_cleaner(SweepLeftovers())  # its keys, records, cordons

        return on_module

    def _tell_cleaner(self, message: object) -> None:
        if self._cleaner is not None and self._bridge is not None:
            self._bridge.tell(self._cleaner, message)

    def _tell_root(self, message: object) -> None:
        if self._root is not None and self._bridge is not None:
            self._bridge.tell(self._root, message)

    async def _sync(self, *informers: Informer) -> None:
        for informer in informers:
            informer.start()
        await asyncio.gather(*(informer.synced.wait() for informer in informers))

    def is_synced(self) -> bool:
        return self.synced.is_set()

    def problems(self) -> list[str]:
        """Why this term's parts are not alive (see `ooto.health`); empty when they are."""
        tasks = [informer.task for informer in self._informers] + [self._recorder.task]
        found = [problem for task in tasks if (problem := task.problem())]
        if self._stopping:
            return found
        actors = (
            ("OperatorRoot", self._root),
            ("NodeTracker", self._tracker),
            ("NodeCleaner", self._cleaner),
        )
        for name, ref in actors:
            if ref is not None and not ref.is_alive():
                found.append(f"actor {name} is dead")
        return found

    async def stop(self) -> None:
        """Stop writing at once, then stop actors and watches."""
        self._stopping = True
        if self._bridge is not None:
            # Cancels and awaits what actors started (evictions, Node writes, status writes):
            # after a lost Lease nothing of this term writes again.
            await self._bridge.drain()
        for informer in reversed(self._informers):
            await informer.stop()
        for ref in (self._root, self._tracker, self._cleaner):
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    await asyncio.to_thread(ref.stop, block=True, timeout=10)
        await self._recorder.stop()
        await self._registry.close()


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
