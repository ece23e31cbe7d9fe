"""Every reason a Module's status or an ooto Event can carry, in one place.

The reason table of docs/operations.md ("Troubleshooting by condition reason") is checked
against these enums both ways (tests/unit/test_docs_truth.py), and a misspelt reason is an
AttributeError instead of a new, undocumented reason. Members are `str`s, so comparing them with
a reason read back from the API server works as before.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reasons of the Ready and Progressing conditions and of `status.kernels[].reason`."""

    INVALID_SPEC = "InvalidSpec"
    NO_MATCHING_MAPPING = "NoMatchingMapping"
    RESOLVING = "Resolving"
    IMAGE_CHECK_FAILED = "ImageCheckFailed"
    BUILDING = "Building"
    BUILD_FAILED = "BuildFailed"
    SIGNING = "Signing"
    SIGN_FAILED = "SignFailed"
    SIGN_SECRET_INVALID = "SignSecretInvalid"
    SIGN_CONFLICT = "SignConflict"
    """The signed image is signed, with another certificate, for another Module that still signs
    it: not signed again (the two would take turns); checked again after backoff (sign_flow.py)."""
    SIGN_COLLISION = "SignCollision"
    """Two kernels of one Module resolve to one signed image with two sign identities: the
    later one waits, signing nothing (ooto/domain/sign_collisions.py)."""
    IMAGE_MISSING = "ImageMissing"
    APPLY_FAILED = "ApplyFailed"
    DAEMONSET_CONFLICT = "DaemonSetConflict"
    POD_CREATE_FAILED = "PodCreateFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    """Module-loader pods cannot pull their image (ooto/domain/loader_health.py)."""
    LOADER_CRASHING = "LoaderCrashing"
    """Module-loader containers crash-loop: the module does not load (domain/loader_health.py)."""
    RENDER_FAILED = "RenderFailed"
    ACTOR_FAILED = "ActorFailed"
    INTERNAL_ERROR = "InternalError"
    """A kernel actor's handler raised; the crash guard caught it and retries with backoff."""
    DEGRADED = "Degraded"
    """Fallback for a failed kernel that reported no reason of its own."""
    ROLLING = "Rolling"
    UPGRADING = "Upgrading"
    """Nodes are being upgraded to a new load digest, upgradePolicy.maxParallel at a time."""
    UPGRADE_FAILED = "UpgradeFailed"
    """A node's upgrade failed and the rollout stopped (also a Warning Event on the Module and
    the Node)."""
    CONVERGED = "Converged"
    NO_NODES_SELECTED = "NoNodesSelected"
    ALL_KERNELS_READY = "AllKernelsReady"
    NO_UNLOAD_HOOK = "NoUnloadHook"
    """Reason (and type) of a warning condition of its own; Ready is not affected."""


class EventReason(StrEnum):
    """Reasons that appear only on Warning Events (besides the Reasons above, which the
    supervisor and kernel actors also record as Events when a kernel fails)."""

    DELETE_FAILED = "DeleteFailed"
    """On the Module: a retired kernel's DaemonSet could not be deleted (retried)."""
    INVALID_KERNEL = "InvalidKernel"
    """On the Node: its reported kernel string is refused."""
    UNDECODABLE_OBJECT = "UndecodableObject"
    """On the object: an informer could not decode this version of it."""
    UPGRADE_RECORD_EDITED = "UpgradeRecordEdited"
    """On the Node: its upgrade record for a Module is not the one ooto holds (edited by hand);
    ooto wrote back its own, or removed it."""
