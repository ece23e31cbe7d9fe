"""The informer over scripted list and watch answers: a stream that raises anything restarts it
from where it was, and an object too deeply nested to decode is skipped and reported, never fatal:
the cache keeps its last readable version and still sees it deleted.

The API is a scripted stand-in (lists and streams in order) because what is scripted here, a
stream failing with an arbitrary exception mid-way, cannot be provoked on a real API server on
purpose; the real-server path of the same bug is in test_reliability_undecodable.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ooto.kube import CONFIGMAPS, Gone, Informer, ObjectList, WatchEvent
from ooto.kube.decode import decode_shallow, parse_watch_line

Script = list[dict[str, Any] | BaseException]


class ScriptedApi:
    """`list` and `watch` of `KubeApi`; each call takes the next answer of its script (the last
    listing repeats; with no stream left, a watch waits forever)."""

    def __init__(self, listings: list[ObjectList], streams: list[Script]) -> None:
        self.listings = listings
        self.streams = streams
        self.watched_from: list[str] = []

    async def list(self, resource: Any, namespace: Any, **_: Any) -> ObjectList:
        return self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]

    async def watch(self, resource: Any, namespace: Any, **query: Any) -> AsyncIterator[Any]:
        self.watched_from.append(query["resource_version"])
        if not self.streams:
            await asyncio.Event().wait()
        for item in self.streams.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


class Reports:
    """An `InformerObserver` that remembers what it was told."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.versions: list[str] = []

    def watch_restarted(self, resource: str) -> None: ...

    def relisted(self, resource: str) -> None: ...

    def task_failed(self, task: str) -> None:
        self.failed.append(task)

    def object_skipped(self, resource: str, obj: dict[str, Any], reason: str) -> None:
        self.skipped.append(((obj.get("metadata") or {}).get("name", ""), reason))

    def observed(self, resource: str, resource_version: str) -> None:
        self.versions.append(resource_version)


def cm(name: str, rv: str, uid: str = "", **data: str) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": name, "resourceVersion": rv, "uid": uid or name}
    return {"kind": "ConfigMap", "metadata": meta, "data": data}


def deep(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The watch event of `obj` with 1,100 levels of nesting added, as read from the wire."""
    line = json.dumps({"type": kind, "object": {**obj, "deep": "X"}})
    nested = '{"a": ' * 1099 + "{}" + "}" * 1099
    return parse_watch_line(line.replace('"X"', nested).encode())


class Running:
    def __init__(self, api: ScriptedApi) -> None:
        self.reports = Reports()
        self.events: list[WatchEvent] = []
        self.changed = asyncio.Event()
        self.informer = Informer(
            api,
            CONFIGMAPS,
            on_event=self.deliver,
            observer=self.reports,  # type: ignore[arg-type]
        )

    def deliver(self, event: WatchEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def seen(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.key[1], e.obj["metadata"]["resourceVersion"]) for e in self.events]

    async def until_version(self, rv: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.informer.resource_version != rv:
                self.changed.clear()
                await asyncio.sleep(0.01)


async def test_a_stream_that_raises_anything_restarts_from_the_last_version_delivered() -> None:
    api = ScriptedApi(
        [ObjectList([cm("a", "1")], "1")],
        [
            [{"type": "ADDED", "object": cm("b", "2")}, RuntimeError("a bug in a dependency")],
            [{"type": "MODIFIED", "object": cm("b", "3", x="y")}],
        ],
    )
    running = Running(api)
    running.informer.start()
    try:
        await running.until_version("3")
        assert running.seen() == [("ADDED", "a", "1"), ("ADDED", "b", "2"), ("MODIFIED", "b", "3")]
        assert api.watched_from == ["1", "2"]  # resumed after "b" at 2: nothing lost, no relist
        assert running.reports.failed == ["informer:configmaps/*"]
        assert running.informer.task.problem() is None
        assert running.reports.versions[-1] == "3"
    finally:
        await running.informer.stop()


async def test_an_undecodable_version_is_skipped_and_its_deletion_still_delivered() -> None:
    first = cm("a", "1", v="1")
    api = ScriptedApi(
        [ObjectList([first], "1")],
        [
            [
                deep(cm("a", "2"), "MODIFIED"),
                {"type": "ADDED", "object": cm("b", "3")},
                deep(cm("new", "4"), "ADDED"),
                deep(cm("a", "5"), "DELETED"),
            ]
        ],
    )
    running = Running(api)
    running.informer.start()
    try:
        await running.until_version("5")
        assert running.seen() == [("ADDED", "a", "1"), ("ADDED", "b", "3"), ("DELETED", "a", "1")]
        assert running.events[-1].obj is first  # the last readable version, not the cut one
        assert running.informer.get("ns", "a") is None and running.informer.get("ns", "new") is None
        assert [name for name, _ in running.reports.skipped] == ["a", "new"]
        assert "depth limit exceeded" in running.reports.skipped[0][1]  # orjson's reason
        assert running.informer.skipped == 2 and running.reports.failed == []
    finally:
        await running.informer.stop()


async def test_a_relist_keeps_the_last_readable_version_of_an_undecodable_object() -> None:
    kept = cm("a", "1", v="1")
    cut_a = decode_shallow(json.dumps(cm("a", "5")).encode())
    cut_c = decode_shallow(json.dumps(cm("c", "6")).encode())
    api = ScriptedApi(
        [ObjectList([kept], "1"), ObjectList([cm("b", "7")], "7", undecodable=[cut_a, cut_c])],
        [[Gone(410, "Expired", "too old")]],
    )
    running = Running(api)
    running.informer.start()
    try:
        await running.until_version("7")
        assert running.seen() == [("ADDED", "a", "1"), ("ADDED", "b", "7")]
        assert running.informer.get("ns", "a") is kept and running.informer.get("ns", "c") is None
        assert [name for name, _ in running.reports.skipped] == ["a", "c"]
    finally:
        await running.informer.stop()
