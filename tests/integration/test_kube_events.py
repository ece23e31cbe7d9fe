"""Events against the real API server: repeats fold into one Event with a count, distinct
messages stay distinct, recording never blocks (even from other threads) and overload drops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from ooto.kube import CONFIGMAPS, EVENTS, NODES, EventRecorder, KubeApi, make_api_client
from ooto.kube.events import MAX_MESSAGE
from ooto.testing.cluster import LocalCluster


@pytest_asyncio.fixture(loop_scope="session")
async def kube(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)))
    yield api
    await api.close()


@pytest_asyncio.fixture(loop_scope="session")
async def recorder(kube: KubeApi) -> AsyncIterator[EventRecorder]:
    events = EventRecorder(kube)
    events.start()
    yield events
    await events.stop()


async def involved(kube: KubeApi, namespace: str, name: str = "subject") -> dict[str, Any]:
    obj = await kube.create(CONFIGMAPS, {"metadata": {"name": name, "namespace": namespace}})
    return {**obj, "apiVersion": "v1", "kind": "ConfigMap"}


async def events_in(kube: KubeApi, namespace: str) -> list[dict[str, Any]]:
    return (await kube.list(EVENTS, namespace)).items


async def test_an_event_names_its_object_and_component(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    subject = await involved(kube, namespace)
    recorder.record(subject, "Warning", "NoMapping", "no mapping for kernel 6.1")
    await recorder.flush()
    [event] = await events_in(kube, namespace)
    assert event["involvedObject"]["uid"] == subject["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "ConfigMap"
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "NoMapping", 1)
    assert event["source"]["component"] == "ooto"


async def test_repeats_fold_into_one_event_with_a_count(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    subject = await involved(kube, namespace)
    for _ in range(5):  # before the writer runs: folded in memory
        recorder.record(subject, "Normal", "Building", "building image x")
    await recorder.flush()
    for _ in range(3):  # after the Event exists: patched
        recorder.record(subject, "Normal", "Building", "building image x")
        await recorder.flush()
    [event] = await events_in(kube, namespace)
    assert event["count"] == 8
    assert event["lastTimestamp"] >= event["firstTimestamp"]
    assert recorder.written == 4  # one create and three patches for eight records


async def test_different_messages_or_objects_are_different_events(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    first = await involved(kube, namespace, "one")
    second = await involved(kube, namespace, "two")
    recorder.record(first, "Normal", "Deployed", "kernel A")
    recorder.record(first, "Normal", "Deployed", "kernel B")
    recorder.record(second, "Normal", "Deployed", "kernel A")
    await recorder.flush()
    assert len(await events_in(kube, namespace)) == 3


async def test_long_messages_are_cut(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    subject = await involved(kube, namespace)
    recorder.record(subject, "Warning", "BuildFailed", "x" * 5000)
    await recorder.flush()
    [event] = await events_in(kube, namespace)
    assert len(event["message"]) == MAX_MESSAGE


async def test_cluster_scoped_objects_get_events_in_default(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    name = f"{namespace}-node"
    node = await kube.create(NODES, {"metadata": {"name": name}})
    try:
        recorder.record({**node, "kind": "Node", "apiVersion": "v1"}, "Normal", "Labelled", name)
        await recorder.flush()
        found = [e for e in await events_in(kube, "default") if e["involvedObject"]["name"] == name]
        assert len(found) == 1
    finally:
        await kube.delete(NODES, name)


async def test_record_never_blocks_and_overload_drops_with_a_count(
    kube: KubeApi, namespace: str
) -> None:
    class Drops:
        count = 0

        def event_dropped(self) -> None:
            self.count += 1

    drops = Drops()
    recorder = EventRecorder(kube, max_pending=10, observer=drops)
    recorder.start()
    subject = await involved(kube, namespace)
    began = time.perf_counter()
    for i in range(1000):
        recorder.record(subject, "Normal", "Spam", f"message {i}")
    elapsed = time.perf_counter() - began
    await recorder.stop(timeout=10)
    print(f"\n1000 record() calls returned in {elapsed:.3f}s")
    assert recorder.dropped == drops.count == 990
    assert len(await events_in(kube, namespace)) == 10


async def test_record_from_another_thread(
    kube: KubeApi, recorder: EventRecorder, namespace: str
) -> None:
    subject = await involved(kube, namespace)
    thread = threading.Thread(
        target=lambda: recorder.record(subject, "Normal", "FromActor", "hello")
    )
    thread.start()
    thread.join()
    await asyncio.sleep(0.05)  # the hop onto the loop
    await recorder.flush()
    [event] = await events_in(kube, namespace)
    assert event["reason"] == "FromActor"
