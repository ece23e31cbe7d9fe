"""Real images and Git repositories for build tests, made on this host with no network.

- `host_buildah()`: the host's `buildah` (Debian's package), or a reason it cannot be used.
- `push_busybox_base(registry, repo)`: a base image made from scratch with busybox-static (`sh`,
  `mkdir`, `cp`, ... as links), pushed to a local registry, so Dockerfiles can `RUN` commands.
- `GitServer`: `git daemon` on a free port serving repositories made by `add_repository`.

Everything runs with private storage (`--root`/`--runroot` in a temporary directory): the host's
own containers-storage is never touched. Needs root, as Buildah does without user namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from ooto.domain import signing
from ooto.testing.processes import ManagedProcess, free_port, wait_until
from ooto.testing.registry_server import RegistryServer

BUILDAH = "/usr/bin/buildah"
SIGN_FILE = signing.SIGN_FILE
OPERATOR_USER = "65532:65532"  # the Dockerfile's USER
BUSYBOX = "/bin/busybox"
BUSYBOX_LINKS = ("sh", "mkdir", "cp", "ls", "cat", "echo", "touch", "rm", "false", "true", "test")


def host_buildah() -> str | None:
    """None when real builds can run here, else why not (for a skip, or a failure in CI)."""
    for tool in (BUILDAH, BUSYBOX, SIGN_FILE, shutil.which("unshare"), shutil.which("setpriv")):
        if not tool or not os.access(tool, os.X_OK):
            return f"{tool or 'unshare/setpriv'} is missing (ooto/testing/install-binaries.sh)"
    if os.geteuid() != 0:
        return "real builds need root (mount namespaces, Buildah without user namespaces)"
    return None


def push_busybox_base(
    registry: RegistryServer,
    repo: str,
    tag: str = "1",
    extra: Mapping[str, str] | None = None,
    user: str = "",
) -> str:
    """Make `registry.host/repo:tag` (busybox, plus `extra` host files: image path -> host path,
    running as `user` when given) and push it; returns the reference."""
    image = f"{registry.host}/{repo}:{tag}"
    with tempfile.TemporaryDirectory(prefix="ooto-base-") as work:
        storage = ["--storage-driver=vfs", f"--root={work}/root", f"--runroot={work}/run"]

        def buildah(*args: str) -> str:
            done = subprocess.run(
                [BUILDAH, *storage, *args], check=True, capture_output=True, text=True
            )
            return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

        container = buildah("from", "scratch")
        root = Path(buildah("mount", container))
        (root / "bin").mkdir()
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for name in BUSYBOX_LINKS:
            (root / "bin" / name).symlink_to("busybox")
        (root / "tmp").mkdir(mode=0o1777)
        for inside, outside in (extra or {}).items():
            target = root / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(outside, target)
        buildah("umount", container)
        if user:
            buildah("config", f"--user={user}", container)
        buildah("commit", container, image)
        push = ["push", f"--tls-verify={'true' if registry.tls else 'false'}"]
        if registry.credentials:
            push.append(f"--creds={':'.join(registry.credentials)}")
        buildah(*push, image, f"docker://{image}")
    return image


def push_signer_image(registry: RegistryServer, repo: str) -> str:
    """A signer image made like the operator image is, as far as signing sees it: Debian's
    `sign-file` at the path linux-kbuild-6.1 installs it (with the shared libraries it links,
    read from `ldd`), a POSIX sh, and the operator image's non-root user 65532."""
    files = {SIGN_FILE: SIGN_FILE}
    ldd = subprocess.run(["ldd", SIGN_FILE], check=True, capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            files[path] = path
            files[os.path.realpath(path)] = path
    return push_busybox_base(registry, repo, extra=files, user=OPERATOR_USER)


class GitServer:
    """`git daemon` on 127.0.0.1 and a free port; `url(name)` is a repository's git:// URL."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ooto-git-"))
        self.port = free_port()
        self._process: ManagedProcess | None = None

    def start(self) -> GitServer:
        argv = [
            "git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
            f"--port={self.port}", f"--base-path={self.base}", str(self.base),
        ]  # fmt: skip
        self._process = ManagedProcess("git-daemon", argv, self.base / "daemon.log")
        self._process.start()
        wait_until(self._answers, 20.0, "waiting for git daemon", [self._process])
        return self

    def _answers(self) -> bool:
        probe = subprocess.run(
            ["git", "ls-remote", f"git://127.0.0.1:{self.port}/none"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return "not exported" in probe.stderr or "access denied" in probe.stderr.lower()

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def add_repository(
        self, name: str, branches: Mapping[str, Mapping[str, str]]
    ) -> dict[str, str]:
        """A repository whose branches hold the given files (path -> text), one commit each;
        returns branch -> commit id."""
        path = self.base / name
        commits = {}
        for branch, files in branches.items():
            if not path.exists():
                _git(self.base, "init", "-q", "-b", branch, name)
            else:
                _git(path, "checkout", "-q", "--orphan", branch)
                _git(path, "read-tree", "--empty")
                for entry in path.iterdir():
                    if entry.name != ".git":
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            for relative, text in files.items():
                target = path / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git(path, "add", "-A")
            _git(
                path, "-c", "user.name=ooto", "-c", "user.email=ooto@test", "commit", "-qm", branch
            )
            commits[branch] = _git(path, "rev-parse", "HEAD")
        return commits

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> GitServer:
        return self if self._process else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, text=True)
    return done.stdout.strip()
