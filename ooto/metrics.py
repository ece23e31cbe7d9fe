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
The metrics themselves are defined by area in `ooto.metrics_defs`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from ooto.metrics_defs.builds import BuildMetrics
from ooto.metrics_defs.kube import KubeMetrics
from ooto.metrics_defs.modules import MODULE_STATES, UPGRADE_STATES, ModuleMetrics, module_state
from ooto.metrics_defs.runtime import ACTOR_KINDS, RuntimeMetrics

__all__ = [
    "ACTOR_KINDS",
    "MODULE_STATES",
    "READ_VERBS",
    "UPGRADE_STATES",
    "Metrics",
    "module_state",
]

# Verbs that only read; every other verb the client reports counts as a write.
READ_VERBS = frozenset({"get", "list", "watch"})


class Metrics(ModuleMetrics, BuildMetrics, KubeMetrics, RuntimeMetrics):
    """All `ooto_*` metrics. One instance per process, made in the composition root."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._define_state_metrics(self.registry)
        self._define_build_metrics(self.registry)
        self._define_api_metrics(self.registry)
        self._define_runtime_metrics(self.registry)
        self.set_modules_by_state({})

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
