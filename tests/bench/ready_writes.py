"""Tells the operator's ready-label writes apart in its own request counter (benchmark only).

Kernel labels (the node tracker) and ready labels (the rollout actors) are both `patch nodes`
to the API server, so `ooto_kube_requests_total` cannot tell them apart, and the ready labels
come after the pods are Ready, outside day-1 convergence. `install()`, run by the benchmark's
launcher in the operator's process when the benchmark asks for it, counts a node patch that only
sets ready labels to "true" under the resource `READY_LABEL_RESOURCE` instead of `nodes`; every
other request is counted as before. The cost is a context variable set per node patch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from ooto.domain.upgrade.keys import READY_LABEL_PREFIX
from ooto.metrics import Metrics
from ooto.operator_io import KubeOperatorIO

READY_LABEL_RESOURCE = "nodes (ready label)"
ENV = "OOTO_BENCH_TAG_READY_LABEL_WRITES"
"""Set to "1" in the operator's environment to have the launcher `install()`."""

_ready_write: ContextVar[bool] = ContextVar("bench_ready_label_write", default=False)


def is_ready_label_write(
    labels: Mapping[str, str | None], annotations: Mapping[str, str | None], unschedulable: Any
) -> bool:
    """A patch that sets one or more ready labels to "true" and nothing else. An upgrade step
    (it carries the upgrade record), a label removal and a cleanup are not."""
    return (
        bool(labels)
        and not annotations
        and unschedulable is None
        and all(k.startswith(f"{READY_LABEL_PREFIX}/") and v == "true" for k, v in labels.items())
    )


def install() -> None:
    """Count the operator's ready-label writes as `READY_LABEL_RESOURCE` (this process only)."""
    patch_node = KubeOperatorIO.patch_node
    observe = Metrics.observe

    @functools.wraps(patch_node)
    async def tagged_patch_node(
        self: KubeOperatorIO,
        name: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        unschedulable: bool | None = None,
        resource_version: str = "",
    ) -> Any:
        # The request and its observation run in this coroutine's task, so they see the tag.
        token = _ready_write.set(is_ready_label_write(labels, annotations, unschedulable))
        try:
            return await patch_node(
                self, name, labels, annotations, unschedulable, resource_version
            )
        finally:
            _ready_write.reset(token)

    @functools.wraps(observe)
    def tagged_observe(self: Metrics, verb: str, resource: str, code: int, seconds: float) -> None:
        if resource == "nodes" and _ready_write.get():
            resource = READY_LABEL_RESOURCE
        observe(self, verb, resource, code, seconds)

    KubeOperatorIO.patch_node = tagged_patch_node  # type: ignore[method-assign]
    Metrics.observe = tagged_observe  # type: ignore[method-assign]
