"""The Module-wide upgrade budget: how many nodes may be between "label off" and "label back"."""

from __future__ import annotations

import math


def max_parallel(value: int | str, nodes: int) -> int:
    """`maxParallel` as a node count: an int as given; "N%" of the Module's nodes, rounded up;
    at least 1 either way (a rollout that can never start helps nobody)."""
    if isinstance(value, int):
        return max(1, value)
    percent = int(value.rstrip("%"))
    return max(1, math.ceil(nodes * percent / 100))
