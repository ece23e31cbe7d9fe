"""A small in-memory cluster for actor unit tests: DaemonSet writes whose replies a test can hold
or fail, a cache that the writes update, and a watch that tells the owning actor.

The real operator's informer updates its cache and then tells the kernel actor (DaemonSetRoutes);
`FakeCluster.watch` does the same, after the write is stored and before its reply is released.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import queue
from collections.abc import Callable
from typing import Any

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.messages import ChildDied, DaemonSetObserved, KernelReport, KernelRetired
from ooto.domain.api import Module

KERNEL = "5.14.0-70.el9.x86_64"


class Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def list(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


class Gate:
    """Replies to one kind of write: released at once (default), held, or failed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open = asyncio.Event()
        self.failures: list[Exception] = []
        loop.call_soon_threadsafe(self._open.set)

    def hold(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    async def passage(self) -> None:
        await self._open.wait()
        if self.failures:
            raise self.failures.pop(0)


class FakeCluster:
    """`OperatorIO` for DaemonSets: writes land in `daemonsets` (the cache) and are watched."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.daemonsets, self.builds, self.loader_pods = Store(), Store(), Store()
        self.watch: Callable[[dict[str, Any]], None] = lambda obj: None
        self.applies, self.deletes = Gate(loop), Gate(loop)
        self.delete_failures: dict[str, Exception] = {}  # name -> error, every time
        self.delete_attempts: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.status_writes: list[dict[str, Any]] = []
        self._uids = itertools.count(1)

    async def apply_daemonset(self, desired: dict[str, Any], current: Any) -> dict[str, Any]:
        """Lands (stored, watched, answered) when the gate lets it through: a create still on the
        wire is in no cache yet."""
        await self.applies.passage()
        meta = desired["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self.daemonsets.objects.get(key)
        obj = copy.deepcopy(desired)
        uid = old["metadata"]["uid"] if old else f"uid-{next(self._uids)}"
        generation = old["metadata"]["generation"] + 1 if old else 1
        obj["metadata"].update(uid=uid, generation=generation)
        self.daemonsets.objects[key] = obj
        self.watch(obj)
        return obj

    async def delete_object(self, kind: str, namespace: str, name: str, uid: str) -> None:
        self.delete_attempts.append(name)
        if name in self.delete_failures:  # refused at once, before any held delete is answered
            raise self.delete_failures[name]
        await self.deletes.passage()
        obj = self.daemonsets.objects.get((namespace, name))
        if obj is not None and obj["metadata"]["uid"] == uid:
            del self.daemonsets.objects[(namespace, name)]
            self.watch(obj)

    async def patch_module_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.status_writes.append(status)
        return {"metadata": {"resourceVersion": "1"}, "status": status}

    def record_event(self, involved: Any, kind: str, reason: str, message: str) -> None:
        self.events.append((reason, message))

    def names(self) -> set[str]:
        return {name for _, name in self.daemonsets.objects}


class Metrics:
    def __init__(self) -> None:
        self.fail_phase_changes = 0  # that many kernel_phase_changed calls raise

    def kernel_phase_changed(self, old: Any, new: Any) -> None:
        if self.fail_phase_changes > 0:
            self.fail_phase_changes -= 1
            raise RuntimeError("metrics bug")

    def module_status(self, *args: Any) -> None:
        pass

    def module_gone(self, *args: Any) -> None:
        pass


class Parent(OotoActor):
    """Stands in for a supervisor: records what its kernel actor tells it."""

    def __init__(self, bridge: Bridge, told: queue.Queue[object]) -> None:
        super().__init__(bridge)
        self.told = told

    def on_KernelReport(self, message: KernelReport) -> None:
        self.told.put(message)

    def on_KernelRetired(self, message: KernelRetired) -> None:
        self.told.put(message)

    def on_ChildDied(self, message: ChildDied) -> None:
        self.told.put(message)


def next_of(told: queue.Queue[object], kind: type, timeout: float = 5.0) -> Any:
    """The next message of `kind` (others skipped), or None after `timeout` without one."""
    try:
        while True:
            message = told.get(timeout=timeout)
            if isinstance(message, kind):
                return message
    except queue.Empty:
        return None


def module(
    spec_extra: dict[str, Any] | None = None, *, device_plugin: bool = False, uid: str = "mod-uid"
) -> Module:
    spec: dict[str, Any] = {
        "selector": {"gpu": "true"},
        "moduleLoader": {"name": "loader", "image": "unused"},
        "kernelMappings": [{"literal": KERNEL, "containerImage": "r.example/m:a"}],
    }
    if device_plugin:
        spec["devicePlugin"] = {"name": "dp", "image": "r.example/dp:1"}
    raw = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "mod", "namespace": "ns", "uid": uid, "generation": 1},
        "spec": spec | (spec_extra or {}),
    }
    return Module.model_validate(raw)


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_volume(levels: int) -> dict[str, Any]:
    """A free-form field the schema lets through at any depth (issue 13, section 2)."""
    template = {"metadata": {"labels": {}, "annotations": {}, "x": nested(levels)}, "spec": {}}
    return {"additionalVolumes": [{"name": "v", "ephemeral": {"volumeClaimTemplate": template}}]}


def watched_by(io: FakeCluster, bridge: Bridge, ref: Any) -> None:
    io.watch = lambda obj: bridge.tell(ref, DaemonSetObserved(obj))


def settle(loop: asyncio.AbstractEventLoop, actor: Any) -> None:
    """Barrier: replies already produced on the loop have reached `actor`, and it handled them."""
    for _ in range(2):
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)
    actor.ask("barrier", timeout=5)  # an OotoActor ignores it, after everything before it


def drained(told: queue.Queue[object]) -> list[object]:
    items = []
    while not told.empty():
        items.append(told.get_nowait())
    return items


async def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.01)
    return False


def wait_until(loop: asyncio.AbstractEventLoop, check: Callable[[], bool]) -> bool:
    return asyncio.run_coroutine_threadsafe(until(check), loop).result(15)
