"""What every build backend shares: the protocol, its value types, our labels on build objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ooto.domain.api.module import Module
from ooto.domain.kernels import BuildPlan, KernelPlan, build_job_name, kernel_hash
from ooto.domain.render import (
    LABEL_MANAGED_BY,
    LABEL_MODULE,
    LABEL_ROLE,
    MANAGED_BY,
    owner_reference,
)
from ooto.domain.signing import SIGN_CERT_DIR, SIGN_KEY_DIR, SignPlan
from ooto.kube.resources import Resource

LABEL_IMAGE_HASH = "ooto.sigs.k8s.io/image-hash"
IMAGE_ANNOTATION = "ooto.sigs.k8s.io/image"
ROLE_BUILD = "build"
BUILD_SELECTOR = f"{LABEL_ROLE}={ROLE_BUILD},{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Label selector of every object a backend creates: give it to the build informer."""

Phase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class BuildPodLimits:
    """What every build pod may use, whichever builder runs in it (documented in operations.md:
    a ResourceQuota in a Module's namespace must leave room for them)."""

    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    active_deadline_seconds: int = 3600

    def resources(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class BuildRef:
    """The object that carries one build: watch `resource` for `namespace`/`name`."""

    resource: Resource
    namespace: str
    name: str
    image: str
    adopted: bool
    """True when the build was already running (started by another kernel, Module or operator)."""


@dataclass(frozen=True)
class BuildObservation:
    """A build object's state, from a pure reading of it (Pending counts as Running)."""

    namespace: str
    name: str
    module: str
    image: str
    phase: Phase
    message: str

    @property
    def finished(self) -> bool:
        return self.phase != "Running"


class BuildStartError(Exception):
    """A build could not be started; the message is safe for a condition or an Event."""


class BuildBackend(Protocol):
    """Builds an image in the cluster and pushes it. One build per (namespace, image) at a time.

    `start` is idempotent: a build of the same image that is still running is adopted, a finished
    one (failed, or succeeded but the image is still missing) is replaced. Completion arrives
    through an informer on `resource` with `BUILD_SELECTOR`, read with `observe`.
    """

    resource: Resource

    def observe(self, obj: Mapping[str, Any]) -> BuildObservation: ...

    async def start(
        self, module: Module, plan: KernelPlan, *, owner: Mapping[str, Any] | None = None
    ) -> BuildRef:
        """`owner`: the ownerReference of the build objects (default: the Module)."""

    async def log_tail(self, namespace: str, name: str, lines: int = 20) -> str: ...

    async def delete(self, namespace: str, name: str) -> None: ...


def build_name(plan: KernelPlan) -> str:
    """The deterministic name of the Job (or BuildConfig) that builds the plan's image."""
    return build_job_name(plan.module_name, plan_build(plan).image)


def build_labels(module: Module, image: str) -> dict[str, str]:
    """No kernel label: one build serves every kernel whose mapping resolves to the image."""
    return {
        LABEL_MODULE: module.metadata.name,
        LABEL_ROLE: ROLE_BUILD,
        LABEL_IMAGE_HASH: kernel_hash(image),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def build_metadata(module: Module, plan: KernelPlan, name: str) -> dict[str, Any]:
    image = plan_build(plan).image
    return {
        "name": name,
        "namespace": module.metadata.namespace,
        "labels": build_labels(module, image),
        "annotations": {IMAGE_ANNOTATION: image},
        "ownerReferences": [owner_reference(module)],
    }


def registry_secret(module: Module) -> str | None:
    secret = module.spec.image_repo_secret
    return secret.name if secret is not None else None


def plan_build(plan: KernelPlan) -> BuildPlan:
    """The plan's BuildPlan; ValueError for a mapping without `build` (a caller's mistake)."""
    if plan.build is None:
        raise ValueError(f"kernel {plan.kernel}: its mapping has no build")
    return plan.build


def sign_of_build(plan: KernelPlan) -> SignPlan | None:
    """The plan's SignPlan when its build is the sign build (it builds the signed image)."""
    build, sign = plan.build, plan.sign
    return sign if sign is not None and build is not None and build.image == plan.image else None


def sign_secret_volumes(sign: SignPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes) that put the key and certificate Secrets, one item each, at
    MOUNTED_KEY and MOUNTED_CERT, read-only: the pod-side half of every sign build."""
    mounts, volumes = [], []
    for volume, secret, key, path in (
        ("sign-key", sign.key_secret, sign.key_key, SIGN_KEY_DIR),
        ("sign-cert", sign.cert_secret, sign.cert_key, SIGN_CERT_DIR),
    ):
        mounts.append({"name": volume, "mountPath": path, "readOnly": True})
        items = [{"key": key, "path": volume}]
        volumes.append({"name": volume, "secret": {"secretName": secret, "items": items}})
    return mounts, volumes


def meta_of(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(namespace, name, module, image) of a build object we created."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(labels.get(LABEL_MODULE) or ""),
        str(annotations.get(IMAGE_ANNOTATION) or ""),
    )


def owned_by_other(manifest: dict[str, Any], owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """`manifest` with `owner` as its only ownerReference (a PreflightValidation's builds go with
    it, not with the Module); unchanged when `owner` is None."""
    if owner is None:
        return manifest
    return {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [dict(owner)]}}


def sorted_keys(value: Any) -> Any:
    """Keys sorted at every level (lists keep their order): byte-identical output."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def termination_message(pod: Mapping[str, Any]) -> str:
    """The message of the pod's first failed container (init containers first), or ""."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") not in (None, 0) and terminated.get("message"):
                return str(terminated["message"])
    return ""


def last_lines(text: str, lines: int) -> str:
    """The last `lines` non-trailing lines of `text`."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def tail_message(head: str, tail: str, limit: int) -> str:
    """`head`, a newline and as much of the END of `tail` as fits in `limit` characters: a failed
    build's error is at the end of its log, so that is what an Event must keep."""
    room = limit - len(head) - 1
    if room <= 0:
        return head[:limit]
    if len(tail) > room:
        tail = "..." + tail[len(tail) - room + 3 :]
    return f"{head}\n{tail}"
