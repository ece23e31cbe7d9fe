"""Shared fixtures: one real control plane per test session, a fresh namespace per test.

Everything under tests/integration is marked `integration` automatically, so
`pytest -m "not integration"` runs only the fast unit tests. Integration tests are skipped when
the control-plane binaries are missing, unless OOTO_REQUIRE_CLUSTER is set (CI sets it): then a
missing binary is a failure, never a silent skip. Install them with `ooto cluster install`.

Fixtures:
- `cluster` (session): `LocalCluster`, started once; it keeps an audit log of the harness user
  `ooto-operator`'s requests (`cluster.audit_log`, read with `ooto.testing.audit.AuditLog`).
- `admin_rest` (session): `KubeRest` with the admin token (raw JSON REST).
- `admin_client` (session): kubernetes_asyncio `ApiClient` for the admin kubeconfig.
- `kubelet` (function): the session's `SimulatedKubelet`, its loop running; after the test its
  nodes are removed and its failure settings reset.
- `namespace` (function): name of a fresh namespace, deleted after the test.
- `registry` (session): plain-HTTP `RegistryServer` without auth.
- `auth_registry` (session): plain HTTP with htpasswd auth (credentials in `.credentials`).
- `tls_registry` (session): TLS with its own CA (`.ca_file`) and htpasswd auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import settings

from ooto.testing.binaries import Binaries
from ooto.testing.cluster import OPERATOR_USER, LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest, RestError

# Property tests check properties, not speed: on a shared 2-core machine a per-example deadline
# only adds flakiness. pytest-timeout still bounds every test.
settings.register_profile("ooto", deadline=None)
settings.load_profile("ooto")

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _binaries_or_skip() -> Binaries:
    binaries = Binaries.expected()
    missing = binaries.missing()
    if missing:
        names = ", ".join(map(str, missing))
        reason = f"control-plane binaries missing ({names}); run `ooto cluster install`"
        if os.environ.get("OOTO_REQUIRE_CLUSTER"):
            pytest.fail(f"OOTO_REQUIRE_CLUSTER is set but {reason}")
        pytest.skip(reason)
    return binaries


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """The control-plane binaries, for tests that start their own (e.g. `ooto demo`)."""
    return _binaries_or_skip()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(_binaries_or_skip(), audit_users=[OPERATOR_USER]) as started:
        print(f"\nlocal cluster up in {started.startup_seconds:.1f}s at {started.server}")
        yield started


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[LocalCluster]:
    """A control plane of the test module's own, for tests that stop or restart the API server."""
    with LocalCluster(_binaries_or_skip()) as started:
        yield started


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def admin_rest(cluster: LocalCluster) -> AsyncIterator[KubeRest]:
    async with KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest:
        yield rest


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def admin_client(cluster: LocalCluster) -> AsyncIterator[Any]:
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(cluster.admin_kubeconfig), client_configuration=configuration
    )
    api_client = client.ApiClient(configuration=configuration)
    yield api_client
    await api_client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kubelet_session(cluster: LocalCluster) -> AsyncIterator[SimulatedKubelet]:
    async with KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest:
        kubelet = SimulatedKubelet(rest)
        task = asyncio.create_task(kubelet.run(), name="simulated-kubelet")
        await asyncio.wait_for(kubelet.synced.wait(), 30)
        yield kubelet
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest_asyncio.fixture(loop_scope="session")
async def kubelet(kubelet_session: SimulatedKubelet) -> AsyncIterator[SimulatedKubelet]:
    yield kubelet_session
    kubelet_session.reset()
    await kubelet_session.remove_all_nodes()


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(admin_rest: KubeRest, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    await admin_rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    # The namespace controller empties it in the background; nobody waits for that.
    with contextlib.suppress(RestError):
        await admin_rest.delete(f"/api/v1/namespaces/{name}")


def _registry(tls: bool, htpasswd: tuple[str, str] | None) -> Iterator[RegistryServer]:
    with RegistryServer(_binaries_or_skip()).start(tls=tls, htpasswd=htpasswd) as server:
        yield server


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    yield from _registry(tls=False, htpasswd=None)


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[RegistryServer]:
    yield from _registry(tls=False, htpasswd=("ooto", secrets.token_hex(8)))


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[RegistryServer]:
    yield from _registry(tls=True, htpasswd=("ooto", secrets.token_hex(8)))
