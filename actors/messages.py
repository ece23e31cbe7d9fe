"""Messages between actors, and from the asyncio loop to actors.

Every message is a frozen dataclass: actors share nothing mutable, and a message can be read by its
receiver while its sender goes on. Raw Kubernetes objects travel as plain dicts that nobody mutates
after they were told (the informer hands out its own copy of each object).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ooto.domain.api import KernelStatus, Module
from ooto.domain.api.preflight import PreflightValidation
from ooto.domain.kernels import KernelPlan
from ooto.domain.loader_health import PodTrouble

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Selector = Mapping[str, str]
KernelNodes = Mapping[str, frozenset[str]]
"""kernel string -> names of the selected nodes that run it."""


# --- from the loop (informers) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeObserved:
    """A Node was added, changed or deleted (told to the NodeTracker by the Node informer)."""

    type: EventType
    node: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ModuleObserved:
    """A Module was added, changed or deleted (told to the OperatorRoot by the Module informer)."""

    type: EventType
    module: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DaemonSetObserved:
    """One of the kernel actor's DaemonSets changed (told by DaemonSetRoutes, from the informer;
    the cache already holds the new object)."""

    daemonset: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PodCreateFailed:
    """The DaemonSet controller could not create a pod of one of the kernel actor's DaemonSets
    (its `FailedCreate` Event: PodSecurity, SCC, ResourceQuota ...)."""

    daemonset: str
    uid: str
    message: str


@dataclass(frozen=True, slots=True)
class ImagePullFailed:
    """A module-loader pod of the kernel actor cannot pull `image` (told by DaemonSetRoutes, from
    the loader pod informer)."""

    image: str


@dataclass(frozen=True, slots=True)
class LoaderPodTrouble:
    """A module-loader pod of the kernel actor cannot run, or runs again (`trouble` None): told
    by DaemonSetRoutes only when what `ooto.domain.loader_health.pod_trouble` says of it changes."""

    uid: str
    trouble: PodTrouble | None


@dataclass(frozen=True, slots=True)
class LoaderPodObserved:
    """A module-loader pod of the Module changed (told by PodRoutes to its RolloutActor)."""

    type: EventType
    pod: Mapping[str, Any]
    seen: float = 0.0
    """time.monotonic() when the informer received the event (the rollout's reaction time)."""


@dataclass(frozen=True, slots=True)
class BuildObserved:
    """A build object (Job or Build) changed; the root tells every supervisor of its namespace."""

    type: EventType
    build: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PreflightObserved:
    """A PreflightValidation was added, changed or deleted (told to the OperatorRoot)."""

    type: EventType
    validation: Mapping[str, Any]


# --- between actors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A supervisor asks the NodeTracker for the kernels of the nodes matching `selector`."""

    key: str
    selector: Selector
    subscriber: Any  # pykka.ActorRef; Any keeps pykka's untyped API out of this module


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    key: str


@dataclass(frozen=True, slots=True)
class NodesChanged:
    """The kernels of a supervisor's selected nodes, in full (not a delta: easy to reason about)."""

    kernels: KernelNodes
    unavailable: frozenset[str] = frozenset()
    """Selected nodes (in `kernels`) that are NotReady or unschedulable."""
    invalid_kernel: frozenset[str] = frozenset()
    """Selected nodes whose kernel string ooto refuses (`valid_kernel`): in no kernel's list."""


@dataclass(frozen=True, slots=True)
class ModuleChanged:
    """A newer view of the supervisor's Module (spec, generation or status)."""

    module: Module


@dataclass(frozen=True, slots=True)
class PreflightChanged:
    """A newer view of a PreflightActor's PreflightValidation."""

    validation: PreflightValidation


@dataclass(frozen=True, slots=True)
class ModuleUnreadable:
    """The API server stored a Module ooto cannot parse (its schema is looser than our models)."""

    raw: Mapping[str, Any]
    error: str


@dataclass(frozen=True, slots=True)
class PlanKernel:
    """The supervisor's current intent for one kernel actor."""

    module: Module
    plan: KernelPlan
    nodes: frozenset[str]
    unavailable: frozenset[str] = frozenset()
    """Those of `nodes` that are NotReady or unschedulable: counted, not waited for."""


@dataclass(frozen=True, slots=True)
class Retire:
    """The kernel left the Module's nodes: delete this kernel's objects, then stop."""


@dataclass(frozen=True, slots=True)
class KernelReport:
    """A kernel actor's status, folded by its supervisor into the Module status."""

    kernel: str
    status: KernelStatus
    reason: str = ""
    """Condition reason when the kernel is not Ready (BuildFailed, ImageCheckFailed, ...)."""


@dataclass(frozen=True, slots=True)
class KernelRetired:
    kernel: str


@dataclass(frozen=True, slots=True)
class ChildDied:
    """An actor stopped on a failure its crash guard could not absorb; told to its parent, which
    replaces it (with backoff) or reports it. `key` names the child (kernel, Module key)."""

    key: str
    ref: Any  # pykka.ActorRef of the dead child: a newer child under the same key is not it
    error: str


@dataclass(frozen=True, slots=True)
class ModuleGone:
    """The Module is deleted: its supervisor stops next. Told first, so that the RolloutActor
    stops acting at once (the NodeCleaner takes its labels, records and cordons off the Nodes)."""


@dataclass(frozen=True, slots=True)
class SweepLeftovers:
    """To the NodeCleaner: look at every Node for what deleted Modules left (caches synced, or
    a Module was deleted)."""


@dataclass(frozen=True, slots=True)
class RolloutTargets:
    """The supervisor's intent for its RolloutActor: per kernel label, the load digest of the
    plan, the selected nodes running that kernel, and the name of its loader DaemonSet (whose
    template's digest, once written, is the desired one: it is what new pods get)."""

    module: Module
    kernels: Mapping[str, tuple[str, frozenset[str], str]]


@dataclass(frozen=True, slots=True)
class EvictionBlocked:
    """An eviction on a node being upgraded was refused (a PodDisruptionBudget); it is retried."""

    node: str
    why: str


@dataclass(frozen=True, slots=True)
class RolloutReport:
    """The RolloutActor's view, folded by the supervisor into the Module status."""

    ready_label: str
    upgrade: Mapping[str, Any]
    """status.upgrade (digest and node counts), camelCase."""
    failed: tuple[tuple[str, str], ...] = ()
    """(node, cause) of nodes whose upgrade failed in the current generation."""
    waiting: tuple[tuple[str, str], ...] = ()
    """(node, why) of nodes mid-upgrade, e.g. evictions refused by a PodDisruptionBudget."""
    generation: int = 0
    """The Module generation this report judged: its slots are granted already."""


@dataclass(frozen=True, slots=True)
class BuildFinished:
    """A build for this kernel's image completed (observed on its Job or Build)."""

    image: str
    succeeded: bool
    message: str = ""


# --- from the bridge -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IoDone:
    """A coroutine an actor asked the bridge to run has finished (result or error)."""

    tag: Any
    """What the actor handed to `Bridge.run`: a tuple, or a frozen dataclass (a typed reply tag)."""
    result: Any = None
    error: BaseException | None = None
    started: float = 0.0
    """time.monotonic() when the loop started the coroutine (0 when it never started)."""
    ended: float = 0.0
    """time.monotonic() when it ended on the loop, before this message was queued."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer an actor set; `generation` lets the actor drop ticks it no longer wants."""

    name: str
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Flush:
    """Sent by an actor to itself: work queued behind the messages already in its mailbox."""

    name: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
