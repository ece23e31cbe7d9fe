"""The kernel set of a ModuleSupervisor (a mixin: the actor's state, these methods): plan each
kernel of the selected nodes (`plan_kernel`, pure), start a KernelActor for a kernel a mapping
matches, tell it new plans, retire the actors of kernels that left, and report kernels without an
actor (no mapping, a mapping invalid for them, an actor that died) as problems. The desired load
digest of each planned kernel goes to the RolloutActor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from actors.kernel import KernelActor
from actors.messages import KernelNodes, KernelReport, PlanKernel, Retire, RolloutTargets
from actors.ports import ActorContext, ActorSettings
from actors.routes import DaemonSetRoutes, RouteKey
from ooto.domain.api import Module
from ooto.domain.digest import load_digest
from ooto.domain.kernels import KernelPlan, SpecError, daemonset_name, plan_kernel
from ooto.domain.reasons import Reason
from ooto.domain.render import MODULE_LOADER, RenderOptions
from ooto.domain.sign_collisions import Collision, waiting_kernels
from ooto.domain.status import KernelProblem

log = logging.getLogger("actors.supervisor")


class KernelSet:
    """Mixin for ModuleSupervisor; every attribute used here is the actor's."""

    _context: ActorContext
    _settings: ActorSettings
    _routes: DaemonSetRoutes
    _module: Module
    _kernels: KernelNodes | None
    _unavailable: frozenset[str]
    _spec_errors: list[str]
    _actors: dict[str, Any]  # kernel -> its KernelActor
    _by_label: dict[str, str]  # kernel label -> kernel, of live and retiring actors
    _retiring: dict[str, Any]  # kernel -> its retiring KernelActor
    _reports: dict[str, KernelReport]
    _problems: dict[str, KernelProblem]
    _rollout: Any
    _digests: dict[str, tuple[KernelPlan, int, str]]

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

    if TYPE_CHECKING:  # provided by ModuleSupervisor, OrphanSweep, StatusWriter and OotoActor
        actor_ref: Any

        def describe(self) -> str: ...
        def _extra(self, reason: str, kernel: str = "") -> dict[str, object]: ...
        def _event(self, kind: str, reason: str, message: str) -> None: ...
        def _route_key(self, kernel: str) -> RouteKey: ...
        def _schedule_status(self) -> None: ...
        def _sweep_if_changed(self) -> None: ...
        def send(self, to: Any, message: object) -> None: ...
        def timer_pending(self, name: str) -> bool: ...


def _try_plan(module: Module, kernel: str) -> KernelPlan | SpecError | None:
    try:
        return plan_kernel(module, kernel)
    except SpecError as error:
        return error
