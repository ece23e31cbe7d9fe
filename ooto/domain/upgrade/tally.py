"""A Module's upgrade progress and candidates, kept node by node (pure).

The RolloutActor needs both once per burst of messages: the counts for its report, the candidates
when a slot is free. Walking every node each time put an O(nodes) pass on the path between a
loader pod getting Ready and its node's label coming back (the upgrade benchmark's tail at 500
nodes). A Tally is told which nodes changed and recomputes only those, with the same pure
decisions (`node_progress`, `candidate_key`) the full walks use, so both always agree
(tests/unit/test_upgrade_tally.py checks that over random histories).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ooto.domain.upgrade.budget import candidate_key
from ooto.domain.upgrade.progress import COUNTS, node_progress
from ooto.domain.upgrade.state import NodeUpgrade

Obj = Mapping[str, Any]


class Tally:
    def __init__(self) -> None:
        self._progress: dict[str, str] = {}
        self._counts = dict.fromkeys(COUNTS, 0)
        self._candidates: dict[str, tuple[bool, str]] = {}

    def update(
        self,
        node: str,
        target: tuple[str, str] | None,
        upgrade: NodeUpgrade | None,
        pod: Obj | None,
        node_obj: Obj | None,
    ) -> None:
        """The node's facts now (`target`: its kernel label and desired digest, None when the
        node is no target of the Module any more)."""
        self.forget(node)
        if target is None:
            return
        kernel, digest = target
        progress = node_progress(kernel, digest, upgrade, pod)
        self._progress[node] = progress
        self._counts[progress] += 1
        key = candidate_key(node, kernel, digest, upgrade, pod, node_obj)
        if key is not None:
            self._candidates[node] = key

    def forget(self, node: str) -> None:
        progress = self._progress.pop(node, None)
        if progress is not None:
            self._counts[progress] -= 1
        self._candidates.pop(node, None)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def candidates(self) -> list[str]:
        """The candidates in upgrade order (`budget.candidates`' order)."""
        return [node for _, node in sorted(self._candidates.values())]
