"""PreflightValidation v1alpha1: "will every Module have a working image for kernel X?", asked
before the nodes are upgraded. Cluster-scoped: one question covers every namespace.

Field docstrings become the CRD's descriptions (`kubectl explain preflightvalidation.spec`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ooto.domain.api.module import ApiModel, ConditionStatus, ObjectMeta

PREFLIGHT_KIND = "PreflightValidation"
PREFLIGHT_PLURAL = "preflightvalidations"
MODULE_KEY_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
ModuleKey = Annotated[str, Field(pattern=MODULE_KEY_PATTERN, max_length=317)]
KernelVersion = Annotated[str, Field(min_length=1, max_length=256)]
MAX_KERNELS = 64
"""A question about more kernels than this is a mistake (each kernel costs a registry check per
Module); the schema refuses it."""


class Verdict(StrEnum):
    """What preflight found for one (Module, kernel)."""

    READY = "Ready"
    """The registry has the image: nodes can load the module as soon as they run the kernel."""
    WILL_BUILD = "WillBuild"
    """The image is missing and the mapping builds it: the upgrade waits for a build."""
    BUILT = "Built"
    """The image was missing and preflight built and pushed it (pushBuiltImages)."""
    NO_MAPPING = "NoMapping"
    """No kernelMappings entry matches the kernel."""
    INVALID_SPEC = "InvalidSpec"
    """The matching mapping cannot be used (bad regexp, unknown variable, invalid image)."""
    IMAGE_MISSING = "ImageMissing"
    """The registry answered that the image does not exist and the mapping has no build."""
    IMAGE_CHECK_FAILED = "ImageCheckFailed"
    """The registry could not be asked (unreachable, credentials rejected, Secret missing)."""
    BUILD_FAILED = "BuildFailed"
    """Preflight's build failed, or finished without the image in the registry."""


READY_VERDICTS = frozenset({Verdict.READY, Verdict.WILL_BUILD, Verdict.BUILT})
"""Verdicts under which an upgrade to the kernel works (WillBuild: after a build)."""


class PreflightSpec(ApiModel):
    kernel_versions: list[KernelVersion] = Field(min_length=1, max_length=MAX_KERNELS)
    """Kernel version strings the nodes will run, exactly as a Node will report them in
    status.nodeInfo.kernelVersion (e.g. 6.8.0-31-generic)."""
    push_built_images: bool = False
    """Build and push missing images now, so the upgrade finds them ready. Builds run in each
    Module's namespace, owned by this PreflightValidation (deleting it deletes them)."""
    modules: list[ModuleKey] = Field(default_factory=list)
    """Modules to check, as namespace/name; empty means every Module."""


class PreflightModuleStatus(ApiModel):
    module: str
    """namespace/name of the Module."""
    kernel: str
    """One of spec.kernelVersions."""
    verdict: Verdict | None = None
    """Ready, WillBuild, Built, NoMapping, InvalidSpec, ImageMissing, ImageCheckFailed or
    BuildFailed; absent while it is being decided."""
    image: str = ""
    """The resolved module image for this kernel (empty without a usable mapping)."""
    message: str = ""
    """Why, in a sentence (the registry's answer, the spec problem, the build's outcome)."""


class PreflightCondition(ApiModel):
    type: str
    """Complete."""
    status: ConditionStatus
    """True once every (Module, kernel) has a verdict."""
    reason: str = ""
    """InProgress, AllReady or NotReady."""
    message: str = ""
    """How many entries are decided, or not ready."""
    observed_generation: int | None = None
    """The PreflightValidation generation this condition answers."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""


class PreflightStatus(ApiModel):
    modules: list[PreflightModuleStatus] = Field(default_factory=list)
    """One entry per (Module, kernel), sorted by Module then kernel."""
    conditions: list[PreflightCondition] = Field(default_factory=list)
    """Complete: True once every entry has a verdict (reason AllReady or NotReady)."""
    observed_generation: int | None = None
    """The generation of the spec these results answer."""
    total: int = 0
    """Number of (Module, kernel) entries."""
    decided: int = 0
    """Entries with a verdict."""
    ready: int = 0
    """Entries whose verdict is Ready, WillBuild or Built."""


class PreflightValidation(BaseModel):
    """A pre-upgrade check: for each Module and each of spec.kernelVersions, does a module image
    exist (or will one be built)? Never touches nodes or module DaemonSets."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["ooto.sigs.k8s.io/v1alpha1"] = "ooto.sigs.k8s.io/v1alpha1"
    kind: Literal["PreflightValidation"] = "PreflightValidation"
    metadata: ObjectMeta
    spec: PreflightSpec
    status: dict[str, Any] | None = None
    """Kept raw, like Module's: a status someone else wrote badly must not make it unreadable."""

    def owner_reference(self) -> dict[str, Any]:
        """Makes the garbage collector delete preflight's builds with it. No blockOwnerDeletion:
        setting it needs update on the owner's finalizers where OwnerReferencesPermissionEnforcement
        runs (OpenShift), and nothing must wait for a build to go."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.metadata.name,
            "uid": self.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
