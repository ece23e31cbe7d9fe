"""The status writes of a ModuleSupervisor (a mixin: the actor's state, these methods): kernel
reports, problems and the rollout's report are folded (`ooto.domain.status.fold_status`) into one
status, written as a merge patch only when it differs from the stored one, debounced, and held
back a while when it only reports progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from actors.base import Backoff
from actors.messages import IoDone, KernelNodes, KernelReport, RolloutReport
from actors.ports import ActorMetrics, ActorSettings, OperatorIO
from ooto.domain.api import Module
from ooto.domain.status import (
    KernelProblem,
    ModuleFacts,
    RolloutFacts,
    WarningCondition,
    condition_flags,
    fold_status,
    kernel_count,
    status_flags,
)
from ooto.domain.stored import parse_resource_version, resource_version

log = logging.getLogger("actors.supervisor")

PROGRESS_SECONDS_PER_KERNEL = 0.01
PROGRESS_INTERVAL_MAX = 5.0
"""A status that only reports progress (counts, messages) waits 10 ms per kernel since the last
write, at most 5 s: a 500-kernel status is ~100 KB that each write sends, stores and echoes back
to every watcher. A condition that flips is news and goes out after the debounce alone."""


class StatusWriter:
    """Mixin for ModuleSupervisor; every attribute used here is the actor's."""

    _module: Module
    _io: OperatorIO
    _settings: ActorSettings
    _metrics: ActorMetrics
    _backoff: Backoff
    _kernels: KernelNodes | None
    _actors: dict[str, Any]
    _reports: dict[str, KernelReport]
    _problems: dict[str, KernelProblem]
    _spec_errors: list[str]
    _warnings: list[WarningCondition]
    _refused_nodes: int
    _rollout: Any
    _rollout_report: RolloutReport | None
    _stored_status: Mapping[str, Any] | None
    _stored_version: int
    _writing: bool
    _last_write: float
    _status_due: float  # when the pending "status" timer fires

    def _schedule_status(self) -> None:
        delay = self._settings.status_debounce_seconds
        if not self.timer_pending("status") or self._status_due > time.monotonic() + delay:
            self._status_timer(delay)

    def _status_timer(self, delay: float) -> None:
        self._status_due = time.monotonic() + delay
        self.set_timer("status", delay)

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
        facts = self._facts()
        held = self._held(facts)
        if held > 0:
            self._status_timer(held)
            return
        status = fold_status(facts, self._stored_status, _now())
        meta = self._module.metadata
        self._metrics.module_status(meta.namespace, meta.name, status)
        if status == self._stored_status:
            return
        self._writing = True
        self._last_write = time.monotonic()
        self.bridge.run(
            self.actor_ref,
            ("status",),
            self._io.patch_module_status(meta.namespace, meta.name, status),
        )

    def _held(self, facts: ModuleFacts) -> float:
        """Seconds left of a progress hold when `facts` flip no condition, else 0 (write now).
        Judged before the fold (`condition_flags` are the folded status's flags), so the fold of
        every kernel's entry is skipped while held: a 500-kernel Module rolling out reports every
        debounce, and folding each time only to hold the result back took CPU from the rollout."""
        if self._stored_status is None:
            return 0.0
        wait = self._last_write + _hold(kernel_count(facts)) - time.monotonic()
        if wait <= 0 or condition_flags(facts) != status_flags(self._stored_status):
            return 0.0
        return wait

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

    def _status_written(self, done: IoDone) -> None:
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
        self._stored_version = resource_version(stored)

    if TYPE_CHECKING:  # provided by ModuleSupervisor and OotoActor
        actor_ref: Any
        bridge: Any

        def describe(self) -> str: ...
        def _extra(self, reason: str, kernel: str = "") -> dict[str, object]: ...
        def set_timer(self, name: str, delay: float) -> None: ...
        def timer_pending(self, name: str) -> bool: ...


def _hold(kernels: int) -> float:
    return min(PROGRESS_INTERVAL_MAX, PROGRESS_SECONDS_PER_KERNEL * kernels)


def module_version(module: Module) -> int:
    """The Module's resourceVersion as a number (0 when it is not one)."""
    return parse_resource_version(module.metadata.resource_version)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
