"""How long the RolloutActor itself takes between an upgrade's steps (its reaction time).

Two waits of a node's upgrade are the operator's alone, everything else is the kubelet's, the
DaemonSet controller's or the workloads':
- label_back: from the watch event showing the node's new loader pod Ready (as the informer
  received it) to the API server's reply to the patch that puts the ready label back;
- next_start: from that reply (the node's slot is free) to the reply to the next node's
  "label off" patch, when a node was waiting for the slot.

Both end at a reply, so they include one Node PATCH round trip; they exclude the watch delivery
to the operator, which no operator can shorten. `ooto_upgrade_step_latency_seconds{step}`
exports them; the upgrade benchmark reads them (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class StepClock:
    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe
        self._pod_seen: dict[str, float] = {}  # node -> when its latest loader-pod event came
        self._ready: dict[str, float] = {}  # node -> when its new pod's Ready was seen
        self._freed: deque[float] = deque()  # slots freed while nodes waited, oldest first
        self._granted: dict[str, float] = {}  # node -> when the slot it got was freed

    def pod_seen(self, node: str, seen: float) -> None:
        if seen:
            self._pod_seen[node] = seen

    def new_pod_ready(self, node: str) -> None:
        """The node's upgrade saw its new loader pod Ready: its label-back write starts."""
        seen = self._pod_seen.get(node)
        if seen is not None:
            self._ready[node] = seen

    def done(self, node: str, now: float) -> None:
        """The node's label-back write was acknowledged: its upgrade is done, its slot free."""
        ready = self._ready.pop(node, None)
        if ready is not None:
            self._observe("label_back", now - ready)
            self._freed.append(now)

    def granted(self, node: str) -> None:
        """A slot went to `node`: it takes the oldest freed slot's time, if one was freed."""
        if self._freed:
            self._granted[node] = self._freed.popleft()

    def nobody_waits(self) -> None:
        """Slots are free and no node wants one: a later grant did not wait for these."""
        self._freed.clear()

    def written(self, node: str, now: float) -> None:
        """A step write of `node` was acknowledged (the first after a grant: its label off)."""
        freed = self._granted.pop(node, None)
        if freed is not None:
            self._observe("next_start", now - freed)

    def forget(self, node: str) -> None:
        """The node's upgrade ended otherwise (failed, aborted, left)."""
        self._pod_seen.pop(node, None)
        self._ready.pop(node, None)
        self._granted.pop(node, None)
