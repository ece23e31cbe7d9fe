"""KernelActor when the watch is faster than the reply to its own write.

Behind a slow API server the DaemonSet controller's last status update can reach the informer
before the reply to our update does. The events were then judged against the generation before
our write ("edited by someone else", write in flight) and the kernel stayed Deploying with all
its pods ready. The order cannot be forced on a real API server, so the I/O here is a small
in-memory stand-in whose write replies wait until the test lets them go.
"""

from __future__ import annotations

import asyncio
import copy
import queue
from typing import Any

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.kernel import KernelActor
from actors.messages import DaemonSetObserved, KernelReport, PlanKernel
from actors.ports import ActorContext, ActorSettings
from ooto.domain.api import KernelPhase, Module
from ooto.domain.kernels import plan_kernel
from ooto.domain.render import render_daemonsets

KERNEL = "5.14.0-70.el9.x86_64"


class Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def list(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


class HeldWritesIO:
    """DaemonSet writes are stored at once but answered only when `release` is set."""

    def __init__(self) -> None:
        self.daemonsets, self.builds = Store(), Store()
        self.release = asyncio.Event()
        self.generation = 0

    def stored(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.generation += 1
        obj = copy.deepcopy(manifest)
        obj["metadata"].update(uid="ds-uid", generation=self.generation)
        return obj

    async def apply_daemonset(self, desired: dict[str, Any], current: Any) -> dict[str, Any]:
        await self.release.wait()
        return self.daemonsets.get(desired["metadata"]["namespace"], desired["metadata"]["name"])  # type: ignore[return-value]

    def record_event(self, *args: Any) -> None:
        pass


class Metrics:
    def kernel_phase_changed(self, old: Any, new: Any) -> None:
        pass


class Supervisor(OotoActor):
    def __init__(self, bridge: Bridge, reports: queue.Queue[KernelReport]) -> None:
        super().__init__(bridge)
        self.reports = reports

    def on_KernelReport(self, report: KernelReport) -> None:
        self.reports.put(report)


def module(image: str, generation: int) -> Module:
    return Module.model_validate(
        {
            "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
            "kind": "Module",
            "metadata": {
                "name": "mod",
                "namespace": "ns",
                "uid": "mod-uid",
                "generation": generation,
            },
            "spec": {
                "selector": {"gpu": "true"},
                "moduleLoader": {"name": "loader", "image": "unused"},
                "kernelMappings": [{"literal": KERNEL, "containerImage": image}],
            },
        }
    )


def rolled_out(obj: dict[str, Any]) -> dict[str, Any]:
    generation = obj["metadata"]["generation"]
    obj["status"] = {
        "observedGeneration": generation,
        "desiredNumberScheduled": 1,
        "updatedNumberScheduled": 1,
        "numberReady": 1,
    }
    return obj


def phase_soon(reports: queue.Queue[KernelReport], phase: KernelPhase) -> bool:
    """Reports until `phase` (True) or two quiet seconds (False)."""
    try:
        while True:
            if reports.get(timeout=2).status.phase is phase:
                return True
    except queue.Empty:
        return False


def test_an_update_whose_reply_comes_after_its_rollout_still_ends_ready(
    loop: asyncio.AbstractEventLoop,
) -> None:
    bridge, io, reports = Bridge(loop), HeldWritesIO(), queue.Queue[KernelReport]()
    context = ActorContext(bridge, io, ActorSettings(), Metrics(), routes=None)  # type: ignore[arg-type]
    first = module("r.example/m:a", 1)
    plan = plan_kernel(first, KERNEL)
    assert plan is not None
    supervisor = Supervisor.start(bridge, reports)
    io.release.set()
    actor = KernelActor.start(context, supervisor, first, plan, frozenset({"node-a"}))
    # The create: stored, observed, answered, rolled out.
    (manifest,) = render_daemonsets(first, plan)
    key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
    io.daemonsets.objects[key] = rolled_out(io.stored(manifest))
    actor.tell(DaemonSetObserved(io.daemonsets.objects[key]))
    assert phase_soon(reports, KernelPhase.READY)

    # The update: its reply is held while the watch shows it stored and rolled out.
    loop.call_soon_threadsafe(io.release.clear)
    second = module("r.example/m:b", 2)
    new_plan = plan_kernel(second, KERNEL)
    assert new_plan is not None
    actor.tell(PlanKernel(second, new_plan, frozenset({"node-a"})))
    (updated,) = render_daemonsets(second, new_plan)
    stored = io.stored(updated)
    io.daemonsets.objects[key] = rolled_out(stored)
    actor.tell(DaemonSetObserved(stored))
    assert not phase_soon(reports, KernelPhase.READY)  # judged before our reply: still rolling
    loop.call_soon_threadsafe(io.release.set)
    assert phase_soon(reports, KernelPhase.READY)
    actor.stop()
    supervisor.stop()
