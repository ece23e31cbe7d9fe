"""One node's upgrade, as an explicit state machine: `transition(upgrade, event) -> (upgrade,
actions)`.

    IDLE --SlotGranted--> POD_DELETION_REQUIRED --PodsGone--> POD_RESTART_REQUIRED
      ^                    (label off, cordon,       (delete the old loader pod,
      |                     evict the pods that       wait for the new one Ready)
      |                     use the module)                   |
      |                          | deadline                    | NewPodReady
      |                          v                             v
      +--- (Written) ---- UNCORDON_REQUIRED <------------- (label back, uncordon
      |                                                     what ooto cordoned)
    FAILED <--deadline-- POD_RESTART_REQUIRED;  FAILED --SlotGranted (new generation)--> retry

Each state is entered by one Node write that carries the state's record (the Node annotation,
see `record.py`) together with its Node-level effect (label, cordon). The state's other effects
(evictions, the loader pod's deletion) start only once that write has landed (`Written`), so an
operator restarted at any point resumes from the record without repeating an earlier step. State
names follow NVIDIA's k8s-operator-libs (pkg/upgrade), which keeps the same kind of state on Nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class NodeUpgradeState(StrEnum):
    IDLE = "idle"
    """No upgrade under way: up to date, or waiting for a slot. Never written to a Node."""
    POD_DELETION_REQUIRED = "pod-deletion-required"
    """Label off, node cordoned if needed; evicting the pods that use the module, waiting for
    them (and the device-plugin pod) to be gone."""
    POD_RESTART_REQUIRED = "pod-restart-required"
    """The old loader pod is deleted; waiting for the new one to be Ready."""
    UNCORDON_REQUIRED = "uncordon-required"
    """The new loader pod is Ready: label back, uncordon a node ooto cordoned."""
    FAILED = "upgrade-failed"
    """Pods did not leave, or the new loader pod was not Ready, in time. Stays until a new
    Module generation retries it."""


ACTIVE = frozenset(
    {
        NodeUpgradeState.POD_DELETION_REQUIRED,
        NodeUpgradeState.POD_RESTART_REQUIRED,
        NodeUpgradeState.UNCORDON_REQUIRED,
    }
)
"""States that hold one of the Module's maxParallel slots (between "label off" and "label back")."""


@dataclass(frozen=True)
class NodeUpgrade:
    """One node's upgrade for one Module; everything but `written` is kept on the Node."""

    state: NodeUpgradeState = NodeUpgradeState.IDLE
    digest: str = ""
    """The load digest this attempt moves the node to."""
    generation: int = 0
    """The Module generation of this attempt (a failure stops the rollout of this generation)."""
    cordoned: bool = False
    """ooto cordoned the node (it uncordons only then; an admin's cordon stays)."""
    old_pod: str = ""
    """uid of the loader pod being replaced (deleted once, with this uid as a precondition)."""
    since: float = 0.0
    """Epoch seconds when the current state began: its deadline survives a restart."""
    cause: str = ""
    """Why the upgrade failed."""
    written: bool = False
    """The Node shows this record (the state's effects may start)."""


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotGranted:
    digest: str
    generation: int
    cordon: bool
    """Pods must be evicted and the node is schedulable now: ooto cordons it."""
    now: float


@dataclass(frozen=True)
class Written:
    """The Node write for the current state landed."""


@dataclass(frozen=True)
class WriteFailed:
    error: str


@dataclass(frozen=True)
class PodsGone:
    """No pod that must leave (workloads, the device plugin) is left on the node."""

    loader_pod: str
    """uid of the node's current (old) loader pod, "" when there is none."""
    now: float


@dataclass(frozen=True)
class NewPodReady:
    """A loader pod with the desired digest is Ready on the node."""


@dataclass(frozen=True)
class DeadlinePassed:
    now: float


@dataclass(frozen=True)
class Aborted:
    """The node left the Module (deleted, deselected, new kernel) or the Module is going."""


@dataclass(frozen=True)
class Reconsidered:
    """The node's upgrade looked at again after its Module or its loader pod changed."""

    held: bool
    """The node is held on its current loader now: the Module is in `Manual` mode, or the node
    carries the skip label (ooto replaces no running loader pod there)."""
    outdated: bool
    """The node's loader pod still needs this upgrade (`facts.needs_upgrade`): False when the
    Module went back to the digest it runs, or no loader of the node's kernel runs there."""


@dataclass(frozen=True)
class CordonLifted:
    """The node is schedulable though ooto cordoned it: someone uncordoned it mid-upgrade."""


Event = (
    SlotGranted
    | Written
    | WriteFailed
    | PodsGone
    | NewPodReady
    | DeadlinePassed
    | Aborted
    | Reconsidered
    | CordonLifted
)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteNode:
    """One Node patch: the record (None: remove it), the ready label and cordon (None: leave)."""

    record: NodeUpgrade | None
    ready_label: bool | None = None
    unschedulable: bool | None = None


@dataclass(frozen=True)
class EvictPods:
    """Evict the pods that use the module on the node (each pod once; PDBs respected)."""


@dataclass(frozen=True)
class DeleteLoaderPod:
    uid: str


@dataclass(frozen=True)
class ArmDeadline:
    at: float


@dataclass(frozen=True)
class ReleaseSlot:
    pass


@dataclass(frozen=True)
class ReportFailed:
    cause: str


@dataclass(frozen=True)
class ReportDone:
    pass


Action = (
    WriteNode | EvictPods | DeleteLoaderPod | ArmDeadline | ReleaseSlot | ReportFailed | ReportDone
)


@dataclass(frozen=True)
class Timeouts:
    pods_gone: float
    """Seconds the pods that use the module may take to leave (podDeletion/drain timeout)."""
    ready: float
    """Seconds the new loader pod may take to be Ready (readyTimeoutSeconds)."""


Step = tuple[NodeUpgrade, list[Action]]
S = NodeUpgradeState


def transition(upgrade: NodeUpgrade, event: Event, limits: Timeouts) -> Step:
    """The next state of one node's upgrade and what to do. An event that does not apply to the
    current state (late, duplicate, out of order) changes nothing and asks for nothing."""
    state = upgrade.state
    if isinstance(event, Aborted):
        return _aborted(upgrade)
    if isinstance(event, Reconsidered):
        return _reconsidered(upgrade, event)
    if isinstance(event, CordonLifted):
        return _cordon_lifted(upgrade)
    if isinstance(event, SlotGranted) and state in (S.IDLE, S.FAILED):
        return _enter(
            NodeUpgrade(
                S.POD_DELETION_REQUIRED,
                digest=event.digest,
                generation=event.generation,
                cordoned=upgrade.cordoned or event.cordon,
                since=event.now,
            ),
            ready_label=False,
            unschedulable=True if event.cordon else None,
        )
    if state is S.IDLE:
        return upgrade, []
    if isinstance(event, Written | WriteFailed):
        return _write_outcome(upgrade, event, limits)
    if state is S.FAILED or not upgrade.written:
        return upgrade, []  # effects wait for the state's record to be on the Node
    return _progress(upgrade, event, limits)


def _progress(upgrade: NodeUpgrade, event: Event, limits: Timeouts) -> Step:
    state = upgrade.state
    if isinstance(event, PodsGone) and state is S.POD_DELETION_REQUIRED:
        return _enter(
            replace(
                upgrade, state=S.POD_RESTART_REQUIRED, old_pod=event.loader_pod, since=event.now
            )
        )
    if isinstance(event, NewPodReady) and state is S.POD_RESTART_REQUIRED:
        done = replace(upgrade, state=S.UNCORDON_REQUIRED)
        return _enter(done, ready_label=True, unschedulable=False if upgrade.cordoned else None)
    if isinstance(event, DeadlinePassed) and event.now >= deadline(upgrade, limits):
        if state is S.POD_DELETION_REQUIRED:
            return _fail(
                upgrade, f"pods using the module still on the node after {limits.pods_gone:g}s"
            )
        if state is S.POD_RESTART_REQUIRED:
            return _fail(
                upgrade, f"the new module-loader pod was not Ready within {limits.ready:g}s"
            )
    return upgrade, []


def _write_outcome(upgrade: NodeUpgrade, event: Written | WriteFailed, limits: Timeouts) -> Step:
    if isinstance(event, WriteFailed):
        return upgrade, [_write_of(upgrade)]  # the actor retries after its backoff
    if upgrade.written:
        return upgrade, []
    written = replace(upgrade, written=True)
    if upgrade.state is S.POD_DELETION_REQUIRED:
        return written, [EvictPods(), ArmDeadline(deadline(written, limits))]
    if upgrade.state is S.POD_RESTART_REQUIRED:
        delete: list[Action] = [DeleteLoaderPod(upgrade.old_pod)] if upgrade.old_pod else []
        return written, [*delete, ArmDeadline(deadline(written, limits))]
    if upgrade.state is S.FAILED:
        return written, []  # the record is on the Node: a restart sees the failure
    return NodeUpgrade(cordoned=False), [ReleaseSlot(), ReportDone()]


def _fail(upgrade: NodeUpgrade, cause: str) -> Step:
    failed = replace(upgrade, state=S.FAILED, cause=cause, written=False)
    # The ready label and cordon stay as they are: a node ooto cordoned stays cordoned, so no
    # workload lands where the module may be missing; the label follows the loader pod again.
    return failed, [WriteNode(failed), ReleaseSlot(), ReportFailed(cause)]


def _aborted(upgrade: NodeUpgrade) -> Step:
    if upgrade.state is S.IDLE:
        return upgrade, []
    release: list[Action] = [ReleaseSlot()] if upgrade.state in ACTIVE else []
    uncordon = False if upgrade.cordoned else None
    return NodeUpgrade(), [WriteNode(None, unschedulable=uncordon), *release]


def _reconsidered(upgrade: NodeUpgrade, event: Reconsidered) -> Step:
    """Withdraw a node whose loader pod is still there (pods still leaving) when the upgrade is
    no longer wanted: back to idle, ooto's cordon off; its ready label follows the loader pod
    again. Once the loader pod is deleted the node finishes: its module is unloaded already."""
    if upgrade.state is not S.POD_DELETION_REQUIRED or (event.outdated and not event.held):
        return upgrade, []
    return _aborted(upgrade)


def _cordon_lifted(upgrade: NodeUpgrade) -> Step:
    """Someone uncordoned the node ooto cordoned: the cordon is theirs now. ooto does not cordon
    it again (an admin's decision) and forgets that it cordoned it, so that it never lifts a
    cordon the admin puts back later. Only once the state's own write is on the Node (before,
    the cache may not show ooto's cordon yet)."""
    if upgrade.state is S.IDLE or not upgrade.cordoned or not upgrade.written:
        return upgrade, []
    theirs = replace(upgrade, cordoned=False)
    return theirs, [WriteNode(theirs)]


def _enter(
    upgrade: NodeUpgrade, *, ready_label: bool | None = None, unschedulable: bool | None = None
) -> Step:
    entered = replace(upgrade, written=False)
    return entered, [_write_of(entered, ready_label, unschedulable)]


def resumed(upgrade: NodeUpgrade, limits: Timeouts) -> Step:
    """A record read back from a Node (after a restart or a leader change): its state's effects
    again. They are idempotent where it matters: pods already leaving are not evicted again, and
    the loader pod is deleted only if the one with the recorded uid is still there."""
    if upgrade.state not in ACTIVE:
        return replace(upgrade, written=True), []
    return transition(replace(upgrade, written=False), Written(), limits)


def _write_of(
    upgrade: NodeUpgrade, ready_label: bool | None = None, unschedulable: bool | None = None
) -> WriteNode:
    """The Node write that enters `upgrade.state` (the same write again after a failure)."""
    if upgrade.state is S.POD_DELETION_REQUIRED:
        cordon = True if upgrade.cordoned else None
        return WriteNode(upgrade, ready_label=False, unschedulable=unschedulable or cordon)
    if upgrade.state is S.UNCORDON_REQUIRED:
        return WriteNode(None, ready_label=True, unschedulable=False if upgrade.cordoned else None)
    return WriteNode(upgrade, ready_label=ready_label, unschedulable=unschedulable)


def deadline(upgrade: NodeUpgrade, limits: Timeouts) -> float:
    """When the current state times out (infinity for states without a deadline)."""
    if upgrade.state is S.POD_DELETION_REQUIRED:
        return upgrade.since + limits.pods_gone
    if upgrade.state is S.POD_RESTART_REQUIRED:
        return upgrade.since + limits.ready
    return float("inf")


def ready_label_wanted(loader_ready: bool, upgrade: NodeUpgrade) -> bool:
    """The module-ready label is on while the loader pod is Ready, except during an upgrade
    (from "label off" to "label back": the device plugin must leave before the module goes)."""
    return loader_ready and upgrade.state not in ACTIVE
