"""PreflightActor against an in-memory stand-in for its I/O: the orders a real cluster rarely shows.

Late replies of an older generation, two kernels sharing one image build, a build deleted under
it, an older finished build of the same image, and a restart over an answered or an unanswered
PreflightValidation. The stand-in answers image checks from a dict (or holds them until the test
lets them go) and records builds started and statuses written.
"""

from __future__ import annotations

import asyncio
import queue
import time
from dataclasses import dataclass
from typing import Any

import pytest

from actors.bridge import Bridge
from actors.messages import BuildObserved, ChildDied, PreflightChanged
from actors.ports import ActorContext, ActorSettings
from actors.preflight import PreflightActor
from ooto.builds.model import BuildObservation
from ooto.domain.api import Module
from ooto.domain.api.preflight import PreflightValidation
from ooto.domain.kernels import KernelPlan
from ooto.domain.validation import ModulePolicy
from tests.unit.actor_fakes import Parent, next_of

A, B = "6.8.0-31-generic", "6.8.0-31-lowlatency"


@dataclass(frozen=True)
class Check:
    outcome: str
    message: str = ""


class Store:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def list(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


class FakeIO:
    def __init__(self, *modules: dict[str, Any]) -> None:
        self.modules, self.builds = Store(*modules), Store()
        self.images: dict[str, str] = {}  # image -> outcome; default "missing"
        self.held: asyncio.Event | None = None  # checks wait for it when set
        self.checks: list[str] = []
        self.started: list[tuple[str, str, dict[str, Any] | None]] = []
        self.statuses: queue.Queue[dict[str, Any]] = queue.Queue()

    async def check_image(self, module: Module, plan: KernelPlan, *, fresh: bool = False) -> Check:
        self.checks.append(plan.kernel)
        outcome = self.images.get(plan.image, "missing")  # decided when asked, not when answered
        if self.held is not None:
            await self.held.wait()
        return Check(outcome, f"registry says {outcome}")

    async def start_build(self, module: Module, plan: KernelPlan, owner: Any = None) -> str:
        self.started.append((module.key, plan.image, owner))
        return f"{module.metadata.name}-build"

    def build_observation(self, build: dict[str, Any]) -> BuildObservation:
        meta = build["metadata"]
        return BuildObservation(
            meta["namespace"], meta["name"], "drv", meta["image"], build["phase"], "log tail"
        )

    async def patch_preflight_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.put(status)
        return {"status": status}


class Metrics:
    def __init__(self) -> None:
        self.builds: list[str] = []

    def build_started(self) -> None:
        self.builds.append("started")

    def build_finished(self, succeeded: bool, seconds: float) -> None:
        self.builds.append("succeeded" if succeeded else "failed")


def raw_module(image: str, build: bool = True) -> dict[str, Any]:
    mapping: dict[str, Any] = {"regexp": "^6", "containerImage": image}
    if build:
        mapping["build"] = {"dockerfile": "FROM x\n"}
    return {
        "metadata": {"name": "drv", "namespace": "ns", "uid": "m-uid", "generation": 1},
        "spec": {"kernelMappings": [mapping], "moduleLoader": {"image": "x"}},
    }


def validation(generation: int = 1, status: Any = None, **spec: Any) -> PreflightValidation:
    return PreflightValidation.model_validate(
        {
            "metadata": {"name": "pf", "uid": "pf-uid", "generation": generation},
            "spec": {"kernelVersions": [A], **spec},
            "status": status,
        }
    )


def build(image: str, phase: str, uid: str, owner: str = "pf-uid") -> dict[str, Any]:
    """A build object (as FakeIO's build_observation reads it) owned by the uid `owner`."""
    meta = {"namespace": "ns", "name": "drv-build", "uid": uid, "image": image}
    return {"metadata": {**meta, "ownerReferences": [{"uid": owner}]}, "phase": phase}


def start(
    loop: asyncio.AbstractEventLoop,
    io: FakeIO,
    pv: PreflightValidation,
    metrics: Metrics | None = None,
) -> Any:
    metrics = metrics or Metrics()
    context = ActorContext(Bridge(loop), io, ActorSettings(), metrics, routes=None)  # type: ignore[arg-type]
    return PreflightActor.start(context, pv)


def final_status(io: FakeIO, generation: int, timeout: float = 5) -> dict[str, Any]:
    """The first status written for `generation` whose Complete condition is True."""
    deadline = time.monotonic() + timeout
    while True:
        status = io.statuses.get(timeout=max(0.01, deadline - time.monotonic()))
        complete = status["conditions"][0]["status"] == "True"
        if complete and status["observedGeneration"] == generation:
            return status


def building_status(io: FakeIO, kernels: set[str], timeout: float = 5) -> dict[str, Any]:
    """The first status in which every one of `kernels` waits for a build."""
    deadline = time.monotonic() + timeout
    while True:
        status = io.statuses.get(timeout=max(0.01, deadline - time.monotonic()))
        waiting = {e["kernel"] for e in status["modules"] if "building" in e.get("message", "")}
        if waiting == kernels:
            return status


def verdicts(status: dict[str, Any]) -> dict[str, str]:
    return {entry["kernel"]: entry.get("verdict", "") for entry in status["modules"]}


def test_a_late_answer_for_an_older_generation_is_dropped(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO(raw_module("r.io/drv:${KERNEL_FULL_VERSION}"))
    io.held = asyncio.Event()
    actor = start(loop, io, validation(1))
    try:
        actor.tell(PreflightChanged(validation(2, kernelVersions=[B])))
        io.images[f"r.io/drv:{B}"] = "present"
        loop.call_soon_threadsafe(io.held.set)  # generation 1's answer (for A) arrives late
        status = final_status(io, 2)
        assert verdicts(status) == {B: "Ready"}
        assert (status["total"], status["decided"], status["ready"]) == (1, 1, 1)
    finally:
        actor.stop()


def test_two_kernels_sharing_an_image_build_it_once_owned_by_the_validation(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeIO(raw_module("r.io/drv:shared"))
    actor = start(loop, io, validation(1, kernelVersions=[A, B], pushBuiltImages=True))
    try:
        # Both kernels' answers handled (each entry says it is building) and one build started.
        building = building_status(io, {A, B})
        assert all("verdict" not in entry for entry in building["modules"])
        (started,) = io.started
        assert started[2] == validation().owner_reference()
        io.images["r.io/drv:shared"] = "present"
        actor.tell(BuildObserved("MODIFIED", build("r.io/drv:shared", "Succeeded", "b1")))
        assert verdicts(final_status(io, 1)) == {A: "Built", B: "Built"}
    finally:
        actor.stop()


def test_a_build_deleted_before_it_finished_is_build_failed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeIO(raw_module("r.io/drv:one"))
    actor = start(loop, io, validation(1, pushBuiltImages=True))
    try:
        building_status(io, {A})
        actor.tell(BuildObserved("DELETED", build("r.io/drv:one", "Running", "b1")))
        status = final_status(io, 1)
        assert verdicts(status) == {A: "BuildFailed"}
        assert "deleted" in status["modules"][0]["message"]
    finally:
        actor.stop()


def test_an_adopted_build_deleted_with_its_module_is_started_again_not_failed(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The build it adopted was the Module's: neither started nor finished by this validation,
    which counts one build of that image, started when it asked and finished once its own
    build ends (docs/operations.md, ooto_builds_started_total)."""
    io, metrics = FakeIO(raw_module("r.io/drv:one")), Metrics()
    actor = start(loop, io, validation(1, pushBuiltImages=True), metrics)
    try:
        building_status(io, {A})
        adopted = build("r.io/drv:one", "Running", "b1", owner="other-module-uid")
        actor.tell(BuildObserved("DELETED", adopted))
        io.images["r.io/drv:one"] = "present"
        actor.tell(BuildObserved("MODIFIED", build("r.io/drv:one", "Succeeded", "b2")))
        assert verdicts(final_status(io, 1)) == {A: "Built"}
        assert [image for _, image, _ in io.started] == ["r.io/drv:one", "r.io/drv:one"]
        assert metrics.builds == ["started", "succeeded"]
    finally:
        actor.stop()


def test_an_older_finished_build_of_the_image_is_not_taken_for_ours(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeIO(raw_module("r.io/drv:one"))
    old = build("r.io/drv:one", "Failed", "old-uid")
    io.builds.objects[("ns", "drv-build")] = old
    actor = start(loop, io, validation(1, pushBuiltImages=True))
    try:
        building_status(io, {A})
        actor.tell(BuildObserved("MODIFIED", old))
        actor.tell(BuildObserved("DELETED", old))  # start_build replaces it: old news
        io.images["r.io/drv:one"] = "present"
        actor.tell(BuildObserved("MODIFIED", build("r.io/drv:one", "Succeeded", "new-uid")))
        assert verdicts(final_status(io, 1)) == {A: "Built"}
    finally:
        actor.stop()


@pytest.mark.parametrize("complete", ["True", "False"])
def test_after_a_restart_an_answered_generation_is_kept_and_an_unanswered_one_asked_again(
    loop: asyncio.AbstractEventLoop, complete: str
) -> None:
    io = FakeIO(raw_module("r.io/drv:one", build=False))
    io.images["r.io/drv:one"] = "present"
    stored = {
        "observedGeneration": 3,
        "conditions": [{"type": "Complete", "status": complete}],
        "modules": [],
    }
    actor = start(loop, io, validation(3, status=stored))
    try:
        if complete == "False":
            assert verdicts(final_status(io, 3)) == {A: "Ready"}
            assert io.checks == [A]
            return
        # Answered: nothing is asked again. A later generation is (its check is the only one:
        # a re-check for generation 3 would have been queued on the loop before it).
        actor.tell(PreflightChanged(validation(4)))
        assert verdicts(final_status(io, 4)) == {A: "Ready"}
        assert io.checks == [A]
    finally:
        actor.stop()


@pytest.mark.parametrize("allowed", [False, True])
def test_a_module_the_operators_policy_refuses_is_invalid_spec(
    loop: asyncio.AbstractEventLoop, allowed: bool
) -> None:
    raw = raw_module("r.io/drv:one", build=False)
    raw["spec"]["moduleLoader"]["securityContext"] = {"privileged": True}
    io = FakeIO(raw)
    io.images["r.io/drv:one"] = "present"
    settings = ActorSettings(module_policy=ModulePolicy(allow_privileged_module_loader=allowed))
    context = ActorContext(Bridge(loop), io, settings, Metrics(), routes=None)  # type: ignore[arg-type]
    actor = PreflightActor.start(context, validation(1))
    try:
        status = final_status(io, 1)
        assert verdicts(status) == {A: "Ready" if allowed else "InvalidSpec"}
        if not allowed:
            assert "privileged" in status["modules"][0]["message"]
    finally:
        actor.stop()


def test_a_refused_status_write_is_retried_with_backoff(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO(raw_module("r.io/drv:one", build=False))
    io.images["r.io/drv:one"] = "present"
    refusals = [RuntimeError("403 Forbidden"), RuntimeError("503 Unavailable")]
    write = io.patch_preflight_status

    async def flaky(name: str, status: dict[str, Any]) -> dict[str, Any]:
        if refusals:
            raise refusals.pop(0)
        return await write(name, status)

    io.patch_preflight_status = flaky  # type: ignore[method-assign]
    settings = ActorSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.2)
    context = ActorContext(Bridge(loop), io, settings, Metrics(), routes=None)  # type: ignore[arg-type]
    actor = PreflightActor.start(context, validation(1))
    try:
        assert verdicts(final_status(io, 1)) == {A: "Ready"}
        assert refusals == []
    finally:
        actor.stop()


class BrokenModules(Store):
    """A Module cache whose first read fails (a bug, say): the actor must not answer "all ready"
    from the nothing it read."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        super().__init__(*objects)
        self.failures = 1

    def list(self) -> list[dict[str, Any]]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("cache bug")
        return super().list()


def test_a_failing_step_is_asked_again_from_the_start(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO()
    io.modules = BrokenModules(raw_module("r.io/drv:one", build=False))
    io.images["r.io/drv:one"] = "present"
    settings = ActorSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.2)
    context = ActorContext(Bridge(loop), io, settings, Metrics(), routes=None)  # type: ignore[arg-type]
    actor = PreflightActor.start(context, validation(1))
    try:
        first = io.statuses.get(timeout=5)  # nothing written before the retry read the Modules
        assert first["total"] == 1, first
        if verdicts(first) != {A: "Ready"}:
            assert verdicts(final_status(io, 1)) == {A: "Ready"}
    finally:
        actor.stop()


class Fragile(PreflightActor):
    def on_crash(self, error: Exception) -> None:
        raise RuntimeError("recovery failed too")


def test_a_preflight_actor_that_dies_tells_its_parent(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO()
    io.modules = BrokenModules()
    context = ActorContext(Bridge(loop), io, ActorSettings(), Metrics(), routes=None)  # type: ignore[arg-type]
    told = queue.Queue[object]()
    parent = Parent.start(context.bridge, told)
    actor = Fragile.start(context, validation(1), parent)
    try:
        died = next_of(told, ChildDied)
        assert died is not None and died.key == "pf" and died.ref == actor
        assert "recovery failed too" in died.error or "cache bug" in died.error
    finally:
        parent.stop()


def test_the_root_restarts_a_dead_preflight_actor_and_it_answers(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.messages import PreflightObserved
    from actors.root import OperatorRoot

    monkeypatch.setattr(PreflightActor, "on_crash", Fragile.on_crash)
    io = FakeIO()
    io.modules = BrokenModules(raw_module("r.io/drv:one", build=False))
    io.images["r.io/drv:one"] = "present"
    settings = ActorSettings(backoff_initial_seconds=0.05, backoff_max_seconds=0.2)
    context = ActorContext(Bridge(loop), io, settings, Metrics(), routes=None)  # type: ignore[arg-type]
    root = OperatorRoot.start(context, None)
    try:
        raw = {"metadata": {"name": "pf", "uid": "pf-uid", "generation": 1}}
        root.tell(PreflightObserved("ADDED", {**raw, "spec": {"kernelVersions": [A]}}))
        # The first actor dies reading the Modules; its replacement answers.
        assert verdicts(final_status(io, 1)) == {A: "Ready"}
        assert io.modules.failures == 0
    finally:
        root.stop()
