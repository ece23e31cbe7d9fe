"""The actors' metrics port (`actors.ports.ActorMetrics`) on the process's Prometheus metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ooto.metrics import Metrics


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
