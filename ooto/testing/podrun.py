"""Run a Job pod's containers for real on this host, as a kubelet with no container runtime would.

The simulated kubelet hands build (and sign) Job pods here when it is told to execute them. Each
container's `command` + `args` run with the host's binaries (the image is not pulled: the host's
`buildah` stands in for the Buildah image's), in a private mount namespace (`unshare -m`) where:

- the pod's Secret and ConfigMap volumes, materialized from the API server into a directory of the
  pod's own, are bind-mounted at their `mountPath`s (read-only when the mount says so); emptyDir
  volumes are directories of the pod shared by its containers;
- `/run/containers` and `/var/tmp`, which a container has to itself, are directories of the pod;
- a securityContext that drops ALL capabilities bounds the process to the ones it adds
  (`setpriv --bounding-set`, no new privileges), so a Job that asks for too little fails here too.

Init containers run first, in order; the first failure fails the pod. Output (stdout and stderr)
goes to one log per container; a failed container with `terminationMessagePolicy:
FallbackToLogsOnError` gets the end of its log as its termination message (80 lines, 2048 bytes at
most), which is exactly what a real kubelet does. Needs root (mount namespaces, bind mounts).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ooto.testing.rest import KubeRest

JSON = dict[str, Any]
MESSAGE_LINES, MESSAGE_BYTES = 80, 2048
PRIVATE_DIRS = ("/run/containers", "/var/tmp")


@dataclass(frozen=True)
class ContainerRun:
    name: str
    exit_code: int
    message: str
    init: bool


def runnable(pod: JSON) -> bool:
    """Every container names its program by an absolute path that exists on this host."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for container in containers:
        command = container.get("command") or []
        if not command or not os.path.isabs(command[0]) or not os.access(command[0], os.X_OK):
            return False
    return bool(containers)


class PodRunner:
    def __init__(self, rest: KubeRest, root: Path | None = None) -> None:
        self.rest = rest
        self.root = root or Path(tempfile.gettempdir())
        self.logs: dict[tuple[str, str], str] = {}  # (pod uid, container) -> its whole log

    async def run(self, pod: JSON) -> list[ContainerRun]:
        """Run the pod's containers; RestError when one of its volumes cannot be read yet."""
        workdir = Path(tempfile.mkdtemp(prefix="ooto-pod-", dir=self.root))
        try:
            volumes = await self._volumes(pod, workdir)
            return await self._containers(pod, volumes, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _containers(
        self, pod: JSON, volumes: dict[str, Path], workdir: Path
    ) -> list[ContainerRun]:
        spec, runs = pod["spec"], []
        for init, container in [
            *((True, c) for c in spec.get("initContainers") or []),
            *((False, c) for c in spec.get("containers") or []),
        ]:
            run = await self._container(pod, container, volumes, workdir, init)
            runs.append(run)
            if init and run.exit_code != 0:
                break
        return runs

    async def _container(
        self, pod: JSON, container: JSON, volumes: dict[str, Path], workdir: Path, init: bool
    ) -> ContainerRun:
        binds = [(str(workdir / "private" / d.strip("/")), d, False) for d in PRIVATE_DIRS]
        for mount in container.get("volumeMounts") or []:
            source = volumes[mount["name"]]
            binds.append((str(source), mount["mountPath"], bool(mount.get("readOnly"))))
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", _script(binds, container)]
        argv += ["sh", *container["command"], *(container.get("args") or [])]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root"}
        env.update({e["name"]: e.get("value", "") for e in container.get("env") or []})
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        log = output.decode(errors="replace")
        self.logs[(pod["metadata"].get("uid", ""), container["name"])] = log
        code = process.returncode or 0
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        message = log_tail_message(log) if code != 0 and fallback else ""
        return ContainerRun(container["name"], code, message, init)

    async def _volumes(self, pod: JSON, workdir: Path) -> dict[str, Path]:
        namespace = pod["metadata"]["namespace"]
        found: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            path = workdir / "volumes" / volume["name"]
            path.mkdir(parents=True)
            found[volume["name"]] = path
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                obj = await self.rest.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                _write_items(path, data, volume["configMap"].get("items"))
            elif "secret" in volume:
                name = volume["secret"]["secretName"]
                obj = await self.rest.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                _write_items(path, data, volume["secret"].get("items"))
        return found


def _write_items(path: Path, data: dict[str, bytes], items: list[JSON] | None) -> None:
    chosen = items or [{"key": key, "path": key} for key in data]
    for item in chosen:
        target = path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[item["key"]])


def _script(binds: list[tuple[str, str, bool]], container: JSON) -> str:
    lines = ["set -e"]
    for source, target, read_only in binds:
        q_source, q_target = shlex.quote(source), shlex.quote(target)
        lines += [f"mkdir -p {q_source} {q_target}", f"mount --bind {q_source} {q_target}"]
        if read_only:
            lines.append(f"mount -o remount,bind,ro {q_target}")
    if container.get("workingDir"):
        lines.append(f"cd {shlex.quote(container['workingDir'])}")
    lines.append(f'exec {" ".join(_bounded(container))} "$@"')
    return "\n".join(lines)


def _bounded(container: JSON) -> list[str]:
    """setpriv for a securityContext that drops ALL capabilities; nothing otherwise."""
    context = container.get("securityContext") or {}
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        return []
    keep = ",".join(f"+{c.lower()}" for c in capabilities.get("add") or [])
    bounding = "-all" + (f",{keep}" if keep else "")
    return ["setpriv", "--no-new-privs", "--inh-caps=-all", f"--bounding-set={bounding}", "--"]


def log_tail_message(log: str) -> str:
    """What a kubelet keeps of a log as a termination message: its last 80 lines, 2048 bytes."""
    tail = "\n".join(log.rstrip("\n").splitlines()[-MESSAGE_LINES:])
    data = tail.encode()[-MESSAGE_BYTES:]
    return data.decode(errors="ignore")
