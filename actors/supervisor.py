"""ModuleSupervisor: one per Module. Decides which kernel actors exist and writes the Module status.

Desired kernels = kernels of the nodes matching the Module's selector (from the NodeTracker).
Each kernel gets a KernelActor when a mapping matches it; kernels that leave are retired (their
DaemonSets deleted). Kernel reports are folded into one status write, debounced, and skipped when
the status would not change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from actors.base import Backoff, OotoActor
from actors.kernel import KernelActor
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
    PlanKernel,
    Retire,
    RolloutReport,
    RolloutTargets,
    Subscribe,
    Unsubscribe,
)
from actors.ports import ActorContext
from actors.retire import orphans
from actors.rollout import RolloutActor
from actors.routes import RouteKey
from ooto.domain.api import KernelPhase, Module
from ooto.domain.digest import load_digest
from ooto.domain.kernels import (
    KernelPlan,
    SpecError,
    daemonset_name,
    kernel_label_value,
    label_safe,
    plan_kernel,
)
from ooto.domain.modprobe import NO_UNLOAD_HOOK, NO_UNLOAD_HOOK_MESSAGE, unload_hook_missing
from ooto.domain.reasons import Reason
from ooto.domain.render import MODULE_LOADER, RenderOptions, render_failure
from ooto.domain.sign_collisions import Collision, waiting_kernels
from ooto.domain.status import (
    KernelProblem,
    ModuleFacts,
    RolloutFacts,
    WarningCondition,
    fold_status,
)
from ooto.domain.validation import validate_module
from ooto.logs import log_fields

log = logging.getLogger(__name__)

KEEPS_WHAT_RUNS = frozenset({Reason.INVALID_SPEC, Reason.ACTOR_FAILED, Reason.SIGN_COLLISION})
"""Kernel problems under which the kernel's DaemonSets are kept (NoMatchingMapping retires)."""

PROGRESS_SECONDS_PER_KERNEL = 0.01
PROGRESS_INTERVAL_MAX = 5.0
"""A status that only reports progress (counts, messages) waits 10 ms per kernel since the last
write, at most 5 s: a 500-kernel status is ~100 KB that each write sends, stores and echoes back
to every watcher. A condition that flips is news and goes out after the debounce alone."""


_NO_UNLOAD_HOOK = WarningCondition(NO_UNLOAD_HOOK, NO_UNLOAD_HOOK, NO_UNLOAD_HOOK_MESSAGE)


class ModuleSupervisor(OotoActor):
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
        self._stored_version = _version(module)
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
        if _version(new) >= self._stored_version:
            self._stored_status, self._stored_version = new.status, _version(new)
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

    def _tell_rollout(self) -> None:
        """The desired load digest and nodes of every planned kernel, to the RolloutActor."""
        if self._rollout is None or self._kernels is None:
            return
        name = self._module.metadata.name
        kernels = {
            plan.kernel_label: (
                digest,
                self._kernels.get(kernel, frozenset()),
                daemonset_name(name, MODULE_LOADER, kernel),
            )
            for kernel, (plan, _, digest) in self._digests.items()
            if kernel in self._actors
        }
        self.send(self._rollout, RolloutTargets(self._module, kernels))

    def _digest(self, plan: KernelPlan) -> None:
        generation = self._module.metadata.generation
        known = self._digests.get(plan.kernel)
        if known is None or known[0] != plan or known[1] != generation:
            options = RenderOptions(firmware_host_dir=self._settings.firmware_host_dir)
            digest = load_digest(self._module, plan, options)  # as the kernel actor renders it
            self._digests[plan.kernel] = (plan, generation, digest)

    def on_ModuleGone(self, message: ModuleGone) -> None:
        if self._rollout is not None:
            self.send(self._rollout, message)

    def on_RolloutReport(self, report: RolloutReport) -> None:
        self._rollout_report = report
        self._schedule_status()

    def _plan_kernels(self, kernels: Iterable[str]) -> None:
        """Plan `kernels`, and those waiting on a sign collision, in one pass: whether two kernels
        would sign one image with two identities is judged over every kernel's plan at once
        (ooto/domain/sign_collisions.py)."""
        current = self._kernels or {}
        waiting = {k for k, p in self._problems.items() if p.reason == Reason.SIGN_COLLISION}
        todo = sorted((set(kernels) | waiting) & current.keys())
        fresh = {kernel: _try_plan(self._module, kernel) for kernel in todo}
        running = {k: plan for k, (plan, _, _) in self._digests.items() if k in self._actors}
        collisions = waiting_kernels(fresh, running)
        for kernel in todo:
            self._plan(kernel, current[kernel], fresh[kernel], collisions.get(kernel))

    def _plan(
        self,
        kernel: str,
        nodes: frozenset[str],
        plan: KernelPlan | SpecError | None,
        collision: Collision | None,
    ) -> None:
        if isinstance(plan, SpecError):
            self._problem(kernel, Reason.INVALID_SPEC, str(plan))
            return
        if plan is not None and collision is not None:
            # Like an invalid spec: a kernel actor that exists keeps its last plan.
            self._problem(kernel, Reason.SIGN_COLLISION, collision.message(plan))
            return
        if plan is None:
            self._problem(
                kernel, Reason.NO_MATCHING_MAPPING, "no kernelMappings entry matches this kernel"
            )
            if kernel in self._actors:
                self._retire(kernel)
            return
        if self.timer_pending(f"respawn:{kernel}"):
            return  # its actor died: planned again (and ActorFailed cleared) when the timer fires
        self._problems.pop(kernel, None)
        self._digest(plan)
        actor = self._actors.get(kernel)
        if kernel in self._retiring:
            return  # planned again once the old actor has retired
        if actor is None:
            self._spawn(plan, nodes)
        else:
            self.send(actor, PlanKernel(self._module, plan, nodes, nodes & self._unavailable))

    def _problem(self, kernel: str, reason: str, message: str) -> None:
        problem = KernelProblem(kernel, reason, message, len((self._kernels or {}).get(kernel, ())))
        old = self._problems.get(kernel)
        self._problems[kernel] = problem
        if old is None or (old.reason, old.message) != (reason, message):
            log.warning(
                "%s: kernel %s: %s",
                self.describe(),
                kernel,
                message,
                extra=self._extra(reason, kernel),
            )
            self._event("Warning", reason, f"kernel {kernel}: {message}")

    def _spawn(self, plan: KernelPlan, nodes: frozenset[str]) -> None:
        log.info(
            "%s: kernel %s -> %s",
            self.describe(),
            plan.kernel,
            plan.image,
            extra=self._extra("kernel appeared", plan.kernel),
        )
        ref = KernelActor.start(
            self._context, self.actor_ref, self._module, plan, nodes, nodes & self._unavailable
        )
        self._actors[plan.kernel] = ref
        self._by_label[plan.kernel_label] = plan.kernel
        self._routes.add(self._route_key(plan.kernel), ref)

    def _retire(self, kernel: str) -> None:
        ref = self._actors.pop(kernel)
        self._reports.pop(kernel, None)
        self._retiring[kernel] = ref
        log.info(
            "%s: kernel %s left", self.describe(), kernel, extra=self._extra("kernel left", kernel)
        )
        self.send(ref, Retire())

    def on_KernelRetired(self, message: KernelRetired) -> None:
        ref = self._retiring.pop(message.kernel, None)
        if ref is not None:
            self._routes.remove(self._route_key(message.kernel), ref)
        self._forget_label(message.kernel)
        self._replan(message.kernel)  # the kernel may have come back while it retired

    def _forget_label(self, kernel: str) -> None:
        self._by_label = {
            label: k for label, k in self._by_label.items() if k != kernel or k in self._actors
        }

    def _replan(self, kernel: str) -> None:
        """Plan `kernel` again after its actor retired or died (it may have left meanwhile)."""
        nodes = (self._kernels or {}).get(kernel)
        if nodes is None:
            self._forget_label(kernel)
        elif not self._spec_errors:
            self._plan_kernels({kernel})
        self._sweep_if_changed()
        self._schedule_status()

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

    def _sweep_if_changed(self) -> None:
        """Sweep orphans whenever the set of live kernel actors changes (and at first sight)."""
        live = self._kept_labels()
        if live != self._swept_for:
            self._swept_for = live
            self._sweep()

    def _kept_labels(self) -> frozenset[str]:
        """Kernel labels whose DaemonSets stay: live actors', and kernels still on selected nodes
        whose mapping is invalid for them (an invalid spec changes nothing that runs, also after
        a restart, when no actor exists for them)."""
        held = {
            kernel_label_value(kernel)
            for kernel, problem in self._problems.items()
            if problem.reason in KEEPS_WHAT_RUNS and kernel in (self._kernels or {})
        }
        return frozenset(self._by_label) | held

    def _sweep(self) -> None:
        """Delete our DaemonSets whose kernel has no live actor (one that retires counts as
        live: it deletes its own). Not before the first NodesChanged: until then no kernel is
        known and everything would look orphaned."""
        if self._kernels is None:
            return
        meta = self._module.metadata
        kept = self._kept_labels()
        for doomed in orphans(self._io.daemonsets.list(), meta.namespace, meta.uid, kept):
            if doomed.uid in self._sweeping:
                continue
            self._sweeping.add(doomed.uid)
            log.info(
                "%s deletes orphan %s", self.describe(), doomed.name, extra=self._extra("orphan")
            )
            self.bridge.run(
                self.actor_ref,
                ("orphan", doomed.uid, doomed.name),
                self._io.delete_object("daemonset", doomed.namespace, doomed.name, doomed.uid),
            )

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

    # --- status -------------------------------------------------------------------------------

    def _schedule_status(self) -> None:
        delay = self._settings.status_debounce_seconds
        if not self.timer_pending("status") or self._status_due > time.monotonic() + delay:
            self._status_timer(delay)

    def _status_timer(self, delay: float) -> None:
        self._status_due = time.monotonic() + delay
        self.set_timer("status", delay)

    def on_timer(self, name: str) -> None:
        if name == "status":
            self._write_status()
        elif name == "sweep":
            self._sweep()
        elif name.startswith("respawn:"):
            kernel = name.partition(":")[2]
            self._problems.pop(kernel, None)
            self._replan(kernel)

    def _write_status(self) -> None:
        if self._writing:
            self._schedule_status()
            return
        if self._kernels is None and not self._spec_errors:
            return  # nothing known yet: never overwrite a good status with an empty one
        if any(k not in self._reports for k in self._actors):
            return  # a kernel actor has not reported yet; its report reschedules us
        if self._rollout_behind():
            return  # its report (upgrades started for this generation) reschedules us
        status = fold_status(self._facts(), self._stored_status, _now())
        meta = self._module.metadata
        self._metrics.module_status(meta.namespace, meta.name, status)
        if status == self._stored_status:
            return
        wait = self._progress_wait(status)
        if wait > 0:
            self._status_timer(wait)
            return
        self._writing = True
        self._last_write = time.monotonic()
        self.bridge.run(
            self.actor_ref,
            ("status",),
            self._io.patch_module_status(meta.namespace, meta.name, status),
        )

    def _progress_wait(self, status: Mapping[str, Any]) -> float:
        """Seconds to hold back a status that changes no condition's status (0: write now)."""
        if _transitions(status) != _transitions(self._stored_status):
            return 0.0
        per_kernel = PROGRESS_SECONDS_PER_KERNEL * len(status.get("kernels") or ())
        interval = min(PROGRESS_INTERVAL_MAX, per_kernel)
        return self._last_write + interval - time.monotonic()

    def _facts(self) -> ModuleFacts:
        return ModuleFacts(
            generation=self._module.metadata.generation,
            spec_errors=self._spec_errors,
            kernels=[r.status for r in self._reports.values()],
            kernel_reasons={r.kernel: r.reason for r in self._reports.values()},
            problems=sorted(self._problems.values(), key=lambda p: p.kernel),
            warnings=self._warnings,
            nodes_invalid_kernel=self._refused_nodes,
            rollout=self._rollout_facts(),
        )

    def _rollout_behind(self) -> bool:
        """The RolloutActor has not judged this generation yet: a status written now would call
        it Ready before its upgrade begins."""
        if self._rollout is None or self._spec_errors or self._kernels is None:
            return False
        report = self._rollout_report
        return report is None or report.generation < self._module.metadata.generation

    def _rollout_facts(self) -> RolloutFacts | None:
        report = self._rollout_report
        if report is None:
            return None
        return RolloutFacts(
            report.ready_label, report.upgrade, report.failed, report.waiting, report.generation
        )

    def on_IoDone(self, done: IoDone) -> None:
        if done.tag[0] == "orphan":
            self._sweeping.discard(done.tag[1])
            if not done.ok:
                log.warning(
                    "%s: could not delete orphan %s: %s", self.describe(), done.tag[2], done.error
                )
                self.set_timer("sweep", self._backoff.next_delay())
            return
        self._writing = False
        if not done.ok:
            log.warning(
                "%s: status write failed: %s",
                self.describe(),
                done.error,
                extra=self._extra("StatusWriteFailed"),
            )
            self._status_timer(self._backoff.next_delay())
            return
        self._backoff.reset()
        stored: Mapping[str, Any] = done.result
        self._stored_status = stored.get("status")
        self._stored_version = _version_of(stored)

    def _event(self, kind: str, reason: str, message: str) -> None:
        self._io.record_event(self._module.object_reference(), kind, reason, message)  # type: ignore[arg-type]

    def _extra(self, reason: str, kernel: str = "") -> dict[str, object]:
        return log_fields(module=self._module.key, kernel=kernel, reason=reason)


def _transitions(status: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What makes a status news: the generation it speaks for and each condition's status."""
    status = status or {}
    conditions = [c for c in status.get("conditions") or () if isinstance(c, dict)]
    flags = tuple(sorted((c.get("type"), c.get("status")) for c in conditions))
    return status.get("observedGeneration"), flags


def _version(module: Module) -> int:
    return _parse_version(module.metadata.resource_version)


def _version_of(obj: Mapping[str, Any]) -> int:
    return _parse_version((obj.get("metadata") or {}).get("resourceVersion", ""))


def _parse_version(value: str) -> int:
    # resourceVersions are opaque, but etcd-backed servers hand out increasing integers; comparing
    # them keeps an informer event older than our own write from triggering a rewrite.
    try:
        return int(value)
    except ValueError:
        return 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _try_plan(module: Module, kernel: str) -> KernelPlan | SpecError | None:
    try:
        return plan_kernel(module, kernel)
    except SpecError as error:
        return error
