"""Where the informers' reports go: metrics, and an Event on each object they cannot decode."""

from __future__ import annotations

from ooto.domain.reasons import EventReason
from ooto.kube.client import JsonObj
from ooto.kube.events import EventRecorder
from ooto.metrics import Metrics


class InformerReports:
    """`InformerObserver` of the operator's informers: metrics, and a Warning Event on each object
    an informer cannot decode (it keeps acting on the last version it read, if any)."""

    def __init__(self, metrics: Metrics, recorder: EventRecorder) -> None:
        self._metrics = metrics
        self._recorder = recorder

    def watch_restarted(self, resource: str) -> None:
        self._metrics.watch_restarted(resource)

    def relisted(self, resource: str) -> None:
        self._metrics.relisted(resource)

    def task_failed(self, task: str) -> None:
        self._metrics.task_failed(task)

    def observed(self, resource: str, resource_version: str) -> None:
        self._metrics.observed(resource, resource_version)

    def object_skipped(self, resource: str, obj: JsonObj, reason: str) -> None:
        self._metrics.object_skipped(resource, obj, reason)
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            return  # nothing to attach an Event to; the log line and the metric remain
        keep = ("name", "namespace", "uid", "resourceVersion")
        involved = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata": {key: meta[key] for key in keep if meta.get(key)},
        }
        message = (
            f"ooto cannot read this version of the object ({reason}): it ignores it and keeps"
            " acting on the last version it could read, if any. Nest its free-form fields less"
            " deeply."
        )
        self._recorder.record(involved, "Warning", EventReason.UNDECODABLE_OBJECT, message)
