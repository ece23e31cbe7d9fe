"""What the rollout reads from loader pods and Nodes (pure functions over raw objects)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ooto.domain.digest import LOAD_DIGEST_ANNOTATION
from ooto.domain.render import LABEL_KERNEL
from ooto.domain.upgrade.keys import SKIP_LABEL

Obj = Mapping[str, Any]


def pod_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_digest(pod: Obj) -> str | None:
    """The load digest a loader pod was created with (None: created before ooto set one)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(LOAD_DIGEST_ANNOTATION)
    return str(value) if value else None


def template_digest(daemonset: Obj | None) -> str | None:
    """The load digest a loader DaemonSet's template gives its new pods."""
    template = ((daemonset or {}).get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(LOAD_DIGEST_ANNOTATION)
    return str(value) if value else None


def pod_kernel(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_KERNEL, ""))


def current_pod(pods: Iterable[Obj]) -> Obj | None:
    """The node's loader pod that counts: not being deleted, the newest if there are several."""
    alive = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not alive:
        return None
    return max(alive, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", "")))


def needs_upgrade(pod: Obj | None, kernel_label: str, digest: str) -> bool:
    """A running loader pod of the node's kernel whose digest differs from the desired one. A pod
    without a digest (made before ooto recorded them) is adopted as it runs."""
    if pod is None or pod_kernel(pod) != kernel_label:
        return False
    found = pod_digest(pod)
    return found is not None and found != digest


def skipped(node: Obj | None) -> bool:
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(SKIP_LABEL) == "true"


def not_ready(node: Obj | None) -> bool:
    """The node reports Ready other than "True" (NotReady, Unknown); a node without a Ready
    condition is not: its kubelet has not said otherwise."""
    for condition in ((node or {}).get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") != "True"
    return False


def cordoned(node: Obj | None) -> bool:
    return bool(((node or {}).get("spec") or {}).get("unschedulable"))


def module_digest(kernel_digests: Mapping[str, str]) -> str:
    """One digest for the whole Module: over every kernel's load digest (status.upgrade.digest)."""
    joined = ",".join(f"{kernel}={digest}" for kernel, digest in sorted(kernel_digests.items()))
    return hashlib.sha256(joined.encode()).hexdigest()
