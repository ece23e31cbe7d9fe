"""What actors need from the outside world, as Protocols.

The composition root (ooto/app.py) passes one object implementing `OperatorIO`; tests may pass
another. Methods returning coroutines are run through the Bridge; the others never block.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ooto.domain.api import Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.validation import ModulePolicy

Obj = Mapping[str, Any]
EventKind = Literal["Normal", "Warning"]


class ObjectStore(Protocol):
    """Read-only view of an informer's cache (controller-runtime's cached reads)."""

    def get(self, namespace: str, name: str) -> Obj | None: ...

    def list(self) -> Iterable[Obj]: ...


class ImageCheck(Protocol):
    @property
    def outcome(self) -> Literal["present", "missing", "unauthorized", "error"]: ...

    @property
    def message(self) -> str: ...

    @property
    def digest(self) -> str:
        """The manifest digest of a "present" image ("" when the registry gave none)."""


class SignatureCheck(ImageCheck, Protocol):
    @property
    def signed_by(self) -> str:
        """The signed-by label the image carries ("" when missing or unlabelled)."""

    @property
    def signed_for(self) -> str:
        """The signed-for label: the Module it was signed for ("" when missing or unlabelled)."""


class BuildStatus(Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def image(self) -> str: ...

    @property
    def phase(self) -> Literal["Running", "Succeeded", "Failed"]: ...

    @property
    def message(self) -> str: ...


class OperatorIO(Protocol):
    @property
    def daemonsets(self) -> ObjectStore: ...

    @property
    def builds(self) -> ObjectStore:
        """Build objects (Jobs or Builds); read-only views, like every informer cache here."""

    @property
    def modules(self) -> ObjectStore:
        """Modules (raw objects), for PreflightValidations."""

    @property
    def nodes(self) -> ObjectStore:
        """Nodes (cluster-scoped: namespace "")."""

    @property
    def loader_pods(self) -> ObjectStore:
        """ooto's module-loader pods, every Module's."""

    def patch_node(
        self,
        name: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        unschedulable: bool | None = None,
        resource_version: str = "",
    ) -> Coroutine[Any, Any, Obj]:
        """One merge patch of a Node's labels, annotations (None deletes) and cordon; with a
        `resource_version`, only if the Node is still at that version (else Conflict)."""

    def clear_node(
        self,
        node: str,
        departures_of: Callable[[list[Obj]], Any],
        on_blocked: Callable[[str], None],
    ) -> Coroutine[Any, Any, int]:
        """Evict the pods `departures_of` names, until none must leave (see ooto.kube.evictions);
        returns how many it evicted. Cancelled through its `Bridge.run` handle."""

    def apply_daemonset(
        self, desired: dict[str, Any], current: Obj | None
    ) -> Coroutine[Any, Any, Obj]:
        """Create (adopting on 409) or update a DaemonSet to `desired`; returns what is stored."""

    def delete_object(
        self, kind: str, namespace: str, name: str, uid: str
    ) -> Coroutine[Any, Any, None]:
        """Delete one of our objects (DaemonSet, build or pod), only if its uid still matches."""

    def patch_module_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> Coroutine[Any, Any, Obj]: ...

    def patch_node_kernel(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> Coroutine[Any, Any, Obj]:
        """The Node as stored after the patch (its resourceVersion tells later events apart)."""

    def check_image(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> Coroutine[Any, Any, ImageCheck]:
        """Does plan.image exist? `fresh` skips shared cached answers (after a build)."""

    def check_signature(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> Coroutine[Any, Any, SignatureCheck]:
        """Is plan.image present AND signed with the current certificate? CertificateError when
        the certificate Secret is missing or garbled."""

    def check_unsigned(
        self, module: Module, plan: KernelPlan, *, fresh: bool
    ) -> Coroutine[Any, Any, ImageCheck]:
        """Does plan.sign.unsigned_image exist?"""

    def current_fingerprint(self, module: Module, plan: KernelPlan) -> Coroutine[Any, Any, str]:
        """`sha256:<hex>` of the current signing certificate (CertificateError as above)."""

    def start_sign(self, module: Module, plan: KernelPlan) -> Coroutine[Any, Any, str]:
        """Start (or adopt) the sign build of plan.image; returns the build object's name."""

    def start_build(
        self, module: Module, plan: KernelPlan, owner: Obj | None = None
    ) -> Coroutine[Any, Any, str]:
        """Start (or adopt) the build of plan.image; returns the build object's name. `owner`:
        the build objects' ownerReference (default: the Module)."""

    def patch_preflight_status(
        self, name: str, status: dict[str, Any]
    ) -> Coroutine[Any, Any, Obj]: ...

    def build_observation(self, build: Obj) -> BuildStatus: ...

    def build_failure_detail(self, namespace: str, build_name: str) -> Coroutine[Any, Any, str]:
        """Last lines of a failed build's log (for its Event), or a reason why there are none."""

    def record_event(self, involved: Obj, kind: EventKind, reason: str, message: str) -> None:
        """Queue an Event; never blocks, never fails the caller."""


class ActorMetrics(Protocol):
    def kernel_phase_changed(self, old: str | None, new: str | None) -> None: ...

    def build_finished(self, succeeded: bool, seconds: float) -> None: ...

    def build_started(self) -> None: ...

    def sign_finished(self, succeeded: bool) -> None:
        """A sign Job finished (or could not start, or its Secrets were unusable)."""

    def module_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """A supervisor folded its Module's status (written or not): state and pod gauges."""

    def module_gone(self, namespace: str, name: str) -> None:
        """The Module's supervisor stopped (Module deleted, or leadership ended)."""

    def upgrade_nodes(self, namespace: str, name: str, counts: Mapping[str, int]) -> None:
        """Nodes of a Module per upgrade state (upToDate, upgrading, failed, pending)."""

    def node_upgraded(self, seconds: float) -> None:
        """One node's upgrade finished, from "label off" to "label back"."""

    def upgrade_step(self, step: str, seconds: float) -> None:
        """The rollout's own reaction time for `step` (actors/rollout_clock.py)."""


@dataclass(frozen=True)
class ActorSettings:
    status_debounce_seconds: float = 0.2
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    sign_recheck_seconds: float = 60.0
    firmware_host_dir: str = "/lib/firmware"
    module_policy: ModulePolicy = field(default_factory=ModulePolicy)


@dataclass(frozen=True)
class ActorContext:
    """What every actor of one operator shares: the bridge to the loop and its collaborators."""

    bridge: Any  # actors.bridge.Bridge (kept Any: the bridge imports pykka, ports stay plain)
    io: OperatorIO
    settings: ActorSettings
    metrics: ActorMetrics
    routes: Any  # actors.routes.DaemonSetRoutes: where the DaemonSet informer's events go
    rollouts: Any = None  # actors.routes.RolloutRoutes: loader-pod and Node events
