"""Manifests for one (Module, kernel): the module-loader and device-plugin DaemonSets.

Pure: no I/O. The same input gives byte-identical output (keys sorted at every level), and the
output depends only on the Module (the user's intent) and the kernel, so the spec-hash changes
only when one of them does. That is the KMM lesson: an operator upgrade must not re-render
templates and reload modules fleet-wide.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ooto.domain.api.module import API_VERSION, KIND, Module
from ooto.domain.kernels import KernelPlan, Role, daemonset_name, kernel_label_value, label_safe
from ooto.domain.modprobe import FIRMWARE_MOUNT, loader_command, prestop_command
from ooto.domain.upgrade.keys import ready_label_key

LABEL_MODULE = "ooto.sigs.k8s.io/module"
LABEL_KERNEL = "ooto.sigs.k8s.io/kernel"
LABEL_ROLE = "ooto.sigs.k8s.io/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "ooto"
NODE_KERNEL_LABEL = "ooto.sigs.k8s.io/kernel-version.full"
NODE_KERNEL_ANNOTATION = NODE_KERNEL_LABEL
SPEC_HASH_ANNOTATION = "ooto.sigs.k8s.io/spec-hash"
LOAD_DIGEST_ANNOTATION = "ooto.sigs.k8s.io/load-digest"
"""On loader pods: the load digest (ooto.domain.digest) they were created with."""

MODULE_LOADER: Role = "module-loader"
DEVICE_PLUGIN: Role = "device-plugin"
SYS_MODULE = "SYS_MODULE"
DEFAULT_FIRMWARE_HOST_DIR = "/lib/firmware"


@dataclass(frozen=True)
class HostDir:
    """A node directory in a pod; "ooto-" names keep them apart from additionalVolumes."""

    name: str
    path: str
    read_only: bool
    mount_path: str = ""
    """Where the container sees it; empty: at the same path as on the node."""
    type: str = ""
    """hostPath type; empty: none (the path must exist, or the kubelet creates a directory)."""


@dataclass(frozen=True)
class RenderOptions:
    """Operator settings that shape what is rendered (the same for every Module)."""

    firmware_host_dir: str = DEFAULT_FIRMWARE_HOST_DIR
    """The node's firmware directory, where spec.modprobe.firmwarePath is copied."""


DEFAULT_OPTIONS = RenderOptions()
_MODULE_DIRS = (
    HostDir("ooto-lib-modules", "/lib/modules", True),
    HostDir("ooto-usr-lib-modules", "/usr/lib/modules", True),
)
_DEVICE_PLUGIN_DIRS = (HostDir("ooto-device-plugins", "/var/lib/kubelet/device-plugins", False),)


def node_kernel_labels(kernel: str) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) ooto sets on a Node running `kernel`.

    The label is the label-safe kernel (verbatim when possible). The annotation always carries the
    raw string, not only when the label had to be hashed: one rule for every Node, so a kernel
    change never leaves a stale annotation behind, and the raw kernel is always readable.
    """
    return {NODE_KERNEL_LABEL: kernel_label_value(kernel)}, {NODE_KERNEL_ANNOTATION: kernel}


def selector_labels(module: Module, plan: KernelPlan, role: Role) -> dict[str, str]:
    """The DaemonSet's immutable `spec.selector`: only our labels, never anything a user sets."""
    return {
        LABEL_MODULE: label_safe(module.metadata.name),
        LABEL_KERNEL: plan.kernel_label,
        LABEL_ROLE: role,
    }


def spec_hash(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `manifest` without its own spec-hash annotation."""
    metadata = dict(manifest.get("metadata", {}))
    annotations = {
        key: value
        for key, value in metadata.get("annotations", {}).items()
        if key != SPEC_HASH_ANNOTATION
    }
    metadata["annotations"] = annotations
    canonical = json.dumps(
        {**manifest, "metadata": metadata},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def render_daemonsets(
    module: Module, plan: KernelPlan, options: RenderOptions = DEFAULT_OPTIONS
) -> list[dict[str, Any]]:
    """The module-loader DaemonSet and, when the Module has a device plugin, its DaemonSet."""
    loader = module_loader_container(module, plan, options)
    digest = {LOAD_DIGEST_ANNOTATION: _load_digest(module, plan, options)}
    objects = [_daemonset(module, plan, MODULE_LOADER, loader, digest)]
    if module.spec.device_plugin is not None:
        objects.append(_daemonset(module, plan, DEVICE_PLUGIN, _device_plugin(module)))
    return objects


def _load_digest(module: Module, plan: KernelPlan, options: RenderOptions) -> str:
    """The digest loader pods carry (ooto.domain.digest builds on `module_loader_container`, so it
    is imported here, not at the top: each module needs the other)."""
    from ooto.domain.digest import load_digest

    return load_digest(module, plan, options)


def module_loader_container(
    module: Module, plan: KernelPlan, options: RenderOptions = DEFAULT_OPTIONS
) -> tuple[dict[str, Any], tuple[HostDir, ...]]:
    """The loader container (before our mounts are added) and the node directories it gets."""
    container = copy.deepcopy(module.spec.module_loader)
    container["name"] = MODULE_LOADER
    container["image"] = plan.image
    security = dict(container.get("securityContext") or {})
    # Only CAP_SYS_MODULE is needed to load a module. A user-set `privileged: true` is kept as the
    # user's explicit choice (the operator's allowPrivilegedModuleLoader setting judges it).
    security["capabilities"] = _with_sys_module(security.get("capabilities"))
    container["securityContext"] = security
    modprobe = module.spec.modprobe
    if modprobe is None:
        return container, _MODULE_DIRS
    # validate_module refuses a user command, args or preStop beside modprobe.
    container["command"] = loader_command(modprobe)
    lifecycle = dict(container.get("lifecycle") or {})
    lifecycle["preStop"] = {"exec": {"command": prestop_command(modprobe)}}
    container["lifecycle"] = lifecycle
    if modprobe.firmware_path is None:
        return container, _MODULE_DIRS
    firmware = HostDir(
        "ooto-firmware", options.firmware_host_dir, False, FIRMWARE_MOUNT, "DirectoryOrCreate"
    )
    return container, (*_MODULE_DIRS, firmware)


def _with_sys_module(capabilities: dict[str, Any] | None) -> dict[str, Any]:
    """The user's capabilities, plus SYS_MODULE in `add` and never in `drop`.

    Runtimes apply `drop: [ALL]` before `add` but an explicit drop after it, so hardening the
    loader with `drop: [ALL]` (or copying a template that drops SYS_MODULE) would otherwise leave
    modprobe with "Operation not permitted" on every node.
    """
    result = dict(capabilities or {})
    added = list(result.get("add") or [])
    if not any(_is_sys_module(name) or str(name).upper() == "ALL" for name in added):
        added.append(SYS_MODULE)
    result["add"] = added
    if result.get("drop"):
        result["drop"] = [name for name in result["drop"] if not _is_sys_module(name)]
    return result


def _is_sys_module(name: Any) -> bool:
    # Runtimes upper-case the name and prefix "CAP_" themselves, so "sys_module" is the same one.
    return str(name).upper() == SYS_MODULE


def _device_plugin(module: Module) -> tuple[dict[str, Any], tuple[HostDir, ...]]:
    container = copy.deepcopy(module.spec.device_plugin or {})
    security = {**(container.get("securityContext") or {}), "privileged": True}
    # The API server refuses privileged with allowPrivilegeEscalation false; privileged implies it.
    if security.get("allowPrivilegeEscalation") is False:
        del security["allowPrivilegeEscalation"]
    container["securityContext"] = security
    return container, _DEVICE_PLUGIN_DIRS


def with_host_mounts(container: dict[str, Any], dirs: tuple[HostDir, ...]) -> dict[str, Any]:
    """Add our hostPath mounts, skipping a path the user already mounts (their choice wins)."""
    mounts = list(container.get("volumeMounts") or [])
    taken = {mount.get("mountPath") for mount in mounts}
    for host in dirs:
        mount_path = host.mount_path or host.path
        if mount_path not in taken:
            mounts.append({"name": host.name, "mountPath": mount_path, "readOnly": host.read_only})
    return {**container, "volumeMounts": mounts}


def _host_volume(host: HostDir) -> dict[str, Any]:
    source = {"path": host.path, **({"type": host.type} if host.type else {})}
    return {"name": host.name, "hostPath": source}


def _node_selector(module: Module, plan: KernelPlan, role: Role) -> dict[str, str]:
    """Selected nodes of this kernel; a device plugin only where the module is loaded (the ready
    label), so it leaves a node as soon as ooto takes the label off for an upgrade."""
    selector = {**module.spec.selector, NODE_KERNEL_LABEL: plan.kernel_label}
    if role == DEVICE_PLUGIN:
        selector[ready_label_key(module.metadata.namespace, module.metadata.name)] = "true"
    return selector


def _pod_spec(
    module: Module,
    plan: KernelPlan,
    role: Role,
    container: dict[str, Any],
    dirs: tuple[HostDir, ...],
) -> dict[str, Any]:
    spec = module.spec
    volumes = [_host_volume(host) for host in dirs]
    pod: dict[str, Any] = {
        "containers": [with_host_mounts(container, dirs)],
        "nodeSelector": _node_selector(module, plan, role),
        "priorityClassName": spec.priority_class_name,
        "volumes": volumes + copy.deepcopy(spec.additional_volumes),
    }
    if spec.tolerations:
        pod["tolerations"] = copy.deepcopy(spec.tolerations)
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.image_repo_secret is not None:
        pod["imagePullSecrets"] = [{"name": spec.image_repo_secret.name}]
    return pod


def _update_strategy(module: Module, role: Role) -> dict[str, Any]:
    """Loader pods are replaced by ooto alone, node by node (actors/rollout.py): OnDelete.
    Device-plugin pods roll at most `upgradePolicy.maxParallel` nodes at a time."""
    if role == MODULE_LOADER:
        return {"type": "OnDelete"}
    max_parallel = module.spec.upgrade_policy.max_parallel
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_parallel}}


def owner_reference(module: Module) -> dict[str, Any]:
    """Lets the garbage collector delete what we created when the Module goes."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": module.metadata.name,
        "uid": module.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _daemonset(
    module: Module,
    plan: KernelPlan,
    role: Role,
    pod: tuple[dict[str, Any], tuple[HostDir, ...]],
    template_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    selector = selector_labels(module, plan, role)
    labels = {**selector, LABEL_MANAGED_BY: MANAGED_BY}
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": daemonset_name(module.metadata.name, role, plan.kernel),
            "namespace": module.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(module)],
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": _update_strategy(module, role),
            "template": {
                "metadata": _template_metadata(labels, template_annotations),
                "spec": _pod_spec(module, plan, role, *pod),
            },
        },
    }
    manifest["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(manifest)}
    result: dict[str, Any] = _sorted(manifest)
    return result


def _template_metadata(
    labels: dict[str, str], annotations: dict[str, str] | None
) -> dict[str, Any]:
    return {"labels": labels, **({"annotations": annotations} if annotations else {})}


def _sorted(value: Any) -> Any:
    """Keys sorted at every level (lists keep their order): byte-identical JSON and YAML."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def render_failure(module: Module, error: Exception) -> str:
    """Why `render_daemonsets` raised, for the kernel's status: the field path where we can."""
    if isinstance(error, RecursionError):
        path, depth = deepest_field(module)
        return f"{path}: nested {depth} levels deep, too deep to render (shallow it)"
    return f"cannot render the DaemonSets: {type(error).__name__}: {error}"[:512]


def deepest_field(module: Module, shown: int = 8) -> tuple[str, int]:
    """The path of the most deeply nested value in the spec (its first `shown` steps) and depth.

    Iterative, so it works on exactly the specs that make recursive code fail."""
    spec = module.spec
    stack: list[tuple[Any, tuple[str, ...]]] = [
        (getattr(spec, name), (f"spec.{field.alias or name}",))
        for name, field in type(spec).model_fields.items()
    ]
    best: tuple[str, ...] = ("spec",)
    while stack:
        value, path = stack.pop()
        if len(path) > len(best):
            best = path
        if isinstance(value, dict):
            stack.extend((item, (*path, f".{key}")) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*path, f"[{i}]")) for i, item in enumerate(value))
    text = "".join(best[:shown]) + ("..." if len(best) > shown else "")
    return text, len(best) - 1
