"""The orphan sweep of a ModuleSupervisor (a mixin: the actor's state, these methods): delete the
Module's DaemonSets whose kernel has no live actor, whenever the set of live kernel actors changes
(and at first sight), and when a DaemonSet no kernel actor claims is seen. Kernels that leave are
retired by their own actor (actors/kernel_daemonsets.py); the sweep takes what nobody retires: a
kernel gone while the operator was down, an actor that died retiring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.base import Backoff
from actors.messages import IoDone, KernelNodes
from actors.ports import OperatorIO
from actors.retire import orphans
from ooto.domain.api import Module
from ooto.domain.kernels import kernel_label_value
from ooto.domain.reasons import Reason
from ooto.domain.status import KernelProblem

log = logging.getLogger("actors.supervisor")

KEEPS_WHAT_RUNS = frozenset({Reason.INVALID_SPEC, Reason.ACTOR_FAILED, Reason.SIGN_COLLISION})
"""Kernel problems under which the kernel's DaemonSets are kept (NoMatchingMapping retires)."""


def kept_labels(
    by_label: Mapping[str, str],
    problems: Mapping[str, KernelProblem],
    kernels: KernelNodes | None,
) -> frozenset[str]:
    """Kernel labels whose DaemonSets stay: live actors' (`by_label`), and kernels still on
    selected nodes whose mapping is invalid for them (an invalid spec changes nothing that runs,
    also after a restart, when no actor exists for them)."""
    held = {
        kernel_label_value(kernel)
        for kernel, problem in problems.items()
        if problem.reason in KEEPS_WHAT_RUNS and kernel in (kernels or {})
    }
    return frozenset(by_label) | held


class OrphanSweep:
    """Mixin for ModuleSupervisor; every attribute used here is the actor's."""

    _module: Module
    _io: OperatorIO
    _backoff: Backoff
    _kernels: KernelNodes | None
    _by_label: dict[str, str]
    _problems: dict[str, KernelProblem]
    _spec_errors: list[str]
    _swept_for: frozenset[str] | None  # kernel labels at the last sweep
    _sweeping: set[str]  # uids of orphans whose delete is in flight

    def _sweep_if_changed(self) -> None:
        """Sweep orphans whenever the set of live kernel actors changes (and at first sight)."""
        if self._spec_errors:
            return  # an invalid spec changes nothing that runs; planning the fixed spec sweeps
        live = kept_labels(self._by_label, self._problems, self._kernels)
        if live != self._swept_for:
            self._swept_for = live
            self._sweep()

    def _sweep(self) -> None:
        """Delete our DaemonSets whose kernel has no live actor (one that retires counts as
        live: it deletes its own). Not before the first NodesChanged: until then no kernel is
        known and everything would look orphaned. Not while the spec is invalid: nothing is
        planned then (no actor after a restart, none of its kernels a problem), so everything
        would look orphaned too, and an invalid spec changes nothing that runs."""
        if self._kernels is None or self._spec_errors:
            return
        meta = self._module.metadata
        kept = kept_labels(self._by_label, self._problems, self._kernels)
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

    def _orphan_deleted(self, done: IoDone) -> None:
        self._sweeping.discard(done.tag[1])
        if not done.ok:
            log.warning(
                "%s: could not delete orphan %s: %s", self.describe(), done.tag[2], done.error
            )
            self.set_timer("sweep", self._backoff.next_delay())

    if TYPE_CHECKING:  # provided by ModuleSupervisor and OotoActor
        actor_ref: Any
        bridge: Any

        def describe(self) -> str: ...
        def _extra(self, reason: str, kernel: str = "") -> dict[str, object]: ...
        def set_timer(self, name: str, delay: float) -> None: ...
