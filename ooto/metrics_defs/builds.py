"""Build and sign metrics: builds started and finished per backend, their duration, and sign
Jobs by outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUILD_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)


class BuildMetrics:
    """Mixin of `ooto.metrics.Metrics`."""

    def _define_build_metrics(self, r: CollectorRegistry) -> None:
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
