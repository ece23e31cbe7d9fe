"""`ooto cluster up` and `ooto demo`: the local control plane for people, not just for tests.

Nothing here imports aiohttp at module level: `ooto demo` must point SSL_CERT_FILE at a bundle
holding its registry's CA *before* aiohttp builds its default TLS context (at import), so that the
operator it runs trusts the demo registry like a real one, with verification on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ooto.testing.binaries import Binaries, BinariesMissingError, ensure_installed
from ooto.testing.cluster import ClusterStartError, LocalCluster
from ooto.testing.pki import CertPair, make_ca

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def say(message: str) -> None:
    print(f"ooto: {message}", flush=True)


@contextlib.contextmanager
def started_cluster(binaries: Binaries) -> Iterator[LocalCluster]:
    say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler ...")
    with LocalCluster(binaries) as cluster:
        say(f"control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
        yield cluster
        say("stopping the control plane")


def print_access(cluster: LocalCluster, binaries: Binaries) -> None:
    say(f"admin kubeconfig:    {cluster.admin_kubeconfig}")
    say(f"operator kubeconfig: {cluster.operator_kubeconfig} (user ooto-operator, no RBAC yet)")
    say(f"kubectl:             {binaries.kubectl}")
    say(f"helm:                {binaries.helm}")
    print(f"\n  export KUBECONFIG={cluster.admin_kubeconfig}")
    print(f"  {binaries.kubectl} get nodes,pods -A\n", flush=True)


def _parse_nodes(specs: list[str] | None) -> list[tuple[str, str]]:
    nodes = []
    for spec in specs or []:
        name, _, kernel = spec.partition("=")
        if not name or not kernel:
            raise ValueError(f"--node wants NAME=KERNEL, got {spec!r}")
        nodes.append((name, kernel))
    return nodes


def cluster_up_command(args: argparse.Namespace) -> int:
    """Start the control plane (and a registry), print how to reach it, run until Ctrl-C."""
    try:
        binaries = ensure_installed()
        nodes = _parse_nodes(getattr(args, "node", None))
    except (BinariesMissingError, ValueError) as error:
        say(str(error))
        return 1
    from ooto.testing.registry_server import RegistryServer
    from ooto.testing.session import serve

    try:
        with started_cluster(binaries) as cluster, contextlib.ExitStack() as stack:
            if getattr(args, "registry", False):
                registry = stack.enter_context(RegistryServer(binaries).start())
                say(f"registry:            {registry.url} (plain HTTP, no auth)")
            print_access(cluster, binaries)
            asyncio.run(serve(cluster, nodes))
    except ClusterStartError as error:
        say(f"the control plane did not start:\n{error}")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def trust_new_ca(directory: Path) -> CertPair:
    """A new CA that this process's default TLS contexts trust, next to the system's CAs."""
    if "aiohttp" in sys.modules:
        say("warning: aiohttp was imported before the demo CA existed; TLS checks may fail")
    ca = make_ca(directory, "demo-ca")
    system = SYSTEM_CA_BUNDLE.read_text() if SYSTEM_CA_BUNDLE.exists() else ""
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(system + ca.cert.read_text())
    os.environ["SSL_CERT_FILE"] = str(bundle)
    return ca


def demo_command(args: argparse.Namespace) -> int:
    """Start everything, apply the sample Module, and show the operator converging."""
    try:
        binaries = ensure_installed()
    except BinariesMissingError as error:
        say(str(error))
        return 1
    with tempfile.TemporaryDirectory(prefix="ooto-demo-") as directory:
        ca = trust_new_ca(Path(directory))
        from ooto.testing.demo import run_demo
        from ooto.testing.registry_server import RegistryServer

        try:
            with (
                started_cluster(binaries) as cluster,
                RegistryServer(binaries, ca=ca).start(tls=True) as registry,
            ):
                say(f"registry at {registry.url} (TLS, CA {ca.cert})")
                return asyncio.run(run_demo(cluster, registry, binaries, keep=bool(args.keep)))
        except ClusterStartError as error:
            say(f"the control plane did not start:\n{error}")
            return 1
        except KeyboardInterrupt:
            return 130
