"""What a KernelActor reports (a mixin: the actor's state, these methods): its phase, judged from
its DaemonSets' rollout and what keeps their pods from running, as one `KernelReport` to the
supervisor whenever it changes. Kept apart so actors/kernel.py stays about the actor's messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.loader_troubles import LoaderTroubles
from actors.messages import KernelReport, PodCreateFailed
from actors.ports import ActorMetrics, Obj, OperatorIO
from ooto.domain.api import BuildPhase, KernelPhase, KernelStatus
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import Reason
from ooto.domain.stored import Target, daemonset_ready


class CreateFailures:
    """The DaemonSet controller's latest FailedCreate Event per DaemonSet of ours (quota,
    PodSecurity, SCC: why its pods cannot be created)."""

    def __init__(self) -> None:
        self._latest: dict[str, PodCreateFailed] = {}  # DaemonSet -> its latest

    def observe(self, failure: PodCreateFailed) -> None:
        self._latest[failure.daemonset] = failure

    def blocking(self, objs: list[Obj | None], nodes: int) -> str:
        """The latest FailedCreate message of a DaemonSet of ours that still lacks pods on some
        of its `nodes` (available) nodes."""
        for obj in objs:
            meta, status = (obj or {}).get("metadata") or {}, (obj or {}).get("status") or {}
            failure = self._latest.get(meta.get("name", ""))
            if failure is None or failure.uid != meta.get("uid"):
                continue
            # Not desiredNumberScheduled: the controller may not count nodes it failed on.
            if status.get("currentNumberScheduled", 0) >= nodes:
                del self._latest[failure.daemonset]  # every pod exists now
                continue
            return failure.message
        return ""


class KernelReporting:
    """Mixin for KernelActor; every attribute used here is the actor's."""

    _plan: KernelPlan
    _io: OperatorIO
    _metrics: ActorMetrics
    _supervisor: Any
    _nodes: frozenset[str]
    _unavailable: frozenset[str]
    _create_failures: CreateFailures
    _troubles: LoaderTroubles
    _phase: KernelPhase | None
    _build: BuildPhase
    _last_report: KernelReport | None

    def _report_rollout(self, targets: list[Target], waiting: bool) -> None:
        """Ready when every available node runs our pods: a NotReady or cordoned node is
        counted (nodesUnavailable) but not waited for."""
        objs = [self._io.daemonsets.get(t.namespace, t.name) for t in targets]
        excused = len(self._unavailable)
        readiness = [daemonset_ready(obj, excused) for obj in objs]
        nodes_ready = min(ready for ready, _ in readiness)
        want = len(self._nodes) - excused
        blocked = self._create_failures.blocking(objs, len(self._nodes - self._unavailable))
        if not waiting and all(rolled for _, rolled in readiness) and nodes_ready >= want:
            self._set_phase(KernelPhase.READY, "", "", nodes_ready)
            self._troubles.announced = ""
        elif blocked:
            # The DaemonSet controller retries on its own; its DaemonSet events re-judge this.
            message = f"{nodes_ready}/{want} nodes ready; pods cannot be created: {blocked}"
            self._set_phase(KernelPhase.DEGRADED, Reason.POD_CREATE_FAILED, message, nodes_ready)
        elif trouble := self._troubles.verdict(self._unavailable, want):
            # Until the pods run: the kubelets retry (and we rebuild a lost image we make).
            reason, why = trouble
            message = f"{nodes_ready}/{want} nodes ready; {why}"
            self._set_phase(KernelPhase.DEGRADED, reason, message, nodes_ready)
            if self._troubles.announced != reason:  # once, until the kernel is Ready again
                self._troubles.announced = reason
                self._build_event(f"kernel {self._plan.kernel}: {why}", reason)
        else:
            message = f"{nodes_ready}/{want} nodes ready"
            if excused:
                message += f" ({excused} unavailable)"
            self._set_phase(KernelPhase.DEPLOYING, Reason.ROLLING, message, nodes_ready)

    def _set_phase(self, phase: KernelPhase, reason: str, message: str, ready: int = 0) -> None:
        if phase is not self._phase:
            self._metrics.kernel_phase_changed(self._phase, phase)
            self._phase = phase
        status = KernelStatus(
            kernel=self._plan.kernel,
            image=self._plan.image,
            phase=phase,
            build=self._build,
            nodes_desired=len(self._nodes),
            nodes_ready=min(ready, len(self._nodes)),
            nodes_unavailable=len(self._unavailable),
            reason=reason,
            message=message,
        )
        report = KernelReport(self._plan.kernel, status, reason)
        if report != self._last_report:
            self._last_report = report
            self.send(self._supervisor, report)

    if TYPE_CHECKING:  # provided by KernelBuilds and OotoActor

        def _build_event(self, message: str, reason: str) -> None: ...
        def send(self, to: Any, message: object) -> None: ...
