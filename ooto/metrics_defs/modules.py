"""Module and upgrade metrics: Modules and kernel actors by state, each Module's pods and
readiness, and the node-by-node upgrades (docs/upgrades.md)."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from ooto.domain.reasons import Reason

MODULE_STATES = ("Ready", "NotReady", "Invalid")
UPGRADE_STATES = ("upToDate", "upgrading", "failed", "pending")
_UPGRADE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_STEP_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


def module_state(status: Mapping[str, Any]) -> str:
    """`ooto_modules` state of a Module status: Invalid (InvalidSpec), Ready, else NotReady."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            if condition.get("reason") == Reason.INVALID_SPEC:
                return "Invalid"
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "NotReady"


class ModuleMetrics:
    """Mixin of `ooto.metrics.Metrics`: state gauges are set from actor threads, under a lock."""

    def _define_state_metrics(self, r: CollectorRegistry) -> None:
        self.modules = Gauge("ooto_modules", "Modules by state.", ["state"], registry=r)
        self.kernel_actors = Gauge(
            "ooto_kernel_actors",
            "Kernel actors (one per Module and kernel) by state.",
            ["state"],
            registry=r,
        )
        self.daemonset_pods_desired = Gauge(
            "ooto_module_daemonset_pods_desired",
            "Module-loader pods wanted over all of a Module's DaemonSets.",
            ["namespace", "module"],
            registry=r,
        )
        self.daemonset_pods_ready = Gauge(
            "ooto_module_daemonset_pods_ready",
            "Module-loader pods ready over all of a Module's DaemonSets.",
            ["namespace", "module"],
            registry=r,
        )
        self.module_ready = Gauge(
            "ooto_module_ready",
            "1 while the Module's Ready condition is True, else 0.",
            ["namespace", "module"],
            registry=r,
        )
        self._define_upgrade_metrics(r)
        self._states_seen: dict[str, set[str]] = {
            "modules": set(MODULE_STATES),
            "kernel_actors": set(),
        }
        self._states_lock = threading.RLock()  # held across count and set
        self._module_states: dict[tuple[str, str], str] = {}
        self._module_counts: Tally[str] = Tally()

    def _define_upgrade_metrics(self, r: CollectorRegistry) -> None:
        self.upgrade_nodes = Gauge(
            "ooto_upgrade_nodes",
            "A Module's nodes by upgrade state (upToDate, upgrading, failed, pending).",
            ["namespace", "module", "state"],
            registry=r,
        )
        self.upgrade_duration = Histogram(
            "ooto_upgrade_node_duration_seconds",
            "One node's upgrade, from its ready label taken off to the label back.",
            buckets=_UPGRADE_BUCKETS,
            registry=r,
        )
        self.upgrade_step_latency = Histogram(
            "ooto_upgrade_step_latency_seconds",
            "The rollout's own reaction time: label_back (new loader pod Ready seen to the label"
            " back write starting), next_start (a slot freed, i.e. the label back answered, to"
            " the next node's label off write starting).",
            ["step"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        for step in ("label_back", "next_start"):
            self.upgrade_step_latency.labels(step)  # both series from the start, at 0

    def set_modules_by_state(self, counts: Mapping[str, int]) -> None:
        """Set the Module count of each state; states seen before and now absent go to 0."""
        self._set_by_state(self.modules, "modules", counts)

    def set_kernel_actors_by_state(self, counts: Mapping[str, int]) -> None:
        """Set the kernel-actor count of each state; states seen before and now absent go to 0."""
        self._set_by_state(self.kernel_actors, "kernel_actors", counts)

    def _set_by_state(self, gauge: Gauge, key: str, counts: Mapping[str, int]) -> None:
        with self._states_lock:  # called from actor threads
            seen = self._states_seen[key]
            seen.update(counts)
            for state in seen:
                gauge.labels(state=state).set(counts.get(state, 0))

    def set_daemonset_pods(self, namespace: str, module: str, desired: int, ready: int) -> None:
        self.daemonset_pods_desired.labels(namespace=namespace, module=module).set(desired)
        self.daemonset_pods_ready.labels(namespace=namespace, module=module).set(ready)

    def observe_module(self, namespace: str, module: str, status: Mapping[str, Any]) -> None:
        """A Module's folded status: its state (counted in `ooto_modules`) and its pods."""
        self.set_daemonset_pods(
            namespace, module, int(status.get("nodesDesired", 0)), int(status.get("nodesReady", 0))
        )
        state = module_state(status)
        self.module_ready.labels(namespace=namespace, module=module).set(state == "Ready")
        self._module_state_is((namespace, module), state)

    def set_upgrade_nodes(self, namespace: str, module: str, counts: Mapping[str, int]) -> None:
        for state in UPGRADE_STATES:
            self.upgrade_nodes.labels(namespace, module, state).set(counts.get(state, 0))

    def node_upgraded(self, seconds: float) -> None:
        self.upgrade_duration.observe(seconds)

    def upgrade_step(self, step: str, seconds: float) -> None:
        self.upgrade_step_latency.labels(step).observe(seconds)

    def forget_module(self, namespace: str, module: str) -> None:
        """Drop a deleted Module's series (and its state) so they do not linger as stale values."""
        for gauge in (self.daemonset_pods_desired, self.daemonset_pods_ready, self.module_ready):
            with contextlib.suppress(KeyError):  # never seen, or already forgotten
                gauge.remove(namespace, module)
        for state in UPGRADE_STATES:
            with contextlib.suppress(KeyError):
                self.upgrade_nodes.remove(namespace, module, state)
        self._module_state_is((namespace, module), None)

    def _module_state_is(self, key: tuple[str, str], state: str | None) -> None:
        """Count a Module's state change (None: gone); O(1), whatever the number of Modules."""
        with self._states_lock:
            old = self._module_states.pop(key, None)
            if state is not None:
                self._module_states[key] = state
            if old == state:
                return
            if old is not None:
                self._module_counts[old] -= 1
            if state is not None:
                self._module_counts[state] += 1
            self.set_modules_by_state(self._module_counts)
