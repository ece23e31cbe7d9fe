"""The Module-wide upgrade budget: how many nodes may be between "label off" and "label back"."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ooto.domain.upgrade import facts
from ooto.domain.upgrade.state import ACTIVE, NodeUpgrade, NodeUpgradeState

Obj = Mapping[str, Any]


def max_parallel(value: int | str, nodes: int) -> int:
    """`maxParallel` as a node count: an int as given; "N%" of the Module's nodes, rounded up;
    at least 1 either way (a rollout that can never start helps nobody)."""
    if isinstance(value, int):
        return max(1, value)
    percent = int(value.rstrip("%"))
    return max(1, math.ceil(nodes * percent / 100))


def failed_in(upgrades: Mapping[str, NodeUpgrade], generation: int) -> dict[str, NodeUpgrade]:
    """Nodes whose upgrade failed in this Module generation: while there is one, the rollout has
    stopped (no node starts); a new generation resumes it."""
    return {
        node: u
        for node, u in upgrades.items()
        if u.state is NodeUpgradeState.FAILED and u.generation >= generation
    }


def candidates(
    targets: Mapping[str, tuple[str, str]],
    upgrades: Mapping[str, NodeUpgrade],
    pod_of: Callable[[str], Obj | None],
    node_of: Callable[[str], Obj | None],
) -> list[str]:
    """Nodes to upgrade, in order (`candidate_key`): nodes that failed (an older generation)
    first, so a fix is tried where it failed; then by name."""
    found = []
    for node, (kernel, digest) in targets.items():
        key = candidate_key(node, kernel, digest, upgrades.get(node), pod_of(node), node_of(node))
        if key is not None:
            found.append(key)
    return [node for _, node in sorted(found)]


def candidate_key(
    node: str,
    kernel: str,
    digest: str,
    upgrade: NodeUpgrade | None,
    pod: Obj | None,
    node_obj: Obj | None,
) -> tuple[bool, str] | None:
    """The node's place in the upgrade order, or None when it is no candidate: a candidate runs
    a loader pod of its kernel with another digest, has no skip label, is not NotReady (it waits:
    its pods could not leave nor its new loader start, and the timeout would stop the whole
    rollout) and is not upgrading now."""
    if upgrade is not None and upgrade.state in ACTIVE:
        return None
    if not facts.needs_upgrade(pod, kernel, digest):
        return None
    if facts.skipped(node_obj) or facts.not_ready(node_obj):
        return None
    return (upgrade is None, node)
