"""When the API server goes away or forgets history: watches report 410 Gone, the informer relists
and delivers only real differences, reconnects after an outage without losing a change, and a
leader that cannot renew stops leading within its renew deadline.

These tests stop and restart the API server, so they run on a private control plane of their own
and never disturb the session's shared cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ooto.kube import (
    CONFIGMAPS,
    NAMESPACES,
    Gone,
    Informer,
    KubeApi,
    LeaderElector,
    WatchEvent,
    make_api_client,
)
from ooto.testing.cluster import LocalCluster


@pytest_asyncio.fixture(loop_scope="session")
async def kube(private_cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(private_cluster.admin_kubeconfig)))
    yield api
    await api.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ns(kube: KubeApi, request: pytest.FixtureRequest) -> str:
    name = f"r-{abs(hash(request.node.name)) % 10**8}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    return name


async def restart_apiserver(cluster: LocalCluster) -> float:
    began = time.monotonic()
    await asyncio.to_thread(cluster.restart_apiserver)
    return time.monotonic() - began


def configmap(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}}


class Seen(list[tuple[str, str]]):
    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, event: WatchEvent) -> None:
        self.append((event.type, event.obj["metadata"]["name"]))
        self.changed.set()

    async def until(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_watch_from_before_the_watch_cache_began_is_gone(
    kube: KubeApi, private_cluster: LocalCluster, ns: str
) -> None:
    old = (await kube.list(CONFIGMAPS, ns)).resource_version
    await kube.create(CONFIGMAPS, configmap(ns, "after-old"))
    seconds = await restart_apiserver(private_cluster)
    print(f"\nAPI server restart: {seconds:.1f}s")
    with pytest.raises(Gone):
        async for _ in kube.watch(CONFIGMAPS, ns, resource_version=old, timeout_seconds=2):
            pass


async def test_relist_after_gone_delivers_only_real_differences(
    kube: KubeApi, private_cluster: LocalCluster, ns: str
) -> None:
    for name in ("kept", "changed", "deleted"):
        await kube.create(CONFIGMAPS, configmap(ns, name))
    seen = Seen()
    informer = Informer(kube, CONFIGMAPS, namespace=ns, on_event=seen)
    informer.start()
    await asyncio.wait_for(informer.synced.wait(), 10)
    await informer.stop()
    seen.clear()

    # While nobody watches: one change, one delete, one create; then history is forgotten.
    await kube.patch(CONFIGMAPS, "changed", {"data": {"v": "2"}}, ns)
    await kube.delete(CONFIGMAPS, "deleted", ns)
    await kube.create(CONFIGMAPS, configmap(ns, "created"))
    await restart_apiserver(private_cluster)

    informer.start()
    try:
        await seen.until(3)
        await asyncio.sleep(0.5)  # nothing else may follow
        assert sorted(seen) == [
            ("ADDED", "created"),
            ("DELETED", "deleted"),
            ("MODIFIED", "changed"),
        ]
        assert informer.relists == 1
        assert sorted(o["metadata"]["name"] for o in informer.list()) == [
            "changed",
            "created",
            "kept",
        ]
    finally:
        await informer.stop()


async def test_informer_reconnects_after_an_outage_and_loses_nothing(
    kube: KubeApi, private_cluster: LocalCluster, ns: str
) -> None:
    seen = Seen()
    informer = Informer(kube, CONFIGMAPS, namespace=ns, on_event=seen)
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        await asyncio.to_thread(private_cluster.stop_apiserver)
        await asyncio.sleep(1.5)  # the informer fails and backs off
        await asyncio.to_thread(private_cluster.start_apiserver)
        back = time.monotonic()
        for i in range(5):
            await kube.create(CONFIGMAPS, configmap(ns, f"after-{i}"))
        await seen.until(5)
        print(f"\ninformer caught up {time.monotonic() - back:.2f}s after the API server returned")
        assert seen == [("ADDED", f"after-{i}") for i in range(5)]
        assert informer.restarts >= 1
    finally:
        await informer.stop()


class Transitions:
    """The elector's callbacks, with times, and a way to wait for the n-th one."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []
        self.changed = asyncio.Event()

    def note(self, what: str) -> None:
        self.log.append((what, time.monotonic()))
        self.changed.set()

    async def until(self, count: int, timeout: float) -> tuple[str, float]:
        async with asyncio.timeout(timeout):
            while len(self.log) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.log[count - 1]


async def test_a_leader_that_cannot_renew_stops_within_its_renew_deadline(
    kube: KubeApi, private_cluster: LocalCluster, ns: str
) -> None:
    transitions = Transitions()
    elector = LeaderElector(
        kube,
        ns,
        "ooto-leader",
        "only",
        lease_duration=4,
        renew_deadline=2,
        retry_period=0.5,
        on_started_leading=lambda: transitions.note("started"),
        on_stopped_leading=lambda: transitions.note("stopped"),
    )
    elector.start()
    try:
        await transitions.until(1, timeout=5)
        going_down = time.monotonic()
        await asyncio.to_thread(private_cluster.stop_apiserver)
        what, at = await transitions.until(2, timeout=5)
        print(f"\nstopped leading {at - going_down:.2f}s after the API server began to stop")
        assert what == "stopped"
        assert not elector.is_leader
        assert at - going_down <= 2 + 0.5 + 2.0  # renew deadline + a retry period + CI slack
        await asyncio.to_thread(private_cluster.start_apiserver)
        assert (await transitions.until(3, timeout=10))[0] == "started"
    finally:
        await elector.stop()
