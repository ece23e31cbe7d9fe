"""RolloutActor: one per Module. Module-ready node labels and the Module's node-by-node upgrades.

The per-node decisions are pure (ooto/domain/upgrade/state.py); this actor feeds them events from
the
informers (loader pods, Nodes) and from its own I/O, performs the actions they return, and owns
the Module-wide budget: at most `maxParallel` nodes between "label off" and "label back", across
all the Module's kernels. One actor per Module (not the kernel actors) because a node's upgrade is
a node-wide affair (cordon, evictions) that can outlive its kernel actor, and one budget needs one
owner to be exact.

Writes per node are serialized (one Node patch in flight at a time), so a label write can never
overtake an upgrade step's write. At rest it writes nothing: every write is the difference between
the Node as cached and the decision.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actors.base import Backoff, OotoActor
from actors.messages import (
    ChildDied,
    DaemonSetObserved,
    EvictionBlocked,
    Flush,
    IoDone,
    LoaderPodObserved,
    ModuleGone,
    NodeObserved,
    RolloutReport,
    RolloutTargets,
)
from actors.node_writes import NodeWrites
from actors.ports import ActorContext, Obj
from actors.rollout_clock import StepClock
from actors.rollout_effects import RolloutEffects
from actors.rollout_reports import RolloutReporting
from actors.rollout_views import Clearings, LoaderPods
from ooto.domain.api import Module, UpgradeMode
from ooto.domain.kernels import label_safe
from ooto.domain.reasons import EventReason, Reason
from ooto.domain.stored import uid_of
from ooto.domain.upgrade import facts, record
from ooto.domain.upgrade.budget import failed_in, max_parallel
from ooto.domain.upgrade.facts import template_digest
from ooto.domain.upgrade.keys import ready_label_key, upgrade_annotation_key
from ooto.domain.upgrade.progress import timeouts
from ooto.domain.upgrade.state import (
    ACTIVE,
    Aborted,
    CordonLifted,
    DeadlinePassed,
    NewPodReady,
    NodeUpgrade,
    NodeUpgradeState,
    Reconsidered,
    SlotGranted,
    Timeouts,
    WriteFailed,
    WriteNode,
    ready_label_wanted,
    resumed,
)
from ooto.domain.upgrade.tally import Tally
from ooto.domain.upgrade.workloads import must_evict

log = logging.getLogger(__name__)
S = NodeUpgradeState
IDLE = NodeUpgrade()


class RolloutActor(OotoActor, RolloutEffects, RolloutReporting):
    def __init__(self, context: ActorContext, supervisor: Any, module: Module) -> None:
        super().__init__(context.bridge)
        self._io, self._metrics, self._routes = context.io, context.metrics, context.rollouts
        self._supervisor = supervisor
        self._module = module
        meta = module.metadata
        self._label = ready_label_key(meta.namespace, meta.name)
        self._annotation = upgrade_annotation_key(meta.namespace, meta.name)
        self._module_label = label_safe(meta.name)
        self._targets: dict[str, tuple[str, str]] | None = None  # node -> (kernel label, digest)
        self._digests: dict[str, str] = {}  # kernel label -> desired digest
        self._module_digest = ""  # facts.module_digest(self._digests)
        self._kernels: dict[str, tuple[str, frozenset[str], str]] = {}
        self._kernel_of: dict[str, str] = {}  # loader DaemonSet name -> kernel label
        self._upgrades: dict[str, NodeUpgrade] = {}  # nodes not IDLE
        self._tally = Tally()  # progress and candidates of every target node
        self._changed: set[str] = set()  # nodes whose facts changed since the tally was
        self._pods = LoaderPods(meta.namespace, self._module_label)
        self._writes = NodeWrites(context.io.nodes)
        self._clearings = Clearings()
        self._started: dict[str, float] = {}  # node -> monotonic time its label went off
        self._clock = StepClock(context.metrics.upgrade_step)
        self._known: set[str] = set()  # nodes that carry our label or record
        self._failed_writes: dict[str, str] = {}
        self._last_report: RolloutReport | None = None
        self._settling = False
        self._gone = False
        self._backoff = Backoff(
            context.settings.backoff_initial_seconds, context.settings.backoff_max_seconds
        )

    def describe(self) -> str:
        return f"RolloutActor({self._module.key})"

    def on_started(self) -> None:
        if self._routes is not None:
            self._routes.add(self._route_key(), self.actor_ref, self._label.partition("/")[2])
        for pod in self._io.loader_pods.list():
            self._pods.observe("ADDED", pod)

    def on_death(self, error: BaseException | None) -> None:
        self._clearings.cancel_all()  # the replacement resumes them from the records
        self.send(self._supervisor, ChildDied("rollout", self.actor_ref, repr(error)))

    def on_stop(self) -> None:
        self._clearings.cancel_all()
        if self._routes is not None:
            self._routes.remove(self._route_key(), self.actor_ref)

    def _route_key(self) -> tuple[str, str]:
        return (self._module.metadata.namespace, self._module_label)

    # --- messages ------------------------------------------------------------------------------

    def on_RolloutTargets(self, message: RolloutTargets) -> None:
        first, left = self._targets is None, set(self._targets or ())
        self._module = message.module
        self._kernels = dict(message.kernels)
        self._kernel_of = {name: kernel for kernel, (_, _, name) in self._kernels.items()}
        self._refresh_digests()
        if first:
            self._resume()
        # Nodes that left too: their label (and any upgrade) must go.
        for node in sorted({*(self._targets or ()), *left, *self._upgrades, *self._known}):
            self._reconcile(node)
        self._settle()

    def on_DaemonSetObserved(self, message: DaemonSetObserved) -> None:
        """One of the Module's loader DaemonSets changed: its template may carry a new digest.
        Only that kernel's digest and nodes are looked at (most events are status updates, one
        per pod Ready: walking every kernel and node for each sat on the upgrade's hot path)."""
        meta = message.daemonset.get("metadata") or {}
        kernel = self._kernel_of.get(str(meta.get("name", "")))
        if self._targets is None or kernel is None:
            return
        if meta.get("namespace") != self._module.metadata.namespace:
            return
        planned, nodes, name = self._kernels[kernel]
        written = template_digest(self._io.daemonsets.get(self._module.metadata.namespace, name))
        digest = written or planned
        if digest == self._digests.get(kernel):
            return
        self._digests[kernel] = digest
        self._module_digest = facts.module_digest(self._digests)
        for node in sorted(nodes):
            self._targets[node] = (kernel, digest)
        for node in sorted(nodes):
            self._reconcile(node)
        self._settle()

    def _refresh_digests(self) -> None:
        """Desired digest per kernel: the loader DaemonSet template's (what new pods get: the
        kernel actor may pin the image by digest), else the plan's until the DaemonSet exists."""
        namespace = self._module.metadata.namespace
        digests = {}
        for kernel, (planned, _, name) in self._kernels.items():
            written = template_digest(self._io.daemonsets.get(namespace, name))
            digests[kernel] = written or planned
        self._digests = digests
        self._module_digest = facts.module_digest(digests)
        before = set(self._targets or ())
        self._targets = {
            node: (kernel, digests[kernel])
            for kernel, (_, nodes, _) in self._kernels.items()
            for node in nodes
        }
        if self._routes is not None and before != set(self._targets):
            self._routes.target(self.actor_ref, frozenset(self._targets))

    def on_LoaderPodObserved(self, message: LoaderPodObserved) -> None:
        node = self._pods.observe(message.type, message.pod)
        self._clock.pod_seen(node, message.seen)
        if node and self._targets is not None:
            self._reconcile(node)
            self._settle()

    def on_NodeObserved(self, message: NodeObserved) -> None:
        name = str((message.node.get("metadata") or {}).get("name", ""))
        if self._targets is None or not (
            name in self._targets or name in self._upgrades or self._ours(message.node)
        ):
            return
        self._reconcile(name)
        self._settle()

    def on_ModuleGone(self, _: ModuleGone) -> None:
        """The Module is deleted: act no more (the supervisor stops us next). The NodeCleaner
        takes its labels, records and ooto's cordons off the nodes, retried until done."""
        self._gone = True
        self._targets = None
        self._clearings.cancel_all()

    def on_EvictionBlocked(self, message: EvictionBlocked) -> None:
        if self._upgrades.get(message.node, IDLE).state is S.POD_DELETION_REQUIRED:
            self._clearings.waits(message.node, message.why)
            self._report()

    def on_timer(self, name: str) -> None:
        kind, _, node = name.partition(":")
        if kind == "deadline":
            self._feed(node, DeadlinePassed(time.time()))
        elif kind == "clear":
            self._clear(node)
        elif kind == "rewrite":
            self._feed(node, WriteFailed(self._failed_writes.pop(node, "")))
        elif kind == "retry" and self._targets is not None:
            for each in sorted({*self._targets, *self._upgrades}):
                self._reconcile(each)
        self._settle()

    def on_IoDone(self, done: IoDone) -> None:
        kind, node = done.tag[0], done.tag[1]
        if kind == "node":
            self._node_written(node, done)
        elif kind == "clear":
            self._cleared(node, done)
        elif kind == "delete" and done.ok:
            self._say(logging.INFO, "LoaderDeleted", node, f"deleted the loader pod {done.tag[2]}")
        elif kind == "delete" and not done.ok:
            self._say(
                logging.WARNING,
                EventReason.DELETE_FAILED,
                node,
                f"loader delete failed: {done.error}",
            )
            self.set_timer("retry", self._backoff.next_delay())
        self._settle()

    # --- observing -------------------------------------------------------------------------------

    def _node(self, name: str) -> Obj | None:
        return self._writes.view(name)

    def _ours(self, node: Obj | None) -> bool:
        meta = (node or {}).get("metadata") or {}
        return self._label in (meta.get("labels") or {}) or self._annotation in (
            meta.get("annotations") or {}
        )

    def _resume(self) -> None:
        """First targets: pick up the records a previous leader left on the Nodes."""
        limits = self._limits()
        for node in self._io.nodes.list():
            name = str((node.get("metadata") or {}).get("name", ""))
            if not self._ours(node):
                continue
            self._known.add(name)
            text = ((node.get("metadata") or {}).get("annotations") or {}).get(self._annotation)
            found = record.decode(text)
            if found is None or record.owner_of(text) not in ("", self._module.metadata.uid):
                continue  # a Module of this name deleted before us left it: the NodeCleaner's
            self._say(logging.INFO, "Resumed", name, f"resumes {found.state} on {name}")
            upgrade, actions = resumed(found, limits)
            self._set(name, upgrade)
            self._perform(name, actions)

    # --- deciding --------------------------------------------------------------------------------

    def _reconcile(self, node: str) -> None:
        """Feed what the caches show to the node's upgrade, then put its ready label right."""
        assert self._targets is not None
        self._changed.add(node)
        upgrade = self._upgrades.get(node, IDLE)
        target = self._targets.get(node)
        if target is None and upgrade.state is not S.IDLE:
            self._feed(node, Aborted())
            upgrade = self._upgrades.get(node, IDLE)
        pod = self._pod(node)
        if self._settled_failure(upgrade, target, pod):
            self._feed(node, Aborted())  # its loader already runs what is wanted: clean up
            upgrade = self._upgrades.get(node, IDLE)
        if upgrade.state in ACTIVE and target is not None:
            upgrade = self._reconsider(node, upgrade, target, pod)
        if upgrade.cordoned and self._uncordoned(node):
            self._feed(node, CordonLifted())
            upgrade = self._upgrades.get(node, IDLE)
        if self._replaced(upgrade, pod):
            self._clock.new_pod_ready(node)
            self._feed(node, NewPodReady())
            upgrade = self._upgrades.get(node, IDLE)
        if not self._writes.busy(node):
            self._restore_record(node, upgrade)
        if upgrade.state in ACTIVE or self._writes.busy(node):
            return
        ready = (
            target is not None
            and pod is not None
            and facts.pod_kernel(pod) == target[0]
            and facts.pod_ready(pod)
        )
        self._put_label(node, ready_label_wanted(ready, upgrade))

    def _settled_failure(
        self, upgrade: NodeUpgrade, target: tuple[str, str] | None, pod: Obj | None
    ) -> bool:
        """A node that failed in an older generation whose loader needs no upgrade now (the
        Module went back to what it runs): its record and ooto's cordon go."""
        if upgrade.state is not S.FAILED or target is None or pod is None:
            return False
        older = upgrade.generation < self._module.metadata.generation
        return older and facts.pod_ready(pod) and not facts.needs_upgrade(pod, *target)

    def _reconsider(
        self, node: str, upgrade: NodeUpgrade, target: tuple[str, str], pod: Obj | None
    ) -> NodeUpgrade:
        """The Module (mode, digest), the node (skip label) or its loader pod changed: is this
        upgrade still wanted?"""
        manual = self._module.spec.upgrade_policy.mode is UpgradeMode.MANUAL
        held = manual or facts.skipped(self._node(node))
        self._feed(node, Reconsidered(held, facts.needs_upgrade(pod, *target)))
        now = self._upgrades.get(node, IDLE)
        if now.state is S.IDLE:
            self._started.pop(node, None)
            why = "held on its loader (Manual, skip label)" if held else "no upgrade needed now"
            self._say(logging.INFO, "Withdrawn", node, f"withdrew {node} from its upgrade: {why}")
        return now

    def _restore_record(self, node: str, upgrade: NodeUpgrade) -> None:
        """Someone edited the node's upgrade record: write back the one ooto holds (none: remove
        it), so that a restart resumes what is really under way, and say so on the Node."""
        meta = (self._node(node) or {}).get("metadata") or {}
        text = (meta.get("annotations") or {}).get(self._annotation)
        owner = self._module.metadata.uid
        if self._gone or not meta or not record.edited(text, upgrade, owner):
            return  # (gone: the NodeCleaner's, as every write of a deleted Module's keys)
        held = record.encode(upgrade, owner) if upgrade.state is not S.IDLE else None
        self._send(node, self._writes.start(node, ({}, {self._annotation: held}, None, False)))
        what = f"wrote back its own ({upgrade.state})" if held else "removed it (none under way)"
        message = (
            f"module {self._module.key}: the upgrade record {self._annotation} on {node} is not "
            f"the one ooto holds (edited by hand, or an earlier write failed); {what}"
        )
        self._say(logging.WARNING, EventReason.UPGRADE_RECORD_EDITED, node, message)
        involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
        self._io.record_event(involved, "Warning", EventReason.UPGRADE_RECORD_EDITED, message)

    def _uncordoned(self, node: str) -> bool:
        obj = self._node(node)
        return obj is not None and not facts.cordoned(obj)

    @staticmethod
    def _replaced(upgrade: NodeUpgrade, pod: Obj | None) -> bool:
        """The loader pod that replaced the recorded one is Ready."""
        if upgrade.state is not S.POD_RESTART_REQUIRED or not upgrade.written or pod is None:
            return False
        return uid_of(pod) != upgrade.old_pod and facts.pod_ready(pod)

    def _put_label(self, node: str, wanted: bool) -> None:
        obj = self._node(node)
        if obj is None:
            return
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if (labels.get(self._label) == "true") == wanted and (wanted or self._label not in labels):
            return
        self._write(node, WriteNode(None, ready_label=wanted), step=False)

    def _settle(self) -> None:
        """Grant free slots, then report: once per burst of messages (both walk every node), by
        a Flush queued behind the messages already in the mailbox."""
        if not self._settling:
            self._settling = True
            self.send(self.actor_ref, Flush("settle"))

    def on_Flush(self, flush: Flush) -> None:
        if flush.name == "routed" and self._targets is not None:
            # Node events of newly targeted nodes reach us from now on; what came before is in
            # the cache.
            for node in sorted(self._targets):
                self._reconcile(node)
        self._settling = False
        self._grant()
        self._report()

    def _grant(self) -> None:
        module, targets = self._module, self._targets
        if targets is None or module.spec.upgrade_policy.mode is UpgradeMode.MANUAL:
            self._clock.nobody_waits()
            return
        if self._failed_now():
            self._clock.nobody_waits()
            return  # the rollout of this generation stopped; a new generation resumes it
        limit = max_parallel(module.spec.upgrade_policy.max_parallel, len(targets))
        active = sum(1 for u in self._upgrades.values() if u.state in ACTIVE)
        if active >= limit:
            return  # every slot taken: no need to walk every node for candidates
        for node in self._tallied().candidates():
            if active >= limit:
                return
            if self._writes.busy(node):
                continue
            cordon = must_evict(module) and not facts.cordoned(self._node(node))
            grant = SlotGranted(targets[node][1], module.metadata.generation, cordon, time.time())
            self._started[node] = time.monotonic()
            self._say(logging.INFO, Reason.UPGRADING, node, f"upgrades {node}")
            self._clock.granted(node)
            self._feed(node, grant)
            active += 1
        self._clock.nobody_waits()

    def _failed_now(self) -> dict[str, NodeUpgrade]:
        return failed_in(self._upgrades, self._module.metadata.generation)

    def _limits(self) -> Timeouts:
        return timeouts(self._module.spec.upgrade_policy)

    def _pod(self, node: str) -> Obj | None:
        return self._pods.current(node)
