"""Building blocks for the reliability tests: a private control plane with its own simulated
kubelet and the Module CRD, an in-process operator pointed at any kubeconfig (e.g. through a
`FaultProxy`), and questions about what the operator wrote.

Tests that restart the API server import `private_cluster`, `private_rest`, `private_kubelet` and
`private_crd` into their module, so the session's shared cluster is never disturbed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml

from ooto.app import Operator
from ooto.builds.select import select_backend
from ooto.kube.client import KubeApi
from ooto.kube.config import make_api_client
from ooto.metrics import Metrics
from ooto.settings import Settings
from ooto.testing.cluster import LocalCluster
from ooto.testing.crds import install_crds
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest, RestError
from tests.integration.conftest import RunningOperator

GPU = {"ooto-test/gpu": "true"}
A, B = "5.14.0-70.13.1.el9_0.x86_64", "5.4.0-1054-gke"
FAST = {
    "leader_election": False,
    "metrics_port": 0,
    "status_debounce_seconds": 0.1,
    "backoff_initial_seconds": 0.5,
    "backoff_max_seconds": 5,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def private_rest(private_cluster: LocalCluster) -> AsyncIterator[KubeRest]:
    cluster = private_cluster
    async with KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest:
        yield rest


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def private_crd(private_rest: KubeRest) -> str:
    names = await install_crds(private_rest)
    return names[0]


@pytest_asyncio.fixture(loop_scope="session")
async def private_kubelet(private_rest: KubeRest) -> AsyncIterator[SimulatedKubelet]:
    kubelet = SimulatedKubelet(private_rest)
    task = asyncio.create_task(kubelet.run(), name="private-kubelet")
    await asyncio.wait_for(kubelet.synced.wait(), 30)
    yield kubelet
    with contextlib.suppress(RestError, OSError):
        await kubelet.remove_all_nodes()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest_asyncio.fixture(loop_scope="session")
async def private_namespace(private_rest: KubeRest, private_crd: str) -> str:
    name = f"rel-{os.urandom(3).hex()}"
    await private_rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    return name


async def start_in_process(kubeconfig: Path | str, **overrides: Any) -> RunningOperator:
    """The operator's actor system in this process (the caller stops it)."""
    settings = Settings.load({**FAST, **overrides})
    metrics = Metrics()
    api = KubeApi(
        await make_api_client(str(kubeconfig)),
        concurrency=settings.api_concurrency,
        observer=metrics,
    )
    operator = Operator(settings, api, metrics, await select_backend(api, settings))
    await operator.start()
    return RunningOperator(operator, api, metrics)


def kubeconfig_via(original: Path, server: str, into: Path) -> Path:
    """A copy of `original` whose cluster entries point at `server` (e.g. a FaultProxy)."""
    config = yaml.safe_load(original.read_text())
    for entry in config.get("clusters", []):
        entry["cluster"]["server"] = server
    into.write_text(yaml.safe_dump(config))
    return into


def relists(running: RunningOperator) -> int:
    return sum(informer.relists for informer in running.operator._informers)


async def quiet_writes(running: RunningOperator, seconds: float) -> dict[str, int]:
    """The writes the operator makes during `seconds` of nobody changing anything."""
    before = running.writes()
    await asyncio.sleep(seconds)
    after = running.writes()
    return {verb: n - before.get(verb, 0) for verb, n in after.items() if n != before.get(verb, 0)}


def write_log(running: RunningOperator) -> Counter[tuple[str, str, str]]:
    """(verb, resource, code) -> count of the operator's writes so far."""
    found: Counter[tuple[str, str, str]] = Counter()
    for labels, value in running.metrics._request_samples():
        if labels["verb"] not in ("get", "list", "watch"):
            found[(labels["verb"], labels["resource"], labels["code"])] += int(value)
    return found


def bump_etcd_revision(cluster: LocalCluster) -> None:
    """Write a key outside the API's prefix straight into etcd (blocking).

    While the API server is down this moves etcd's revision past every resourceVersion our
    watches know, so the restarted server's fresh watch cache answers each of them 410 Gone.
    """
    body = json.dumps(
        {
            "key": base64.b64encode(b"ooto-test/revision-bump").decode(),
            "value": base64.b64encode(os.urandom(8)).decode(),
        }
    ).encode()
    request = urllib.request.Request(f"{cluster.etcd_endpoint}/v3/kv/put", data=body)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


async def settled(running: RunningOperator, quiet: float = 1.5, timeout: float = 20.0) -> None:
    """Wait until the operator has written nothing for `quiet` seconds (its last debounced or
    spaced-out status writes have landed), so a test can count the writes that follow."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await quiet_writes(running, quiet):
        if loop.time() > deadline:
            raise AssertionError(f"the operator kept writing for {timeout}s")
