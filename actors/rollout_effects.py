"""What a RolloutActor does with its decisions (a mixin: the actor's state, these methods): feed
an event to a node's upgrade (ooto/domain/upgrade/state.py) and perform the actions it returns:
Node writes (one in flight per node), evictions, the loader pod's deletion, deadlines, reports.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from actors.base import Backoff
from actors.messages import EvictionBlocked, IoDone
from actors.node_writes import NodeWrites, Patch
from actors.ports import Obj, OperatorIO
from actors.rollout_clock import StepClock
from actors.rollout_views import Clearings, LoaderPods
from ooto.domain.api import Module
from ooto.domain.reasons import Reason
from ooto.domain.stored import uid_of
from ooto.domain.upgrade import record
from ooto.domain.upgrade.state import (
    Action,
    ArmDeadline,
    DeleteLoaderPod,
    Event,
    EvictPods,
    NodeUpgrade,
    NodeUpgradeState,
    PodsGone,
    ReportDone,
    ReportFailed,
    Timeouts,
    WriteNode,
    Written,
    transition,
)
from ooto.domain.upgrade.workloads import departures

S = NodeUpgradeState
IDLE = NodeUpgrade()


class RolloutEffects:
    """Mixin for RolloutActor; every attribute used here is the actor's."""

    _io: OperatorIO
    _module: Module
    _module_label: str
    _label: str
    _annotation: str
    _targets: dict[str, tuple[str, str]] | None
    _upgrades: dict[str, NodeUpgrade]
    _changed: set[str]
    _pods: LoaderPods
    _writes: NodeWrites
    _clearings: Clearings
    _clock: StepClock
    _failed_writes: dict[str, str]
    _gone: bool
    _backoff: Backoff

    def _feed(self, node: str, event: Event) -> None:
        if self._gone:
            return  # a reply that came after the Module went starts nothing
        upgrade, actions = transition(self._upgrades.get(node, IDLE), event, self._limits())
        self._set(node, upgrade)
        self._perform(node, actions)
        if upgrade.state is S.IDLE and not any(isinstance(a, ReportDone) for a in actions):
            self._clock.forget(node)  # aborted or withdrawn: none of its steps is timed

    def _set(self, node: str, upgrade: NodeUpgrade) -> None:
        self._changed.add(node)
        if upgrade.state is S.IDLE:
            self._upgrades.pop(node, None)
        else:
            self._upgrades[node] = upgrade
        if upgrade.state is not S.POD_DELETION_REQUIRED:
            self._clearings.cancel(node)  # no eviction after the node failed or left

    def _perform(self, node: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, WriteNode):
                self._write(node, action)
            elif isinstance(action, EvictPods):
                self._clear(node)
            elif isinstance(action, DeleteLoaderPod):
                self._delete_pod(node, action.uid)
            elif isinstance(action, ArmDeadline):
                self.set_timer(f"deadline:{node}", max(0.0, action.at - time.time()))
            elif isinstance(action, ReportFailed):
                self._report_failed(node, action.cause)
            elif isinstance(action, ReportDone):
                self._report_done(node)

    def _write(self, node: str, action: WriteNode, *, step: bool = True) -> None:
        if self._gone:
            return
        labels: dict[str, str | None] = {}
        if action.ready_label is not None:
            labels[self._label] = "true" if action.ready_label else None
        notes: dict[str, str | None] = {}
        if step:
            owner = self._module.metadata.uid
            notes[self._annotation] = record.encode(action.record, owner) if action.record else None
        self._send(node, self._writes.start(node, (labels, notes, action.unschedulable, step)))

    def _send(self, node: str, patch: Patch | None) -> None:
        if patch is not None:
            labels, notes, unschedulable, step = patch
            write = self._io.patch_node(node, labels, notes, unschedulable)
            self.bridge.run(self.actor_ref, ("node", node, step), write)

    def _node_written(self, node: str, done: IoDone) -> None:
        queued = self._writes.done(node, done.result if done.ok else None)
        self._changed.add(node)
        step = done.tag[2]
        if done.ok:
            self._backoff.reset()
        else:
            self._say(logging.WARNING, "NodeWriteFailed", node, f"node write failed: {done.error}")
        if step and done.ok:
            self._clock.written(node, done.started, done.ended)
            self._feed(node, Written())
        elif step:
            self._failed_writes[node] = str(done.error)
            self.set_timer(f"rewrite:{node}", self._backoff.next_delay())
        elif not done.ok:
            self.set_timer("retry", self._backoff.next_delay())
        self._send(node, queued)
        if self._targets is not None and not self._writes.busy(node):
            self._reconcile(node)

    def _clear(self, node: str) -> None:
        upgrade = self._upgrades.get(node, IDLE)
        if upgrade.state is not S.POD_DELETION_REQUIRED:
            return
        module, label = self._module, self._module_label
        ref, bridge = self.actor_ref, self.bridge

        def departures_of(pods: list[Obj]) -> Any:
            return departures(module, label, pods)

        def on_blocked(why: str) -> None:
            bridge.tell(ref, EvictionBlocked(node, why))

        if not self._clearings.running(node):
            clear = self._io.clear_node(node, departures_of, on_blocked)
            serial = self._clearings.next_serial()
            handle = self.bridge.run(ref, ("clear", node, serial), clear)
            self._clearings.started(node, serial, handle)

    def _cleared(self, node: str, done: IoDone) -> None:
        if not self._clearings.finished(node, done.tag[2]):
            return  # cancelled: the node left this state (failed, aborted) or we are stopping
        if not done.ok:
            self._say(logging.WARNING, "EvictionFailed", node, f"evictions failed: {done.error}")
            self.set_timer(f"clear:{node}", self._backoff.next_delay())
            return
        pod = self._pod(node)
        self._feed(node, PodsGone(uid_of(pod) if pod is not None else "", time.time()))

    def _delete_pod(self, node: str, uid: str) -> None:
        pod = self._pods.by_uid(node, uid)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return  # gone or going already (a resumed operator): never delete twice
        meta = pod["metadata"]
        self._say(logging.INFO, Reason.UPGRADING, node, f"replaces the loader pod on {node}")
        self.bridge.run(
            self.actor_ref,
            ("delete", node, uid),
            self._io.delete_object("pod", meta["namespace"], meta["name"], uid),
        )

    if TYPE_CHECKING:  # provided by RolloutActor, RolloutReporting and OotoActor
        actor_ref: Any
        bridge: Any

        def set_timer(self, name: str, delay: float) -> None: ...
        def _limits(self) -> Timeouts: ...
        def _pod(self, node: str) -> Obj | None: ...
        def _reconcile(self, node: str) -> None: ...
        def _report_failed(self, node: str, cause: str) -> None: ...
        def _report_done(self, node: str) -> None: ...
        def _say(self, level: int, reason: str, node: str, text: str) -> None: ...
