"""KubeApi against the real API server: every verb, every patch type, errors by status class,
pagination, watch, the request observer, and that error messages never carry request bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ooto.kube import (
    CONFIGMAPS,
    NODES,
    SECRETS,
    AlreadyExists,
    Conflict,
    Forbidden,
    Invalid,
    KubeApi,
    NotFound,
    TransientError,
    make_api_client,
)
from ooto.testing.cluster import LocalCluster

pytestmark = pytest.mark.integration


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((verb, resource, code))


@pytest_asyncio.fixture(loop_scope="session")
async def kube(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)))
    yield api
    await api.close()


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


async def test_create_get_replace_delete_roundtrip(kube: KubeApi, namespace: str) -> None:
    created = await kube.create(CONFIGMAPS, configmap(namespace, "a", x="1"))
    assert created["metadata"]["uid"]
    fetched = await kube.get(CONFIGMAPS, "a", namespace)
    fetched["data"]["x"] = "2"
    replaced = await kube.replace(CONFIGMAPS, fetched)
    assert replaced["data"] == {"x": "2"}
    await kube.delete(CONFIGMAPS, "a", namespace)
    with pytest.raises(NotFound):
        await kube.get(CONFIGMAPS, "a", namespace)


async def test_every_patch_type(kube: KubeApi, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap(namespace, "p", a="1"))
    await kube.patch(CONFIGMAPS, "p", {"data": {"b": "2"}}, namespace)
    await kube.patch(CONFIGMAPS, "p", {"data": {"c": "3"}}, namespace, patch_type="strategic")
    ops = [{"op": "add", "path": "/data/d", "value": "4"}]
    result = await kube.patch(CONFIGMAPS, "p", ops, namespace, patch_type="json")
    assert result["data"] == {"a": "1", "b": "2", "c": "3", "d": "4"}


async def test_server_side_apply_owns_fields_as_ooto(kube: KubeApi, namespace: str) -> None:
    intent = {"apiVersion": "v1", "kind": "ConfigMap", **configmap(namespace, "s", k="v")}
    applied = await kube.apply(CONFIGMAPS, intent)
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert managers == {"ooto"}
    again = await kube.apply(CONFIGMAPS, intent)
    assert again["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]


async def test_errors_by_status_class(kube: KubeApi, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap(namespace, "e"))
    with pytest.raises(AlreadyExists) as exists:
        await kube.create(CONFIGMAPS, configmap(namespace, "e"))
    assert exists.value.status == 409
    stale = await kube.get(CONFIGMAPS, "e", namespace)
    await kube.patch(CONFIGMAPS, "e", {"data": {"bump": "1"}}, namespace)
    with pytest.raises(Conflict) as conflict:
        await kube.replace(CONFIGMAPS, stale)
    assert not isinstance(conflict.value, AlreadyExists)
    with pytest.raises(Invalid):
        await kube.create(CONFIGMAPS, configmap(namespace, "Not_A_Valid_Name"))
    with pytest.raises(NotFound):
        await kube.delete(CONFIGMAPS, "missing", namespace)


async def test_delete_preconditions(kube: KubeApi, namespace: str) -> None:
    created = await kube.create(CONFIGMAPS, configmap(namespace, "d"))
    with pytest.raises(Conflict):
        await kube.delete(CONFIGMAPS, "d", namespace, uid="not-the-uid")
    await kube.delete(
        CONFIGMAPS, "d", namespace, uid=created["metadata"]["uid"], propagation_policy="Background"
    )


async def test_forbidden_without_rbac(cluster: LocalCluster) -> None:
    operator = KubeApi(await make_api_client(str(cluster.operator_kubeconfig)))
    try:
        with pytest.raises(Forbidden):
            await operator.list(NODES)
    finally:
        await operator.close()


async def test_error_messages_never_carry_the_request_body(kube: KubeApi, namespace: str) -> None:
    secret = {
        "metadata": {"name": "creds", "namespace": namespace},
        "stringData": {"password": "hunter2-very-secret"},
    }
    await kube.create(SECRETS, secret)
    bad_key = {"metadata": {"name": "bad", "namespace": namespace}, "data": {"no way!": "aHVudGVy"}}
    for body, error in ((secret, AlreadyExists), (bad_key, Invalid)):
        with pytest.raises(error) as caught:
            await kube.create(SECRETS, body)
        assert "hunter2" not in str(caught.value)
        assert "aHVudGVy" not in str(caught.value)


async def test_list_pages_through_everything(kube: KubeApi, namespace: str) -> None:
    await asyncio.gather(
        *(kube.create(CONFIGMAPS, configmap(namespace, f"c{i}")) for i in range(25))
    )
    listing = await kube.list(CONFIGMAPS, namespace, page_size=10)
    assert sorted(o["metadata"]["name"] for o in listing.items) == sorted(
        f"c{i}" for i in range(25)
    )
    assert int(listing.resource_version) > 0
    labelled = await kube.list(CONFIGMAPS, namespace, label_selector="absent=yes")
    assert labelled.items == []


async def test_observer_sees_every_request_with_verb_resource_and_code(
    cluster: LocalCluster, namespace: str
) -> None:
    observer = RecordingObserver()
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)), observer=observer)
    try:
        await api.create(CONFIGMAPS, configmap(namespace, "o"))
        await api.get(CONFIGMAPS, "o", namespace)
        await api.list(CONFIGMAPS, namespace)
        await api.patch(CONFIGMAPS, "o", {"data": {"a": "b"}}, namespace)
        with pytest.raises(NotFound):
            await api.get(CONFIGMAPS, "nope", namespace)
        await api.delete(CONFIGMAPS, "o", namespace)
    finally:
        await api.close()
    assert observer.calls == [
        ("create", "configmaps", 201),
        ("get", "configmaps", 200),
        ("list", "configmaps", 200),
        ("patch", "configmaps", 200),
        ("get", "configmaps", 404),
        ("delete", "configmaps", 200),
    ]


async def test_connection_failure_is_transient_and_observed_as_code_0(
    cluster: LocalCluster,
) -> None:
    observer = RecordingObserver()
    client = await make_api_client(str(cluster.admin_kubeconfig))
    client.configuration.host = "https://127.0.0.1:1"  # nothing listens there
    api = KubeApi(client, observer=observer)
    try:
        with pytest.raises(TransientError):
            await api.get(NODES, "any")
    finally:
        await api.close()
    assert observer.calls == [("get", "nodes", 0)]


async def test_watch_streams_changes_from_a_resource_version(kube: KubeApi, namespace: str) -> None:
    start = await kube.list(CONFIGMAPS, namespace)
    await kube.create(CONFIGMAPS, configmap(namespace, "w"))
    await kube.patch(CONFIGMAPS, "w", {"data": {"a": "1"}}, namespace)
    await kube.delete(CONFIGMAPS, "w", namespace)
    seen = []
    stream = kube.watch(
        CONFIGMAPS, namespace, resource_version=start.resource_version, timeout_seconds=2
    )
    async for event in stream:
        seen.append((event["type"], event["object"]["metadata"]["name"]))
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_concurrency_is_bounded_and_throughput_is_measured(
    cluster: LocalCluster, namespace: str
) -> None:
    class PeakInFlight:
        def __init__(self) -> None:
            self.done = 0
            self.peak = 0

        def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
            self.done += 1
            self.peak = max(self.peak, api.in_flight)

    observer = PeakInFlight()
    client = await make_api_client(str(cluster.admin_kubeconfig))
    api = KubeApi(client, concurrency=4, observer=observer)
    try:
        began = time.perf_counter()
        await asyncio.gather(
            *(api.create(CONFIGMAPS, configmap(namespace, f"n{i}")) for i in range(200))
        )
        elapsed = time.perf_counter() - began
    finally:
        await api.close()
    assert observer.done == 200
    assert observer.peak == 4
    assert api.in_flight == 0
    print(f"\n200 ConfigMap creates at concurrency 4: {elapsed:.2f}s")
