"""How long the RolloutActor itself takes to react between an upgrade's steps.

Two waits of a node's upgrade are the operator's alone; the rest is the kubelet's, the DaemonSet
controller's, the API server's or the workloads':
- label_back: from the watch event showing the node's new loader pod Ready (when the informer
  received it) to the start of the patch that puts the ready label back;
- next_start: from the reply to that patch (the node's slot is free) to the start of the next
  waiting node's "label off" patch.

"Start" is when the event loop starts the write's coroutine (`IoDone.started`), so both are the
operator's reaction time: mailbox and thread hand-offs, decisions, per-node write ordering; not
the API server's time to answer nor the watch's delivery. `ooto_upgrade_step_latency_seconds
{step}` exports them; the upgrade benchmark reports them beside its end-to-end figures.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class StepClock:
    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe
        self._pod_seen: dict[str, float] = {}  # node -> when its latest loader-pod event came
        self._ready: dict[str, float] = {}  # node -> when its new pod's Ready was seen
        self._answered: dict[str, float] = {}  # node -> when its label-back patch was answered
        self._freed: deque[float] = deque()  # slots freed while nodes waited, oldest first
        self._granted: dict[str, float] = {}  # node -> when the slot it got was freed

    def pod_seen(self, node: str, seen: float) -> None:
        if node and seen:
            self._pod_seen[node] = seen

    def new_pod_ready(self, node: str) -> None:
        """The node's upgrade saw its new loader pod Ready: its label-back write comes next."""
        seen = self._pod_seen.get(node)
        if seen is not None:
            self._ready[node] = seen

    def written(self, node: str, started: float, ended: float) -> None:
        """A step write of `node` succeeded: it started at `started` and was answered at `ended`
        (the first step write after a grant is its label off, the one after a new pod Ready its
        label back)."""
        if not started:
            return
        freed = self._granted.pop(node, None)
        if freed is not None:
            self._observe("next_start", started - freed)
        ready = self._ready.pop(node, None)
        if ready is not None:
            self._observe("label_back", started - ready)
            self._answered[node] = ended

    def done(self, node: str) -> None:
        """The node's upgrade is done: its slot is free since its label back was answered."""
        answered = self._answered.pop(node, None)
        if answered is not None:
            self._freed.append(answered)

    def granted(self, node: str) -> None:
        """A slot went to `node`: it takes the oldest freed slot's time, if one was freed."""
        if self._freed:
            self._granted[node] = self._freed.popleft()

    def nobody_waits(self) -> None:
        """Slots are free and no node wants one: a later grant did not wait for these."""
        self._freed.clear()

    def forget(self, node: str) -> None:
        """The node's upgrade ended otherwise (failed, aborted, left)."""
        self._pod_seen.pop(node, None)
        self._ready.pop(node, None)
        self._answered.pop(node, None)
        self._granted.pop(node, None)
