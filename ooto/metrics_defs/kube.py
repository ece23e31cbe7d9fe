"""Kubernetes API metrics, both ways: the client's requests (`Metrics` is the client's
`RequestObserver`), watch restarts and relists, and the admission reviews the webhook answers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class KubeMetrics:
    """Mixin of `ooto.metrics.Metrics`."""

    def _define_api_metrics(self, r: CollectorRegistry) -> None:
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

    def webhook_reviewed(self, allowed: bool) -> None:
        self.webhook_reviews.labels(allowed="true" if allowed else "false").inc()
