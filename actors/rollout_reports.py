"""What a RolloutActor reports (a mixin: the actor's state, these methods): its RolloutReport to
the ModuleSupervisor (status.upgrade, failed and waiting nodes) once per burst, from a Tally kept
node by node; the upgrade metrics; a log line per decision; Events for a failed node.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from actors.messages import RolloutReport
from actors.ports import ActorMetrics, Obj, OperatorIO
from actors.rollout_clock import StepClock
from actors.rollout_views import Clearings
from ooto.domain.api import Module
from ooto.domain.reasons import Reason
from ooto.domain.upgrade.progress import upgrade_status
from ooto.domain.upgrade.state import NodeUpgrade
from ooto.domain.upgrade.tally import Tally
from ooto.logs import log_fields

log = logging.getLogger("actors.rollout")


class RolloutReporting:
    """Mixin for RolloutActor; every attribute used here is the actor's."""

    _io: OperatorIO
    _metrics: ActorMetrics
    _module: Module
    _supervisor: Any
    _label: str
    _module_digest: str
    _targets: dict[str, tuple[str, str]] | None
    _upgrades: dict[str, NodeUpgrade]
    _tally: Tally
    _changed: set[str]
    _clearings: Clearings
    _started: dict[str, float]
    _clock: StepClock
    _last_report: RolloutReport | None

    def _report_failed(self, node: str, cause: str) -> None:
        message = f"node {node}: {cause}; the rollout stopped (a new Module generation resumes it)"
        self._say(logging.WARNING, Reason.UPGRADE_FAILED, node, message)
        self._io.record_event(
            self._module.object_reference(), "Warning", Reason.UPGRADE_FAILED, message
        )
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        self._io.record_event(
            involved, "Warning", Reason.UPGRADE_FAILED, f"module {self._module.key}: {cause}"
        )
        self._started.pop(node, None)
        self._clock.forget(node)

    def _report_done(self, node: str) -> None:
        self._clock.done(node)
        started = self._started.pop(node, None)
        if started is not None:
            self._metrics.node_upgraded(time.monotonic() - started)
        self._say(logging.INFO, "Upgraded", node, f"upgraded {node}")

    def _report(self) -> None:
        if self._targets is None:
            return
        counts = self._tallied().counts()
        meta = self._module.metadata
        self._metrics.upgrade_nodes(meta.namespace, meta.name, counts)
        failed = self._failed_now()
        report = RolloutReport(
            ready_label=self._label,
            upgrade=upgrade_status(self._module_digest, counts),
            failed=tuple(sorted((n, u.cause) for n, u in failed.items())),
            waiting=tuple(sorted(self._clearings.blocked.items())),
            generation=self._module.metadata.generation,
        )
        if report != self._last_report:
            self._last_report = report
            self.send(self._supervisor, report)

    def _tallied(self) -> Tally:
        """The tally, with the nodes whose facts changed since it was last asked recomputed."""
        targets = self._targets or {}
        for node in self._changed:
            self._tally.update(
                node, targets.get(node), self._upgrades.get(node), self._pod(node), self._node(node)
            )
        self._changed.clear()
        return self._tally

    def _say(self, level: int, reason: str, node: str, text: str) -> None:
        """One log line per decision, with module, node and reason fields."""
        fields = log_fields(module=self._module.key, node=node, reason=reason)
        log.log(level, "%s: %s", self.describe(), text, extra=fields)

    if TYPE_CHECKING:  # provided by RolloutActor and OotoActor

        def describe(self) -> str: ...
        def send(self, ref: Any, message: object) -> None: ...
        def _failed_now(self) -> dict[str, NodeUpgrade]: ...
        def _node(self, name: str) -> Obj | None: ...
        def _pod(self, node: str) -> Obj | None: ...
