"""Process metrics: actor mailboxes and failures, long-running tasks, leadership, the event
loop's lag, dropped Events, and what the informers delivered or could not decode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_MESSAGE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)

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


class RuntimeMetrics:
    """Mixin of `ooto.metrics.Metrics`."""

    def _define_runtime_metrics(self, r: CollectorRegistry) -> None:
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
        self._define_informer_metrics(r)

    def _define_informer_metrics(self, r: CollectorRegistry) -> None:
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
