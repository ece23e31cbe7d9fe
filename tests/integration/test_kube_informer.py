"""The informer against the real API server: what exists is delivered first, then every change,
in order; the cache follows; selectors filter; a stopped informer resumes where it left off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from ooto.kube import CONFIGMAPS, Informer, KubeApi, WatchEvent, make_api_client
from ooto.testing.cluster import LocalCluster


@pytest_asyncio.fixture(loop_scope="session")
async def kube(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)))
    yield api
    await api.close()


class Seen:
    """Collects (type, name, data) of delivered events; waits for a condition on them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, str]]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        self.events.append((event.type, meta["name"], dict(event.obj.get("data") or {})))
        self._changed.set()

    async def until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def names(self) -> list[tuple[str, str]]:
        return [(kind, name) for kind, name, _ in self.events]


def configmap(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}}}


async def test_existing_objects_then_create_modify_delete_in_order(
    kube: KubeApi, namespace: str
) -> None:
    await kube.create(CONFIGMAPS, configmap(namespace, "before"))
    seen = Seen()
    informer = Informer(kube, CONFIGMAPS, namespace=namespace, on_event=seen)
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        assert seen.names() == [("ADDED", "before")]
        assert informer.get(namespace, "before") is not None
        assert informer.get(namespace, "before")["kind"] == "ConfigMap"  # type: ignore[index]

        await kube.create(CONFIGMAPS, configmap(namespace, "new"))
        await kube.patch(CONFIGMAPS, "new", {"data": {"k": "v"}}, namespace)
        await kube.delete(CONFIGMAPS, "before", namespace)
        await seen.until(lambda: len(seen.events) == 4)
        assert seen.names()[1:] == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "before")]
        assert [o["metadata"]["name"] for o in informer.list()] == ["new"]
        assert informer.get(namespace, "new")["data"] == {"k": "v"}  # type: ignore[index]
        assert informer.restarts == 0
    finally:
        await informer.stop()


async def test_label_selector_filters_what_is_delivered(kube: KubeApi, namespace: str) -> None:
    seen = Seen()
    informer = Informer(
        kube, CONFIGMAPS, namespace=namespace, label_selector="pick=me", on_event=seen
    )
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        await kube.create(CONFIGMAPS, configmap(namespace, "ignored"))
        await kube.create(CONFIGMAPS, configmap(namespace, "picked", {"pick": "me"}))
        await seen.until(lambda: len(seen.events) >= 1)
        # A watch delivers in resourceVersion order: had "ignored" (created first) passed the
        # selector, it would have been delivered before "picked".
        assert seen.names() == [("ADDED", "picked")]
    finally:
        await informer.stop()


async def test_a_restarted_informer_resumes_from_its_resource_version_without_losing_events(
    kube: KubeApi, namespace: str
) -> None:
    await kube.create(CONFIGMAPS, configmap(namespace, "a"))
    seen = Seen()
    informer = Informer(kube, CONFIGMAPS, namespace=namespace, on_event=seen)
    informer.start()
    await asyncio.wait_for(informer.synced.wait(), 10)
    await informer.stop()

    # Changes while nobody watches: the watch from the old resourceVersion replays them.
    await kube.patch(CONFIGMAPS, "a", {"data": {"x": "1"}}, namespace)
    await kube.create(CONFIGMAPS, configmap(namespace, "b"))
    informer.start()
    try:
        await seen.until(lambda: len(seen.events) == 3)
        assert seen.names() == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b")]
        assert informer.relists == 0
    finally:
        await informer.stop()


async def test_a_failing_consumer_does_not_stop_the_informer(kube: KubeApi, namespace: str) -> None:
    seen = Seen()

    def flaky(event: WatchEvent) -> None:
        seen(event)
        if event.obj["metadata"]["name"] == "boom":
            raise RuntimeError("consumer bug")

    informer = Informer(kube, CONFIGMAPS, namespace=namespace, on_event=flaky)
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        await kube.create(CONFIGMAPS, configmap(namespace, "boom"))
        await kube.create(CONFIGMAPS, configmap(namespace, "after"))
        await seen.until(lambda: len(seen.events) == 2)
        assert informer.get(namespace, "after") is not None
    finally:
        await informer.stop()


async def test_many_informers_share_one_client(kube: KubeApi, namespace: str) -> None:
    seen = [Seen() for _ in range(8)]
    informers = [Informer(kube, CONFIGMAPS, namespace=namespace, on_event=s) for s in seen]
    for informer in informers:
        informer.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), 10)
        await kube.create(CONFIGMAPS, configmap(namespace, "fanout"))
        for s in seen:
            await s.until(lambda s=s: len(s.events) == 1)  # type: ignore[misc]
    finally:
        await asyncio.gather(*(i.stop() for i in informers))
