"""Prometheus metrics of the operator, in a registry of its own.

Label cardinality is bounded by design:

- No kernel string is ever a label. Kernel strings are unbounded over a cluster's life (every
  node upgrade brings a new one) and each label value is a time series Prometheus keeps for
  weeks. Per-kernel detail lives in the Module's `status.kernels[]`, in Events and in logs;
  metrics aggregate kernels by state.
- `namespace`/`module` labels are bounded by the number of Module objects (which users create
  deliberately, tens not thousands), and their series are removed when a Module goes away
  (`forget_module`).
- `ooto_module_ready` has one series per Module (1 while its Ready condition is True), so an alert
  can name the Module; its reason stays in the Module's status (a reason label would add a series
  per reason seen).
- `state`, `verb`, `resource`, `code`, `backend`, `actor_kind` and `outcome` come from small
  fixed sets in the code (HTTP status codes are a bounded set too).

`Metrics` is also the Kubernetes client's `RequestObserver`, and can read its own totals back
(`writes_total`, `requests_by_code`) so tests and benchmarks count API writes and 403s from
the same numbers Prometheus sees. The registry also carries prometheus-client's standard
`process_*` metrics (CPU seconds, resident memory, open file descriptors) for this process.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from ooto.domain.reasons import Reason

# Verbs that only read; every other verb the client reports counts as a write.
READ_VERBS = frozenset({"get", "list", "watch"})

_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BUILD_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)
_MESSAGE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)

MODULE_STATES = ("Ready", "NotReady", "Invalid")
ACTOR_KINDS = (
    "OperatorRoot",
    "NodeTracker",
    "ModuleSupervisor",
    "KernelActor",
    "RolloutActor",
    "NodeCleaner",
    "PreflightActor",
)
"""The `actor_kind` label's values: the class names of the actors (actors/)."""


def module_state(status: Mapping[str, Any]) -> str:
    """`ooto_modules` state of a Module status: Invalid (InvalidSpec), Ready, else NotReady."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            if condition.get("reason") == Reason.INVALID_SPEC:
                return "Invalid"
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "NotReady"


UPGRADE_STATES = ("upToDate", "upgrading", "failed", "pending")
_UPGRADE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_STEP_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """All `ooto_*` metrics. One instance per process, made in the composition root."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._define_state_metrics()
        self._define_build_metrics()
        self._define_api_metrics()
        self._define_runtime_metrics()
        self._states_seen: dict[str, set[str]] = {
            "modules": set(MODULE_STATES),
            "kernel_actors": set(),
        }
        self._states_lock = threading.RLock()  # held across count and set
        self._module_states: dict[tuple[str, str], str] = {}
        self._module_counts: Tally[str] = Tally()
        self.set_modules_by_state({})

    def _define_state_metrics(self) -> None:
        r = self.registry
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

    def _define_build_metrics(self) -> None:
        r = self.registry
        self.builds_started = Counter(
            "ooto_builds_started_total", "Builds started.", ["backend"], registry=r
        )
        self.builds_succeeded = Counter(
            "ooto_builds_succeeded_total", "Builds that succeeded.", ["backend"], registry=r
        )
        self.builds_failed = Counter(
            "ooto_builds_failed_total", "Builds that failed.", ["backend"], registry=r
        )
        self.sign_jobs = Counter(
            "ooto_sign_jobs_total",
            "Sign Jobs finished, by outcome (failed includes unusable signing Secrets).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("succeeded", "failed"):
            self.sign_jobs.labels(outcome=outcome)
        self.build_duration = Histogram(
            "ooto_build_duration_seconds",
            "Build duration from start to completion.",
            ["backend", "outcome"],
            buckets=_BUILD_BUCKETS,
            registry=r,
        )

    def _define_api_metrics(self) -> None:
        r = self.registry
        self.kube_requests = Counter(
            "ooto_kube_requests_total",
            "Kubernetes API requests by verb, resource and HTTP status code (0 = no response).",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.kube_request_duration = Histogram(
            "ooto_kube_request_duration_seconds",
            "Kubernetes API request latency.",
            ["verb", "resource"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.watch_restarts = Counter(
            "ooto_watch_restarts_total", "Watch streams restarted.", ["resource"], registry=r
        )
        self.relists = Counter(
            "ooto_watch_relists_total", "Full relists (start, 410 Gone).", ["resource"], registry=r
        )
        self.webhook_reviews = Counter(
            "ooto_webhook_reviews_total",
            "Module admission reviews answered, by whether the write was allowed.",
            ["allowed"],
            registry=r,
        )

    def _define_runtime_metrics(self) -> None:
        r = self.registry
        self.actor_message_latency = Histogram(
            "ooto_actor_message_latency_seconds",
            "Time from telling an actor a message to the actor handling it.",
            ["actor_kind"],
            buckets=_MESSAGE_BUCKETS,
            registry=r,
        )
        self.leader = Gauge(
            "ooto_leader",
            "1 while this process acts: it holds the Lease, or leader election is off.",
            registry=r,
        )
        self.events_dropped = Counter(
            "ooto_events_dropped_total", "Kubernetes Events not sent (queue full).", registry=r
        )
        self.loop_lag = Gauge(
            "ooto_event_loop_lag_seconds", "Last measured asyncio event-loop lag.", registry=r
        )
        self.actor_failures = Counter(
            "ooto_actor_failures_total",
            "Actor handlers that raised: outcome=recovered (the crash guard caught it) or "
            "died (the actor stopped; its parent replaces it).",
            ["actor_kind", "outcome"],
            registry=r,
        )
        # At 0 from the start, so that `increase()` counts the first failure and the dashboard
        # shows 0 rather than "No data".
        for kind in ACTOR_KINDS:
            for outcome in ("recovered", "died"):
                self.actor_failures.labels(actor_kind=kind, outcome=outcome)
        self.task_failures = Counter(
            "ooto_task_failures_total",
            "Failures of long-running tasks (each is logged and the task restarted with backoff).",
            ["task"],
            registry=r,
        )
        self.objects_skipped = Counter(
            "ooto_watch_objects_skipped_total",
            "Object versions an informer could not decode (e.g. nested over 1024 levels).",
            ["resource"],
            registry=r,
        )
        self.observed_version = Gauge(
            "ooto_informer_resource_version",
            "The resourceVersion up to which an informer has delivered every change, as a number"
            " (kube-apiserver's are etcd revisions): the operator has seen every write up to it.",
            ["resource"],
            registry=r,
        )

    # --- state -----------------------------------------------------------------------------

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

    # --- builds ----------------------------------------------------------------------------

    def declare_build_backend(self, backend: str) -> None:
        """Expose the backend's build counters at 0 before its first build: `increase()` then
        counts the first failure too, and dashboards show 0 rather than "No data"."""
        for counter in (self.builds_started, self.builds_succeeded, self.builds_failed):
            counter.labels(backend=backend)

    def build_started(self, backend: str) -> None:
        self.builds_started.labels(backend=backend).inc()

    def build_finished(self, backend: str, *, succeeded: bool, seconds: float | None) -> None:
        """Count a finished build; `seconds` is None when the start time is unknown (adopted)."""
        counter = self.builds_succeeded if succeeded else self.builds_failed
        counter.labels(backend=backend).inc()
        if seconds is not None:
            outcome = "succeeded" if succeeded else "failed"
            self.build_duration.labels(backend=backend, outcome=outcome).observe(seconds)

    def sign_finished(self, *, succeeded: bool) -> None:
        self.sign_jobs.labels(outcome="succeeded" if succeeded else "failed").inc()

    # --- Kubernetes API (RequestObserver) --------------------------------------------------

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        """RequestObserver: one finished API request (code 0 when no HTTP response came)."""
        self.kube_requests.labels(verb=verb, resource=resource, code=str(code)).inc()
        self.kube_request_duration.labels(verb=verb, resource=resource).observe(seconds)

    def watch_restarted(self, resource: str) -> None:
        self.watch_restarts.labels(resource=resource).inc()

    def relisted(self, resource: str) -> None:
        self.relists.labels(resource=resource).inc()

    def watching(self, resource: str) -> None:
        """Expose the resource's restart and relist counters at 0 once it is watched, so the
        first restart is counted by `increase()` and panels show 0 rather than "No data"."""
        self.watch_restarts.labels(resource=resource)
        self.relists.labels(resource=resource)

    # --- runtime ---------------------------------------------------------------------------

    def observe_message_latency(self, actor_kind: str, seconds: float) -> None:
        self.actor_message_latency.labels(actor_kind=actor_kind).observe(seconds)

    def actor_failed(self, actor_kind: str, *, died: bool) -> None:
        outcome = "died" if died else "recovered"
        self.actor_failures.labels(actor_kind=actor_kind, outcome=outcome).inc()

    def actor_failures_total(self, *, died: bool) -> int:
        """Failures so far with that outcome, all actor kinds together (for tests and health)."""
        outcome = "died" if died else "recovered"
        return int(
            sum(
                sample.value
                for metric in self.actor_failures.collect()
                for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome
            )
        )

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def webhook_reviewed(self, allowed: bool) -> None:
        self.webhook_reviews.labels(allowed="true" if allowed else "false").inc()

    def event_dropped(self) -> None:
        self.events_dropped.inc()

    def set_loop_lag(self, seconds: float) -> None:
        self.loop_lag.set(seconds)

    def task_failed(self, task: str) -> None:
        self.task_failures.labels(task=task).inc()

    def object_skipped(self, resource: str, obj: Mapping[str, Any], reason: str) -> None:
        self.objects_skipped.labels(resource=resource).inc()

    def observed(self, resource: str, resource_version: str) -> None:
        if resource_version.isdigit():  # opaque by contract; etcd revisions in practice
            self.observed_version.labels(resource=resource).set(int(resource_version))

    # --- reading back ----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)

    def _request_samples(self) -> Iterable[tuple[dict[str, str], float]]:
        for family in self.kube_requests.collect():
            for sample in family.samples:
                if sample.name == "ooto_kube_requests_total":
                    yield sample.labels, sample.value

    def requests_total(
        self, *, verb: str | None = None, resource: str | None = None, code: int | None = None
    ) -> int:
        """Number of API requests matching every filter given."""
        wanted = {"verb": verb, "resource": resource, "code": None if code is None else str(code)}
        return int(
            sum(
                value
                for labels, value in self._request_samples()
                if all(v is None or labels[k] == v for k, v in wanted.items())
            )
        )

    def requests_by_code(self, code: int) -> int:
        """Number of API requests answered with `code` (e.g. 403 for missing RBAC)."""
        return self.requests_total(code=code)

    def writes_total(self) -> dict[str, int]:
        """API write requests by verb (every verb except get/list/watch), any outcome."""
        totals: dict[str, int] = {}
        for labels, value in self._request_samples():
            if labels["verb"] not in READ_VERBS:
                totals[labels["verb"]] = totals.get(labels["verb"], 0) + int(value)
        return totals
