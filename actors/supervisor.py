"""ModuleSupervisor: one per Module. Decides which kernel actors exist and writes the Module status.

Desired kernels = kernels of the nodes matching the Module's selector (from the NodeTracker).
Each kernel gets a KernelActor when a mapping matches it; kernels that leave are retired (their
DaemonSets deleted). Kernel reports are folded into one status write, debounced, and skipped when
the status would not change.

This module holds the actor's state and messages; its steps are mixins, one concern each:
actors/supervisor_kernels.py (plan, spawn, retire kernel actors), actors/supervisor_sweep.py
(orphan DaemonSets) and actors/supervisor_status.py (fold and write the status).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from actors.base import Backoff, OotoActor
from actors.messages import (
    BuildObserved,
    ChildDied,
    DaemonSetObserved,
    IoDone,
    KernelNodes,
    KernelReport,
    KernelRetired,
    ModuleChanged,
    ModuleGone,
    ModuleUnreadable,
    NodesChanged,
    RolloutReport,
    Subscribe,
    Unsubscribe,
)
from actors.ports import ActorContext
from actors.rollout import RolloutActor
from actors.routes import RouteKey
from actors.supervisor_kernels import KernelSet
from actors.supervisor_status import StatusWriter, module_version
from actors.supervisor_sweep import OrphanSweep
from ooto.domain.api import KernelPhase, Module
from ooto.domain.kernels import KernelPlan, kernel_label_value, label_safe
from ooto.domain.modprobe import NO_UNLOAD_HOOK, NO_UNLOAD_HOOK_MESSAGE, unload_hook_missing
from ooto.domain.reasons import Reason
from ooto.domain.render import render_failure
from ooto.domain.status import KernelProblem, WarningCondition
from ooto.domain.validation import validate_module
from ooto.logs import log_fields

log = logging.getLogger(__name__)

_NO_UNLOAD_HOOK = WarningCondition(NO_UNLOAD_HOOK, NO_UNLOAD_HOOK, NO_UNLOAD_HOOK_MESSAGE)


class ModuleSupervisor(OotoActor, KernelSet, OrphanSweep, StatusWriter):
    def __init__(
        self, context: ActorContext, tracker: Any, module: Module, parent: Any = None
    ) -> None:
        super().__init__(context.bridge)
        self._context, self._tracker, self._parent = context, tracker, parent
        self._io, self._settings, self._metrics = context.io, context.settings, context.metrics
        self._routes = context.routes
        self._module = module
        self._spec_errors: list[str] = []
        self._warnings: list[WarningCondition] = []
        self._kernels: KernelNodes | None = None
        self._unavailable: frozenset[str] = frozenset()  # selected nodes NotReady/unschedulable
        self._refused_nodes = 0  # selected nodes whose kernel string is refused
        self._actors: dict[str, Any] = {}
        self._by_label: dict[str, str] = {}
        self._retiring: dict[str, Any] = {}
        self._reports: dict[str, KernelReport] = {}
        self._problems: dict[str, KernelProblem] = {}
        self._stored_status: Mapping[str, Any] | None = module.status
        self._stored_version = module_version(module)
        self._writing = False
        self._last_write = float("-inf")
        self._status_due = float("inf")  # when the pending "status" timer fires
        self._swept_for: frozenset[str] | None = None  # kernel labels at the last orphan sweep
        self._sweeping: set[str] = set()  # uids of orphans whose delete is in flight
        self._rollout: Any = None  # the RolloutActor (ready labels, node-by-node upgrades)
        self._rollout_report: RolloutReport | None = None
        # kernel -> (plan, Module generation, load digest): recomputed when either changes
        self._digests: dict[str, tuple[KernelPlan, int, str]] = {}
        self._backoff = self._new_backoff()
        self._respawns: dict[str, Backoff] = {}  # kernel -> backoff of replacing its dead actor

    def _new_backoff(self) -> Backoff:
        return Backoff(self._settings.backoff_initial_seconds, self._settings.backoff_max_seconds)

    def describe(self) -> str:
        return f"ModuleSupervisor({self._module.key})"

    def on_started(self) -> None:
        self._subscribe()  # first: even a Module we cannot validate gets its kernels and status
        self._validate()
        self._routes.add_module(self._module_route(), self.actor_ref)
        if self._context.rollouts is not None:
            self._rollout = RolloutActor.start(self._context, self.actor_ref, self._module)

    def on_crash(self, error: Exception) -> None:
        self._schedule_status()

    def on_death(self, error: BaseException | None) -> None:
        if self._parent is not None:
            self.send(self._parent, ChildDied(self._module.key, self.actor_ref, repr(error)))

    def on_stop(self) -> None:
        self._routes.remove_module(self._module_route(), self.actor_ref)
        self.send(self._tracker, Unsubscribe(self._module.key))
        self._metrics.module_gone(self._module.metadata.namespace, self._module.metadata.name)
        for kernel, ref in [*self._actors.items(), *self._retiring.items()]:
            self._routes.remove(self._route_key(kernel), ref)
            ref.stop(block=False)
        if self._rollout is not None:
            self._rollout.stop(block=False)

    # --- the Module ---------------------------------------------------------------------------

    def on_ModuleChanged(self, message: ModuleChanged) -> None:
        old, new = self._module, message.module
        if module_version(new) >= self._stored_version:
            self._stored_status, self._stored_version = new.status, module_version(new)
        self._module = new
        if (
            new.metadata.generation == old.metadata.generation
            and new.metadata.uid == old.metadata.uid
        ):
            self._schedule_status()  # status-only change: someone else may have overwritten ours
            return
        self._validate()
        if new.spec.selector != old.spec.selector:
            self._subscribe()
        self._reconcile()

    def on_ModuleUnreadable(self, message: ModuleUnreadable) -> None:
        self._spec_errors = [message.error]
        self._event("Warning", Reason.INVALID_SPEC, message.error)
        self._schedule_status()

    def _validate(self) -> None:
        try:
            errors = [str(e) for e in validate_module(self._module, self._settings.module_policy)]
        except RecursionError as error:
            errors = [render_failure(self._module, error)]
        if errors and errors != self._spec_errors:
            log.warning(
                "%s: invalid spec: %s",
                self.describe(),
                errors[0],
                extra=self._extra(Reason.INVALID_SPEC),
            )
            self._event("Warning", Reason.INVALID_SPEC, "; ".join(errors))
        self._spec_errors = errors
        warnings = [_NO_UNLOAD_HOOK] if unload_hook_missing(self._module) else []
        for warning in warnings:
            if warning not in self._warnings:
                log.warning(
                    "%s: %s", self.describe(), warning.message, extra=self._extra(warning.reason)
                )
                self._event("Warning", warning.reason, warning.message)
        self._warnings = warnings

    def _subscribe(self) -> None:
        self.send(
            self._tracker,
            Subscribe(self._module.key, dict(self._module.spec.selector), self.actor_ref),
        )

    # --- kernels ------------------------------------------------------------------------------

    def on_NodesChanged(self, message: NodesChanged) -> None:
        previous, self._kernels = self._kernels, message.kernels
        was_unavailable, self._unavailable = self._unavailable, message.unavailable
        self._refused_nodes = len(message.invalid_kernel)
        if previous is None:
            self._reconcile()
            return
        # Only kernels whose nodes changed need a new plan: one node rebooting into a new kernel
        # costs O(1) messages, not one per kernel of the Module.
        self._reconcile(
            {
                k
                for k, nodes in message.kernels.items()
                if previous.get(k) != nodes
                or nodes & was_unavailable != nodes & message.unavailable
            }
        )

    def _reconcile(self, changed: set[str] | None = None) -> None:
        """Retire kernels that left; plan `changed` kernels (None: all, e.g. the spec changed)."""
        if self._kernels is None or self._spec_errors:
            # An invalid spec changes nothing in the cluster: what runs keeps running.
            self._schedule_status()
            return
        for kernel in [k for k in self._actors if k not in self._kernels]:
            self._retire(kernel)
        for kernel in [k for k in self._problems if k not in self._kernels]:
            del self._problems[kernel]
        self._plan_kernels(self._kernels.keys() if changed is None else changed)
        self._sweep_if_changed()
        self._tell_rollout()
        self._schedule_status()

    def on_ModuleGone(self, message: ModuleGone) -> None:
        if self._rollout is not None:
            self.send(self._rollout, message)

    def on_RolloutReport(self, report: RolloutReport) -> None:
        self._rollout_report = report
        self._schedule_status()

    def on_KernelRetired(self, message: KernelRetired) -> None:
        ref = self._retiring.pop(message.kernel, None)
        if ref is not None:
            self._routes.remove(self._route_key(message.kernel), ref)
        self._forget_label(message.kernel)
        self._replan(message.kernel)  # the kernel may have come back while it retired

    def on_ChildDied(self, message: ChildDied) -> None:
        if self._rollout is not None and message.ref == self._rollout:
            # A new RolloutActor resumes from the Nodes' upgrade records: nothing is repeated.
            log.error("%s: rollout actor died: %s; restarting it", self.describe(), message.error)
            self._rollout = RolloutActor.start(self._context, self.actor_ref, self._module)
            self._tell_rollout()
            return
        kernel = message.key
        if self._retiring.get(kernel) == message.ref:
            # It died retiring: what it left is swept as an orphan (no live actor has its label).
            self.on_KernelRetired(KernelRetired(kernel))
            return
        if self._actors.get(kernel) != message.ref:
            return
        # Its DaemonSets stay (its label stays live, so no sweep): the new actor adopts them.
        del self._actors[kernel]
        self._reports.pop(kernel, None)
        self._routes.remove(self._route_key(kernel), message.ref)
        delay = self._respawns.setdefault(kernel, self._new_backoff()).next_delay()
        self._problem(
            kernel,
            Reason.ACTOR_FAILED,
            f"internal error ({message.error[:200]}); its actor restarts in {delay:.0f}s",
        )
        self.set_timer(f"respawn:{kernel}", delay)
        self._schedule_status()

    def on_KernelReport(self, report: KernelReport) -> None:
        if report.status.phase is KernelPhase.READY:
            self._respawns.pop(report.kernel, None)
        if report.kernel in self._actors:
            self._reports[report.kernel] = report
            self._schedule_status()

    def on_DaemonSetObserved(self, _: DaemonSetObserved) -> None:
        """A DaemonSet of this Module that no kernel actor's route claims (see DaemonSetRoutes)."""
        if not self.timer_pending("sweep"):
            self.set_timer("sweep", self._settings.status_debounce_seconds)

    # --- routing from informers ---------------------------------------------------------------

    def _module_route(self) -> tuple[str, str]:
        meta = self._module.metadata
        return (meta.namespace, label_safe(meta.name))

    def _route_key(self, kernel: str) -> RouteKey:
        """The labels this kernel's DaemonSets carry (as `render` writes them)."""
        meta = self._module.metadata
        return (meta.namespace, label_safe(meta.name), kernel_label_value(kernel))

    def on_BuildObserved(self, event: BuildObserved) -> None:
        for actor in self._actors.values():
            self.send(actor, event)

    # --- timers and replies ------------------------------------------------------------------

    def on_timer(self, name: str) -> None:
        if name == "status":
            self._write_status()
        elif name == "sweep":
            self._sweep()
        elif name.startswith("respawn:"):
            kernel = name.partition(":")[2]
            self._problems.pop(kernel, None)
            self._replan(kernel)

    def on_IoDone(self, done: IoDone) -> None:
        if done.tag[0] == "orphan":
            self._orphan_deleted(done)
        else:
            self._status_written(done)

    def _event(self, kind: str, reason: str, message: str) -> None:
        self._io.record_event(self._module.object_reference(), kind, reason, message)  # type: ignore[arg-type]

    def _extra(self, reason: str, kernel: str = "") -> dict[str, object]:
        return log_fields(module=self._module.key, kernel=kernel, reason=reason)
