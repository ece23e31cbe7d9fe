"""A Module's upgrade progress over its nodes, and the timeouts its policy gives (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ooto.domain.api.module import UpgradePolicy
from ooto.domain.upgrade import facts
from ooto.domain.upgrade.state import ACTIVE, NodeUpgrade, NodeUpgradeState, Timeouts

Obj = Mapping[str, Any]
Targets = Mapping[str, tuple[str, str]]
"""node -> (kernel label, desired load digest)."""
COUNTS = ("upToDate", "upgrading", "failed", "pending")


def node_progress(kernel: str, digest: str, upgrade: NodeUpgrade | None, pod: Obj | None) -> str:
    """upgrading (holds a slot), failed, upToDate (its loader pod runs the digest) or pending
    (waiting for a slot, held back, or no loader pod of its kernel yet)."""
    state = upgrade.state if upgrade is not None else NodeUpgradeState.IDLE
    if state in ACTIVE:
        return "upgrading"
    if state is NodeUpgradeState.FAILED:
        return "failed"
    current = pod is not None and facts.pod_kernel(pod) == kernel
    if current and not facts.needs_upgrade(pod, kernel, digest):
        return "upToDate"
    return "pending"


def progress(
    targets: Targets,
    upgrades: Mapping[str, NodeUpgrade],
    pod_of: Callable[[str], Obj | None],
) -> dict[str, int]:
    counts = dict.fromkeys(COUNTS, 0)
    for node, (kernel, digest) in targets.items():
        counts[node_progress(kernel, digest, upgrades.get(node), pod_of(node))] += 1
    return counts


def upgrade_status(module_digest: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """status.upgrade: the Module digest (`facts.module_digest`: the caller keeps it, a hash
    over every kernel is too dear to redo per report) and nodesUpToDate, nodesUpgrading, ..."""
    named = {f"nodes{key[0].upper()}{key[1:]}": counts.get(key, 0) for key in COUNTS}
    return {"digest": module_digest, **named}


def timeouts(policy: UpgradePolicy) -> Timeouts:
    """Pods must leave within the podDeletion or drain timeout (the longer when both are set;
    300 s for the device plugin alone); the new loader pod must be Ready in readyTimeoutSeconds."""
    waits = [p.timeout_seconds for p in (policy.pod_deletion, policy.drain) if p is not None]
    return Timeouts(pods_gone=float(max(waits, default=300)), ready=policy.ready_timeout_seconds)
