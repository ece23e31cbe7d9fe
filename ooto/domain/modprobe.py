"""`spec.modprobe`: the loader's command and preStop hook, written by ooto, and what it checks.

Pure: no I/O. The scripts run with `/bin/sh -c` in the module image, which must provide a POSIX
shell, kmod's `modprobe`, and `cp`, `find`, `grep`, `rm`, `rmdir`, `sleep` (busybox has them).

- load: check the image holds modules for the running kernel, unload the in-tree modules that
  are loaded (an out-of-tree module of the same name, taint `O`, is ours from before a container
  restart and stays), copy the firmware, `modprobe -d <dirName>` each module (the last of
  modulesLoadingOrder first, moduleName last, with its parameters), then wait for SIGTERM
  without polling.
- preStop: `modprobe -r -d <dirName>` in list order (moduleName first), then remove the firmware
  files it copied. A module still in use stops it: it says which, keeps the firmware and exits 1,
  so the kubelet's FailedPreStopHook Event carries the message.

Every value from the spec is validated by the schema (safe characters only) and still goes
through `shlex.quote`. The kubelet expands `$(NAME)` and `$$` in a container's command, so the
scripts never contain either (command substitution uses backticks) and parameters have no `$`.
The scripts' text is part of the load digest: changing it in a release reloads the module on every
node, so change it only on purpose.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from ooto.domain.api.module import Modprobe, Module
from ooto.domain.reasons import Reason

FIRMWARE_MOUNT = "/var/lib/ooto/firmware"
"""Where the loader sees the node's firmware directory (mounted only when firmwarePath is set)."""
SHELL = "/bin/sh"
_HOST_MODULE_ROOTS = ("/", "/usr")
"""`<dirName>/lib/modules` of these is the node's own module tree, mounted over the image's."""
_WAIT_SECONDS = 2147483647
"""`sleep infinity` is GNU only; this is 68 years and every sleep accepts it."""


@dataclass(frozen=True)
class LoaderPaths:
    """Where the loader container finds the node's firmware directory and loaded modules."""

    firmware: str = FIRMWARE_MOUNT
    sys_module: str = "/sys/module"


LOADER_PATHS = LoaderPaths()


def load_order(modprobe: Modprobe) -> list[str]:
    """Modules in the order they are loaded: modulesLoadingOrder reversed, moduleName last."""
    return list(reversed(modprobe.modules_loading_order)) or [modprobe.module_name]


def unload_order(modprobe: Modprobe) -> list[str]:
    return list(reversed(load_order(modprobe)))


def loader_command(modprobe: Modprobe, paths: LoaderPaths = LOADER_PATHS) -> list[str]:
    return [SHELL, "-c", load_script(modprobe, paths)]


def prestop_command(modprobe: Modprobe, paths: LoaderPaths = LOADER_PATHS) -> list[str]:
    return [SHELL, "-c", unload_script(modprobe, paths)]


_PRELUDE = [
    "set -u",
    "say() { printf 'ooto: %s\\n' \"$*\"; }",
    "fail() { printf 'ooto: %s\\n' \"$*\" >&2; exit 1; }",
]


def load_script(modprobe: Modprobe, paths: LoaderPaths = LOADER_PATHS) -> str:
    q = shlex.quote
    root = modprobe.dir_name
    tree = f'{q(root + "/lib/modules/")}"$kernel"'
    missing = q(f"the image has no {root}/lib/modules/<kernel> for kernel")
    lines = [
        *_PRELUDE,
        "trap 'exit 0' TERM INT",
        "kernel=`uname -r`",
        f'[ -d {tree} ] || fail {missing} "$kernel"',
    ]
    for name in modprobe.in_tree_modules_to_remove:
        # Loaded, and not out of tree (taint O): an in-tree module of the same name as ours
        # (amdgpu replacing amdgpu) is removed, ours is left alone when the container restarts.
        loaded = q(f"{paths.sys_module}/{_sysfs_name(name)}")
        taint = q(f"{paths.sys_module}/{_sysfs_name(name)}/taint")
        in_tree = f"[ -e {loaded} ] && ! grep -q O {taint} 2>/dev/null"
        why = q(f"could not unload the in-tree module {name} (in use?)")
        lines.append(f"if {in_tree}; then modprobe -r {q(name)} || fail {why}; fi")
    if modprobe.firmware_path is not None:
        source, target = q(modprobe.firmware_path + "/."), q(paths.firmware + "/")
        why = q(f"could not copy firmware from {modprobe.firmware_path} to the node")
        lines.append(f"cp -R {source} {target} || fail {why}")
    for name in load_order(modprobe):
        words = [name, *modprobe.parameters] if name == modprobe.module_name else [name]
        argv = " ".join(q(word) for word in words)
        lines.append(f"modprobe -d {q(root)} {argv} || fail {q(f'could not load {name}')}")
    lines += [
        f"say {q('loaded ' + ' '.join(load_order(modprobe)))}",
        "waiter=",
        "trap 'kill $waiter 2>/dev/null; exit 0' TERM INT",
        f"sleep {_WAIT_SECONDS} &",
        "waiter=$!",
        "wait $waiter",
    ]
    return "\n".join(lines) + "\n"


def unload_script(modprobe: Modprobe, paths: LoaderPaths = LOADER_PATHS) -> str:
    q = shlex.quote
    lines = list(_PRELUDE)
    for name in unload_order(modprobe):
        why = q(f"could not unload {name} (in use?); it stays loaded and keeps its firmware")
        lines.append(f"modprobe -r -d {q(modprobe.dir_name)} {q(name)} || fail {why}")
    if modprobe.firmware_path is not None:
        # Only what the image ships is removed: other firmware on the node stays.
        target, source = q(paths.firmware), modprobe.firmware_path
        remove = 'rm -f -- "$1/$2"'
        rmdir = 'rmdir -- "$1/$2" 2>/dev/null || :'
        lines += [
            f"cd {q(source)} || fail {q(f'firmware not removed: the image has no {source}')}",
            f"find . ! -type d -exec sh -c {q(remove)} sh {target} {{}} \\;",
            f"find . -depth -type d ! -name . -exec sh -c {q(rmdir)} sh {target} {{}} \\;",
        ]
    lines.append(f"say {q('unloaded ' + ' '.join(unload_order(modprobe)))}")
    return "\n".join(lines) + "\n"


def _sysfs_name(module_name: str) -> str:
    """/sys/module spells every `-` of a module name as `_`."""
    return module_name.replace("-", "_")


FieldProblem = tuple[str, str]
"""(field path, message)."""


def modprobe_errors(module: Module) -> list[FieldProblem]:
    """What makes `spec.modprobe` unusable, each with its field path (empty without modprobe)."""
    modprobe = module.spec.modprobe
    if modprobe is None:
        return []
    return [
        *_conflicts(module),
        *_path_errors(modprobe),
        *_order_errors(modprobe),
        *_duplicates(modprobe.in_tree_modules_to_remove, "spec.modprobe.inTreeModulesToRemove"),
    ]


def _conflicts(module: Module) -> list[FieldProblem]:
    loader = module.spec.module_loader
    found = [
        (f"spec.moduleLoader.{key}", key)
        for key in ("command", "args")
        if loader.get(key) is not None
    ]
    if (loader.get("lifecycle") or {}).get("preStop") is not None:
        found.append(("spec.moduleLoader.lifecycle.preStop", "preStop hook"))
    return [
        (
            path,
            f"cannot be set together with spec.modprobe, which makes ooto write the loader's "
            f"command and preStop hook; remove spec.modprobe or this {what}",
        )
        for path, what in found
    ]


def _path_errors(modprobe: Modprobe) -> list[FieldProblem]:
    errors: list[FieldProblem] = []
    paths = [("spec.modprobe.dirName", modprobe.dir_name)]
    if modprobe.firmware_path is not None:
        paths.append(("spec.modprobe.firmwarePath", modprobe.firmware_path))
    for path, value in paths:
        if ".." in value.split("/"):
            errors.append((path, f"{value!r} must not contain '..'"))
    if posixpath.normpath(modprobe.dir_name) in _HOST_MODULE_ROOTS:
        errors.append(
            (
                "spec.modprobe.dirName",
                f"{modprobe.dir_name!r}: the node's /lib/modules and /usr/lib/modules are mounted "
                "over the image's; keep the modules under another root such as /opt "
                "(<dirName>/lib/modules/<kernel>)",
            )
        )
    firmware = modprobe.firmware_path
    if firmware is not None:
        normal = posixpath.normpath(firmware)
        if normal == "/" or _overlaps(normal, FIRMWARE_MOUNT):
            errors.append(
                (
                    "spec.modprobe.firmwarePath",
                    f"{firmware!r}: must be a directory of its own in the image (not / and not "
                    f"{FIRMWARE_MOUNT}, where ooto mounts the node's firmware directory)",
                )
            )
    return errors


def _overlaps(path: str, other: str) -> bool:
    return path == other or path.startswith(other + "/") or other.startswith(path + "/")


def _order_errors(modprobe: Modprobe) -> list[FieldProblem]:
    order = modprobe.modules_loading_order
    path = "spec.modprobe.modulesLoadingOrder"
    if not order:
        return []
    errors = _duplicates(order, path)
    if _sysfs_name(order[0]) != _sysfs_name(modprobe.module_name):
        errors.append(
            (
                f"{path}[0]",
                f"must be moduleName ({modprobe.module_name}): list moduleName first, then the "
                f"module it needs loaded before it, and so on",
            )
        )
    return errors


def _duplicates(names: list[str], path: str) -> list[FieldProblem]:
    seen: set[str] = set()
    errors: list[FieldProblem] = []
    for index, name in enumerate(names):
        if _sysfs_name(name) in seen:
            errors.append((f"{path}[{index}]", f"{name} is listed twice"))
        seen.add(_sysfs_name(name))
    return errors


NO_UNLOAD_HOOK = Reason.NO_UNLOAD_HOOK
NO_UNLOAD_HOOK_MESSAGE = (
    "spec.moduleLoader has no lifecycle.preStop hook and spec.modprobe is not set: when a loader "
    "pod goes (kernel upgrade, Module update or deletion) the module stays loaded on its node. "
    "Set spec.modprobe, or add a preStop hook that unloads the module"
)


def unload_hook_missing(module: Module) -> bool:
    """Nothing unloads the module when its loader pod goes: no modprobe spec, no preStop hook."""
    if module.spec.modprobe is not None:
        return False
    lifecycle = module.spec.module_loader.get("lifecycle") or {}
    return not lifecycle.get("preStop")
