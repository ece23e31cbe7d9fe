"""One leadership term of the operator: the informers, the actor system and how they are wired.

Start order matters for "cluster state is the only truth": the caches of our DaemonSets and build
objects are synced (together with Nodes, which feed only the NodeTracker) before any Module is
delivered, so a supervisor's first view of its kernels is complete and it never deletes or
recreates what already exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
from ooto.actor_metrics import PhaseCounter
from ooto.builds.model import BUILD_SELECTOR, BuildBackend
from ooto.domain.render import (
    LABEL_KERNEL,
    LABEL_MANAGED_BY,
    LABEL_MODULE,
    LABEL_ROLE,
    MANAGED_BY,
    MODULE_LOADER,
)
from ooto.domain.stored import trim_daemonset, trim_pod
from ooto.domain.upgrade.leftovers import carries_module_keys
from ooto.kube.client import KubeApi
from ooto.kube.events import EventRecorder
from ooto.kube.informer import EventGate, Informer
from ooto.kube.resources import DAEMONSETS, EVENTS, MODULES, NODES, PODS, PREFLIGHTVALIDATIONS
from ooto.metrics import Metrics
from ooto.operator_io import KubeOperatorIO
from ooto.registry import RegistryClient
from ooto.reports import InformerReports
from ooto.settings import Settings

log = logging.getLogger("ooto.app")  # the name its log lines have always carried

ACTOR_STACK_BYTES = 512 * 1024
"""Actor threads run short handlers; 512 KiB instead of 8 MiB keeps 5000 actors cheap. Not less:
at 256 KiB a Module nested 500 levels deep in a free-form field crashes the process (SIGSEGV in
pydantic's validation) instead of failing validation."""

FAILED_CREATE_EVENTS = "involvedObject.kind=DaemonSet,reason=FailedCreate"

GIL_SWITCH_SECONDS = 0.001
"""A thread waiting for the GIL gets it within 1 ms instead of CPython's default 5 ms. Spawning a
kernel actor is a GIL hand-off to the new thread and back; with the loop busy decoding responses,
each one cost ~3.5 ms at 5 ms (500 kernels: 1.75 s of spawning, longer than the writes)."""


@dataclass(frozen=True)
class Caches:
    """The informers whose caches the actors read; they list together, and Module events wait
    at `module_gate` until the others are synced."""

    daemonsets: Informer
    builds: Informer
    modules: Informer
    loader_pods: Informer
    nodes: Informer
    module_gate: EventGate

    def informers(self) -> tuple[Informer, ...]:
        return (self.daemonsets, self.builds, self.nodes, self.loader_pods, self.modules)


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
        routes = DaemonSetRoutes(bridge, LABEL_MODULE, LABEL_KERNEL)
        rollouts = RolloutRoutes(bridge, LABEL_MODULE)
        caches = self._watch_caches(bridge, routes, rollouts)
        self._start_actors(bridge, self._operator_io(caches), routes, rollouts)
        self._recorder.start()
        self._watch_failed_creates(routes, caches.daemonsets)
        await self._sync(*caches.informers())
        caches.module_gate.open()
        self._tell_cleaner(SweepLeftovers())  # what Modules deleted meanwhile left
        self._watch_preflights()
        self.synced.set()
        log.info("operator started: caches synced", extra={"reason": "started"})

    def _watch_caches(
        self, bridge: Bridge, routes: DaemonSetRoutes, rollouts: RolloutRoutes
    ) -> Caches:
        """The informers of what the actors read (not started yet)."""
        ours = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        root_tell = self._tell_root

        def on_daemonset(event: Any) -> None:
            routes.deliver(event.obj)
            rollouts.deliver_daemonset(event.obj)  # desired load digests: loader templates

        daemonsets = self._informer(
            DAEMONSETS, on_daemonset, label_selector=ours, trim=trim_daemonset
        )
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
        nodes = self._watch_nodes(bridge, rollouts)
        return Caches(daemonsets, builds, modules, loader_pods, nodes, gate)

    def _watch_nodes(self, bridge: Bridge, rollouts: RolloutRoutes) -> Informer:
        """Nodes feed the tracker and the RolloutActors: they list with our objects' caches."""

        def on_node(event: Any) -> None:  # informers deliver only after start: tracker exists
            if self._tracker is not None:
                bridge.tell(self._tracker, NodeObserved(event.type, event.obj))
            rollouts.deliver_node(event.type, event.obj)
            if carries_module_keys(event.obj):
                self._tell_cleaner(NodeObserved(event.type, event.obj))

        nodes = Informer(self.api, NODES, on_event=on_node, observer=self._reports)
        self._informers.append(nodes)
        self.metrics.watching(NODES.plural)
        return nodes

    def _operator_io(self, caches: Caches) -> KubeOperatorIO:
        return KubeOperatorIO(
            self.api,
            caches.daemonsets,
            caches.builds,
            self._recorder,
            self._registry,
            self._backend,
            caches.modules,
            caches.nodes,
            caches.loader_pods,
            signer_image=self.settings.signer_image,
            sign_secret_ttl=self.settings.sign_secrets_recheck_seconds * 0.9,
        )

    def _start_actors(
        self, bridge: Bridge, io: KubeOperatorIO, routes: DaemonSetRoutes, rollouts: RolloutRoutes
    ) -> None:
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

    def _watch_failed_creates(self, routes: DaemonSetRoutes, daemonsets: Informer) -> None:
        """The DaemonSet controller's FailedCreate Events (quota, PodSecurity, SCC) become the
        kernel's reason; only those are listed and watched, and they are never written."""

        def failed_create(event: Any) -> None:
            if event.type != "DELETED":
                routes.deliver_failed_create(event.obj, daemonsets)

        self._informer(EVENTS, failed_create, field_selector=FAILED_CREATE_EVENTS).start()

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
