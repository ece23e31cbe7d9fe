"""Module v1alpha1: what a cluster admin asks for, and what ooto reports back.

Field docstrings become the CRD's descriptions, so `kubectl explain` reads them: write them for the
cluster admin. Fields typed `K8sContainer`, `K8sVolume` or `K8sToleration` stay plain dicts here;
the CRD generator substitutes the real core/v1 schemas for them (see `ooto.domain.api.crd`), so
the API
server rejects a malformed container before ooto ever sees it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ooto.domain.upgrade.selector import parse_selector

GROUP = "ooto.sigs.k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Module"
PLURAL = "modules"

# Markers read by the CRD generator: the value names a core/v1 definition in the upstream OpenAPI.
K8S_REF = "x-ooto-k8s-ref"
K8sContainer = Annotated[
    dict[str, Any], Field(json_schema_extra={K8S_REF: "io.k8s.api.core.v1.Container"})
]
K8sVolume = Annotated[
    dict[str, Any], Field(json_schema_extra={K8S_REF: "io.k8s.api.core.v1.Volume"})
]
K8sToleration = Annotated[
    dict[str, Any], Field(json_schema_extra={K8S_REF: "io.k8s.api.core.v1.Toleration"})
]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields rejected (the schema prunes
    them)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class BuildArg(ApiModel):
    name: str = Field(min_length=1)
    """Name of the build argument (a Dockerfile `ARG`)."""
    value: str = ""
    """Value; `${KERNEL_FULL_VERSION}` and the other variables are substituted per kernel."""


class RegistryAccess(ApiModel):
    insecure: bool = False
    """Talk to this registry over plain HTTP or without verifying its TLS certificate."""


class GitSource(ApiModel):
    url: str = Field(min_length=1)
    """URL of a Git repository holding the build context (https://, git://, or ssh)."""
    ref: str = ""
    """Branch, tag or commit to build; variables are substituted. Empty means the default branch."""
    context_dir: str = ""
    """Directory inside the repository used as the build context. Empty means the repository
    root."""
    dockerfile_path: str = "Dockerfile"
    """Path of the Dockerfile, relative to contextDir."""


class Build(ApiModel):
    """How to build the image when the registry does not have it (exactly one of dockerfile,
    git)."""

    build_args: list[BuildArg] = Field(default_factory=list)
    """Extra build arguments. Every build also receives KERNEL_FULL_VERSION, KERNEL_VERSION,
    KERNEL_XYZ, KERNEL_X, KERNEL_Y, KERNEL_Z, MOD_NAME, MOD_NAMESPACE and the regexp's named
    groups."""
    pull: RegistryAccess = Field(default_factory=RegistryAccess)
    """How to reach the registry holding the base images."""
    push: RegistryAccess = Field(default_factory=RegistryAccess)
    """How to reach the registry the built image is pushed to."""
    dockerfile: str | None = None
    """Inline Dockerfile. It is never substituted: declare `ARG KERNEL_FULL_VERSION` and use it."""
    git: GitSource | None = None
    """Build from a Git repository that holds a Dockerfile, instead of an inline Dockerfile."""

    @model_validator(mode="after")
    def _one_source(self) -> Build:
        if (self.dockerfile is None) == (self.git is None):
            raise ValueError("exactly one of dockerfile or git must be set")
        return self


class KeySecretRef(ApiModel):
    name: str = Field(min_length=1)
    """Name of a Secret in the Module's namespace holding the PEM private key that signs."""
    key: str = Field(default="key", min_length=1)
    """Data key of the private key in that Secret."""


class CertSecretRef(ApiModel):
    name: str = Field(min_length=1)
    """Name of a Secret in the Module's namespace holding the X.509 certificate (PEM or DER)
    enrolled on the nodes (for example with mokutil)."""
    key: str = Field(default="cert", min_length=1)
    """Data key of the certificate in that Secret."""


class HashAlgorithm(StrEnum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


class Sign(ApiModel):
    """Sign the kernel modules in the image for Secure Boot (sign-file in a sign Job)."""

    key_secret: KeySecretRef
    """Secret with the signing key; it is mounted into the sign Job only, never copied."""
    cert_secret: CertSecretRef
    """Secret with the certificate; its SHA-256 fingerprint labels the signed image
    (ooto.sigs.k8s.io/signed-by), so a new certificate means a new signature."""
    files_to_sign: list[Annotated[str, Field(min_length=2)]] = Field(min_length=1)
    """Absolute paths or globs (*, ?, [...]) of the files to sign inside the image, e.g.
    `/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko`; variables are substituted."""
    unsigned_image: str | None = Field(default=None, min_length=1)
    """Image holding the unsigned modules. Unset with `build`: the build pushes to the
    containerImage's tag plus `-unsigned`; unset without `build`: required."""
    hash_algorithm: HashAlgorithm = HashAlgorithm.SHA256
    """Digest used by sign-file: sha256, sha384 or sha512."""
    pull: RegistryAccess | None = None
    """How to reach the registry of the unsigned image; unset: the mapping's build.pull."""
    push: RegistryAccess | None = None
    """How to reach the registry the signed image goes to; unset: the mapping's build.push."""


class KernelMapping(ApiModel):
    """Which image holds the module for the kernels this entry matches (first match wins)."""

    literal: str | None = Field(default=None, min_length=1)
    """Exact kernel version string, as in a Node's status.nodeInfo.kernelVersion."""
    regexp: str | None = Field(default=None, min_length=1)
    """RE2 regular expression searched in the kernel version (unanchored, as in Go; use ^ and $).
    Named groups such as (?P<flavor>...) become variables."""
    container_image: str = Field(min_length=1)
    """Image holding the module for a matched kernel, e.g.
    `quay.io/vendor/mod:${KERNEL_FULL_VERSION}`.
    Substituted values are made tag-safe (characters outside [A-Za-z0-9_.-] become _)."""
    build: Build | None = None
    """Build the image in the cluster when the registry does not have it."""
    sign: Sign | None = None
    """Sign the modules for Secure Boot; overrides the Module's spec.sign for this mapping."""

    @model_validator(mode="after")
    def _one_matcher(self) -> KernelMapping:
        if (self.literal is None) == (self.regexp is None):
            raise ValueError("exactly one of literal or regexp must be set")
        return self


class ImageRepoSecret(ApiModel):
    name: str = Field(min_length=1)
    """Name of a kubernetes.io/dockerconfigjson Secret in the Module's namespace, used to check,
    pull and push images."""


class UpgradeMode(StrEnum):
    AUTO = "Auto"
    MANUAL = "Manual"


PERCENT = r"^(100|[1-9][0-9]?)%$"


class PodDeletion(ApiModel):
    """The pods that use the module on a node, evicted before its loader pod is replaced."""

    pod_selector: str = ""
    """Label selector (as in `kubectl get -l`), e.g. `app=uses-my-driver`."""
    resource_names: list[str] = Field(default_factory=list)
    """Pods requesting any of these extended resources (e.g. `example.com/fpga`) are evicted."""
    timeout_seconds: int = Field(default=300, ge=1)
    """How long evictions may be blocked (PodDisruptionBudgets) or pods take to go before the
    node's upgrade fails."""


class Drain(ApiModel):
    """Evict every pod but DaemonSet pods (limited to podSelector when set) before the upgrade."""

    enable: bool = False
    """Drain the node before its loader pod is replaced."""
    pod_selector: str = ""
    """Limit the drain to pods matching this label selector. Empty: all pods."""
    delete_empty_dir: bool = False
    """Also evict pods with emptyDir volumes (their data is lost). Otherwise such a pod fails the
    node's upgrade."""
    timeout_seconds: int = Field(default=600, ge=1)
    """How long the drain may take before the node's upgrade fails."""


class UpgradePolicy(ApiModel):
    """How ooto replaces module-loader pods when what they load changes (the load digest)."""

    mode: UpgradeMode = UpgradeMode.AUTO
    """Auto: ooto upgrades nodes one slot at a time. Manual: ooto never replaces a running loader
    pod (admins delete pods themselves; ready labels still follow)."""
    max_parallel: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=PERCENT)] = 1
    """Nodes upgrading at once for this Module, across all its kernels: a number, or a
    percentage of the Module's nodes such as "10%" (rounded up, at least 1)."""
    ready_timeout_seconds: int = Field(default=600, ge=1)
    """A new loader pod not Ready this long after the old one went: the node's upgrade failed."""
    pod_deletion: PodDeletion | None = None
    """Evict the pods that use the module (Eviction API, PodDisruptionBudgets respected)."""
    drain: Drain | None = None
    """Optionally evict all non-DaemonSet pods of the node."""

    @field_validator("pod_deletion", "drain")
    @classmethod
    def _selectors_parse(cls, value: PodDeletion | Drain | None) -> PodDeletion | Drain | None:
        if value is not None:
            parse_selector(value.pod_selector)  # raises ValueError with the reason
        return value


MODULE_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
MODULE_NAME_MAX = 55
"""A kernel module name as modprobe takes it (the kernel allows 55 characters; `-` and `_` are
the same to modprobe). Nothing else: these names end up in the loader's shell script."""
MODULE_PARAMETER_PATTERN = r"^[A-Za-z0-9_-]+(=[ !#%&(-~]*)?$"
"""`name` or `name=value`, printable ASCII without quote characters (modprobe quotes a value with
spaces itself; a quote would change how the kernel splits the parameters) and without `$` (the
kubelet expands `$(NAME)` and `$$` in a container's command)."""
IMAGE_PATH_PATTERN = r"^/([A-Za-z0-9._+-]+/?)*$"
"""An absolute path in the module image: letters, digits and `._+-` between slashes."""

ModuleName = Annotated[
    str, Field(min_length=1, max_length=MODULE_NAME_MAX, pattern=MODULE_NAME_PATTERN)
]
ModuleParameter = Annotated[
    str, Field(min_length=1, max_length=1024, pattern=MODULE_PARAMETER_PATTERN)
]
ImagePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=IMAGE_PATH_PATTERN)]


class Modprobe(ApiModel):
    """Load the module with modprobe: ooto writes the loader's command and its preStop hook.

    The loader mounts the node's /lib/modules and /usr/lib/modules read-only over the image's, so
    the image keeps its modules under `<dirName>/lib/modules/<kernel>` (with the modules.dep that
    depmod writes there) and ooto runs `modprobe -d <dirName>`."""

    module_name: ModuleName
    """The module to load, e.g. `my_driver` (letters, digits, `_` and `-` only)."""
    dir_name: ImagePath = "/opt"
    """Root of the module tree in the image: modules live under <dirName>/lib/modules/<kernel>.
    Not `/` or `/usr`: the node's module directories are mounted over those."""
    parameters: list[ModuleParameter] = Field(default_factory=list, max_length=64)
    """Module parameters, `name=value` each, given to modprobe when moduleName is loaded. Changing
    them changes the load digest: the module is reloaded."""
    modules_loading_order: list[ModuleName] = Field(default_factory=list, max_length=32)
    """Modules that depend on each other without depmod knowing (soft dependencies), as in KMM:
    moduleName first, then the module it needs loaded before it, and so on. ooto loads them from
    the last entry to the first and unloads them in list order (moduleName first)."""
    in_tree_modules_to_remove: list[ModuleName] = Field(default_factory=list, max_length=32)
    """Modules of the node's own kernel to unload before loading (such as nouveau before a GPU
    driver); a module that is not loaded is skipped. Loading fails while one is in use."""
    firmware_path: ImagePath | None = None
    """Directory in the image whose content is copied into the node's firmware directory (an
    operator setting, /lib/firmware by default) before loading, and removed after unloading."""


class ModuleSpec(ApiModel):
    selector: dict[str, str] = Field(default_factory=dict)
    """Node labels a node must carry to get the module. Values are label text: quote `"true"`
    (an unquoted number is read as its text)."""
    kernel_mappings: list[KernelMapping] = Field(min_length=1)
    """Kernel-to-image mappings, tried in order; the first that matches a node's kernel wins."""
    module_loader: K8sContainer
    """Container that loads the module (name and image are set by ooto). It gets CAP_SYS_MODULE,
    never privileged, and /lib/modules and /usr/lib/modules read-only. With `modprobe`, ooto
    writes its command and preStop hook; without it, give a command and a preStop hook that
    unloads the module (ooto warns with the condition NoUnloadHook when there is none)."""
    modprobe: Modprobe | None = None
    """Load, order and unload the module with modprobe; ooto writes the loader's command and
    preStop hook (a command, args or preStop of your own is then an error)."""
    device_plugin: K8sContainer | None = None
    """Optional device-plugin container (name and image kept as given); it runs privileged with
    /var/lib/kubelet/device-plugins."""
    additional_volumes: list[K8sVolume] = Field(default_factory=list)
    """Volumes added to every pod ooto creates for this Module."""
    image_repo_secret: ImageRepoSecret | None = None
    """Registry credentials used to check, pull and push images."""
    sign: Sign | None = None
    """Sign the modules of every mapping for Secure Boot (a mapping's own `sign` wins)."""
    tolerations: list[K8sToleration] = Field(default_factory=list)
    """Tolerations for every pod ooto creates (module loader, device plugin, builds)."""
    priority_class_name: str = "system-node-critical"
    """Priority class of the pods ooto creates."""
    service_account_name: str | None = None
    """Service account of the pods ooto creates."""
    upgrade_policy: UpgradePolicy = Field(default_factory=UpgradePolicy)
    """How module-loader pods are replaced, node by node, when what they load changes."""

    @field_validator("selector", mode="before")
    @classmethod
    def _selector_values_as_label_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: _label_text(item) for key, item in value.items()}


def _label_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class ConditionType(StrEnum):
    PROGRESSING = "Progressing"
    READY = "Ready"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    type: str
    """Progressing, Ready, or a warning that is True while it applies (NoUnloadHook)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason, e.g. InvalidSpec, NoMatchingMapping, BuildFailed, Rolling,
    AllKernelsReady."""
    message: str = ""
    """Human-readable detail."""
    observed_generation: int | None = None
    """The Module generation this condition was computed from."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""


class BuildPhase(StrEnum):
    NOT_NEEDED = "NotNeeded"
    CHECKING = "Checking"
    BUILDING = "Building"
    BUILT = "Built"
    FAILED = "Failed"
    SIGNING = "Signing"
    SIGNED = "Signed"
    SIGN_FAILED = "SignFailed"


class KernelPhase(StrEnum):
    RESOLVING = "Resolving"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    INVALID = "Invalid"


class KernelStatus(ApiModel):
    kernel: str
    """Kernel version string of the nodes this entry covers."""
    image: str = ""
    """Resolved module image for this kernel."""
    phase: KernelPhase = KernelPhase.RESOLVING
    """Resolving, Building, Deploying, Ready, Degraded or Invalid."""
    build: BuildPhase = BuildPhase.NOT_NEEDED
    """NotNeeded, Checking, Building, Built, Failed, Signing, Signed or SignFailed."""
    nodes_desired: int = 0
    """Nodes of this kernel that should run the module loader."""
    nodes_ready: int = 0
    """Nodes of this kernel whose module-loader pod is ready."""
    nodes_unavailable: int = 0
    """Nodes of this kernel that are NotReady or unschedulable: not waited for."""
    reason: str = ""
    """Why this kernel is not Ready, as a condition reason (RenderFailed, PodCreateFailed,
    NoMatchingMapping, ...)."""
    message: str = ""
    """Why this kernel is not Ready, when it is not."""


class UpgradeStatus(ApiModel):
    """Where the Module's node-by-node upgrade stands (upgradePolicy)."""

    digest: str = ""
    """Load digest the nodes are being moved to (one hash over every kernel's load digest)."""
    nodes_up_to_date: int = 0
    """Nodes whose loader pod runs the desired load digest."""
    nodes_upgrading: int = 0
    """Nodes between "ready label off" and "ready label back" (at most maxParallel)."""
    nodes_failed: int = 0
    """Nodes whose upgrade failed (see the Progressing condition and the Node's Events)."""
    nodes_pending: int = 0
    """Nodes waiting for their turn (or held back: skip label, Manual mode, a failure)."""


class ModuleStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list)
    """Progressing and Ready; NoUnloadHook (True) while nothing unloads the module."""
    kernels: list[KernelStatus] = Field(default_factory=list)
    """One entry per kernel found on the selected nodes, sorted by kernel."""
    observed_generation: int | None = None
    """The Module generation the operator last acted on."""
    kernel_count: int = 0
    """Number of distinct kernels on the selected nodes."""
    nodes_desired: int = 0
    """Selected nodes, all kernels together."""
    nodes_ready: int = 0
    """Selected nodes whose module-loader pod is ready."""
    nodes_unavailable: int = 0
    """Selected nodes that are NotReady or unschedulable: left out of Ready's requirement."""
    nodes_invalid_kernel: int = 0
    """Selected nodes whose reported kernel string is refused (not `[A-Za-z0-9._+~-]{1,128}`):
    no module is placed there."""
    ready_label: str = ""
    """The Node label key that is "true" where this Module is loaded: select on it in the
    nodeSelector or affinity of workloads that need the module."""
    upgrade: UpgradeStatus | None = None
    """Node-by-node upgrade progress, when the Module has nodes."""


class ObjectMeta(BaseModel):
    """The part of metadata ooto reads; everything else passes through untouched."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None


class Module(BaseModel):
    """A kernel module to load on every selected node, whatever kernel each node runs."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["ooto.sigs.k8s.io/v1alpha1"] = "ooto.sigs.k8s.io/v1alpha1"
    kind: Literal["Module"] = "Module"
    metadata: ObjectMeta
    spec: ModuleSpec
    status: dict[str, Any] | None = None
    """Kept raw: a status someone else wrote badly must never make the Module unreadable."""

    def object_reference(self) -> dict[str, Any]:
        """The Module as an Event's involvedObject (the shape an object read from the API has)."""
        meta = self.metadata
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
        }

    @property
    def key(self) -> str:
        """namespace/name, the identity actors use."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
