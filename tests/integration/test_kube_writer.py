"""The writer's rules against the real API server: 409 on create adopts, 404 on delete is done,
status updates retry on conflict with fresh state and skip writes that change nothing."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ooto.kube import CONFIGMAPS, NODES, Conflict, KubeApi, Writer, make_api_client
from ooto.testing.cluster import LocalCluster


class CountingObserver:
    def __init__(self) -> None:
        self.verbs: list[str] = []

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        self.verbs.append(verb)


@pytest_asyncio.fixture(loop_scope="session")
async def kube(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)), observer=CountingObserver())
    yield api
    await api.close()


def verbs(api: KubeApi) -> list[str]:
    observer = api.observer
    assert isinstance(observer, CountingObserver)
    return observer.verbs


async def test_create_or_adopt_creates_then_adopts(kube: KubeApi, namespace: str) -> None:
    writer = Writer(kube)
    intent = {"metadata": {"name": "det", "namespace": namespace}, "data": {"v": "1"}}
    first, created = await writer.create_or_adopt(CONFIGMAPS, intent)
    assert created
    changed = {**intent, "data": {"v": "2"}}
    second, created_again = await writer.create_or_adopt(CONFIGMAPS, changed)
    assert not created_again
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["data"] == {"v": "1"}  # adopted as found; reconciling it is the caller's job


async def test_delete_of_a_missing_object_is_fine(kube: KubeApi, namespace: str) -> None:
    writer = Writer(kube)
    await writer.create_or_adopt(CONFIGMAPS, {"metadata": {"name": "x", "namespace": namespace}})
    assert await writer.delete(CONFIGMAPS, "x", namespace) is True
    assert await writer.delete(CONFIGMAPS, "x", namespace) is False


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"nodeInfo": {"kernelVersion": "5.0"}}}


async def test_update_status_retries_on_conflict_with_fresh_state(
    kube: KubeApi, cluster: LocalCluster, namespace: str
) -> None:
    name = f"{namespace}-node"
    await kube.create(NODES, node(name))
    writer = Writer(kube)
    calls: list[str] = []

    def mutate(fresh: dict[str, Any]) -> None:
        calls.append(fresh["metadata"]["resourceVersion"])
        if len(calls) == 1:  # someone else writes between our GET and our PUT
            _blocking_status_patch(cluster, name, {"status": {"phase": "Running"}})
        fresh["status"]["nodeInfo"]["kernelVersion"] = "6.1"

    try:
        final = await writer.update_status(NODES, None, name, mutate)
        assert len(calls) == 2
        assert calls[0] != calls[1]
        assert final["status"]["nodeInfo"]["kernelVersion"] == "6.1"
        assert final["status"]["phase"] == "Running"  # the other writer's change survived
    finally:
        await kube.delete(NODES, name)


async def test_update_status_gives_up_after_bounded_retries(
    kube: KubeApi, cluster: LocalCluster, namespace: str
) -> None:
    name = f"{namespace}-busy"
    await kube.create(NODES, node(name))
    counter = iter(range(100))

    def always_raced(fresh: dict[str, Any]) -> None:
        _blocking_status_patch(cluster, name, {"status": {"phase": f"p{next(counter)}"}})
        fresh["status"]["nodeInfo"]["kernelVersion"] = "never"

    try:
        with pytest.raises(Conflict):
            await Writer(kube, conflict_retries=2).update_status(NODES, None, name, always_raced)
        assert next(counter) == 3
    finally:
        await kube.delete(NODES, name)


async def test_update_status_writes_nothing_when_nothing_changes(
    kube: KubeApi, namespace: str
) -> None:
    name = f"{namespace}-still"
    await kube.create(NODES, node(name))
    try:
        verbs(kube).clear()
        await Writer(kube).update_status(NODES, None, name, lambda fresh: None)
        assert verbs(kube) == ["get"]
    finally:
        await kube.delete(NODES, name)


def _blocking_status_patch(cluster: LocalCluster, name: str, patch: dict[str, Any]) -> None:
    """A write from "someone else", done synchronously inside the mutate callback."""
    request = urllib.request.Request(
        f"{cluster.server}/api/v1/nodes/{name}/status",
        data=json.dumps(patch).encode(),
        method="PATCH",
        headers={
            "Authorization": f"Bearer {cluster.admin_token}",
            "Content-Type": "application/merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200
