"""PreflightActor: one PreflightValidation. Answers "will every Module work on kernel X?".

    start / new generation -> plan each (Module, kernel) (pure: NoMapping, InvalidSpec decided)
        -> check each image (the operator's checker, the Module's Secret)
             present -> Ready    missing, no build -> ImageMissing    error -> ImageCheckFailed
             missing + build -> WillBuild, or with pushBuiltImages: build (one per image and
                 namespace, owned by the PreflightValidation) -> fresh check -> Built | BuildFailed
    every change -> one debounced status write (skipped when unchanged)

It reads Modules from the operator's Module cache and never writes a DaemonSet or a Node. Its
builds carry an ownerReference to the PreflightValidation, so deleting it stops this actor (the
root does) and the garbage collector removes the builds. A result is final for a generation:
edit the spec (or delete and recreate) to ask again. After an operator restart a Complete result
for the current generation is kept as it is; an incomplete one is asked again from the start
(running builds are adopted by image). An adopted build that a Module owned and that went with
that Module (the garbage collector) is not a failure: the image is built again, owned by us
(still one build started and one finished in the metrics).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from actors.base import Backoff, OotoActor
from actors.messages import BuildObserved, ChildDied, IoDone, PreflightChanged
from actors.ports import ActorContext, Obj
from ooto.domain.api import Module
from ooto.domain.api.preflight import PreflightValidation, Verdict
from ooto.domain.kernels import KernelPlan
from ooto.domain.preflight_verdicts import (
    CheckOutcome,
    Finding,
    complete_condition,
    judge_build,
    judge_check,
    plan_or_finding,
    selected,
    sort_findings,
    status_entries,
)
from ooto.domain.stored import uid_of
from ooto.logs import log_fields

log = logging.getLogger(__name__)

WRITE_DELAY_SECONDS = 0.3
Pair = tuple[str, str]  # (module key, kernel)
ImageKey = tuple[str, str]  # (namespace, image)


class PreflightActor(OotoActor):
    def __init__(
        self, context: ActorContext, validation: PreflightValidation, parent: Any = None
    ) -> None:
        super().__init__(context.bridge)
        self._parent = parent
        self._io, self._metrics, self._settings = context.io, context.metrics, context.settings
        self._pv = validation
        self._generation = -1  # the generation being answered (tags carry it: old replies drop)
        self._findings: dict[Pair, Finding] = {}
        self._plans: dict[Pair, tuple[Module, KernelPlan]] = {}
        self._builds: dict[ImageKey, set[Pair]] = {}  # builds running, and who waits on each
        self._build_started: dict[ImageKey, float] = {}
        self._stale: frozenset[str] = frozenset()  # uids of finished builds seen before ours
        self._written: dict[str, Any] | None = None
        self._write_backoff = Backoff(
            self._settings.backoff_initial_seconds, self._settings.backoff_max_seconds
        )

    def describe(self) -> str:
        return f"PreflightActor({self._pv.metadata.name})"

    def on_crash(self, error: Exception) -> None:
        # A bug in one step leaves the answer incomplete: ask again from the start, with backoff
        # (a bug that repeats costs one attempt per backoff period, never a hot loop).
        self.set_timer("retry", self._write_backoff.next_delay())

    def on_death(self, error: BaseException | None) -> None:
        if self._parent is not None:
            name = self._pv.metadata.name
            self.send(self._parent, ChildDied(name, self.actor_ref, repr(error)))

    def on_started(self) -> None:
        stored = self._pv.status or {}
        if stored.get("observedGeneration") == self._pv.metadata.generation and _complete(stored):
            self._generation = self._pv.metadata.generation  # answered before a restart: keep
            self._written = stored
            return
        self._begin()

    def on_PreflightChanged(self, message: PreflightChanged) -> None:
        validation = message.validation
        if validation.metadata.generation == self._pv.metadata.generation:
            self._pv = validation  # our own status write coming back, or metadata only
            return
        self._pv = validation
        self._begin()

    # --- asking ----------------------------------------------------------------------------

    def _begin(self) -> None:
        self._generation = self._pv.metadata.generation
        self._findings, self._plans, self._builds = {}, {}, {}
        self._build_started = {}
        wanted = self._pv.spec.modules
        modules = self._modules()
        for key in wanted:
            if key not in modules:
                for kernel in self._pv.spec.kernel_versions:
                    message = "no such Module (spec.modules)"
                    self._decide(Finding(key, kernel, Verdict.INVALID_SPEC, message=message))
        for key, module in sorted(modules.items()):
            if selected(key, wanted):
                for kernel in self._pv.spec.kernel_versions:
                    self._plan(key, module, kernel)
        self._schedule_write()

    def _modules(self) -> dict[str, Module | str]:
        """Module key -> Module, or the reason it cannot be read (from the Module cache)."""
        found: dict[str, Module | str] = {}
        for raw in self._io.modules.list():
            meta = raw.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if meta.get("deletionTimestamp"):
                continue
            try:
                found[key] = Module.model_validate(raw)
            except ValidationError as error:
                found[key] = f"the Module cannot be read: {error.error_count()} problem(s)"
        return found

    def _plan(self, key: str, module: Module | str, kernel: str) -> None:
        if isinstance(module, str):
            self._decide(Finding(key, kernel, Verdict.INVALID_SPEC, message=module))
            return
        planned = plan_or_finding(module, kernel, self._settings.module_policy)
        if isinstance(planned, Finding):
            self._decide(planned)
            return
        pair = (key, kernel)
        self._plans[pair] = (module, planned)
        self._findings[pair] = Finding(key, kernel, None, planned.image, "checking")
        check = self._io.check_image(module, planned)
        self.bridge.run(self.actor_ref, ("check", self._generation, pair), check)

    def on_IoDone(self, done: IoDone) -> None:
        kind, generation = done.tag[0], done.tag[1]
        if generation != self._generation:
            return
        if kind == "check":
            self._checked(done.tag[2], done)
        elif kind == "build":
            self._build_begun(done.tag[2], done)
        elif kind == "fresh":
            self._rechecked(done.tag[2], done)
        elif kind == "status":
            self._status_written(done)

    def _checked(self, pair: Pair, done: IoDone) -> None:
        module, plan = self._plans[pair]
        outcome: CheckOutcome = done.result.outcome if done.ok else "error"
        detail = done.result.message if done.ok else str(done.error)
        finding = judge_check(pair[0], plan, outcome, detail, push=self._pv.spec.push_built_images)
        self._decide(finding)
        if finding.verdict is None:
            self._build(pair, module, plan)

    # --- building (pushBuiltImages) ---------------------------------------------------------

    def _build(self, pair: Pair, module: Module, plan: KernelPlan) -> None:
        image_key = (plan.namespace, plan.image)
        waiting = self._builds.get(image_key)
        if waiting is not None:
            waiting.add(pair)
            return
        self._builds[image_key] = {pair}
        self._stale = self._stale | self._finished_builds(image_key)
        if image_key not in self._build_started:  # else _build_again: counted when first asked
            self._build_started[image_key] = time.monotonic()
            self._metrics.build_started()
        log.info("%s builds %s", self.describe(), plan.image, extra=self._fields(pair, "build"))
        start = self._io.start_build(module, plan, self._pv.owner_reference())
        self.bridge.run(self.actor_ref, ("build", self._generation, image_key), start)

    def _finished_builds(self, image_key: ImageKey) -> frozenset[str]:
        """Finished builds of this image: `start_build` replaces them, so what we hear of them
        later is never the outcome of our build."""
        stale = set()
        for obj in self._io.builds.list():
            observed = self._io.build_observation(obj)
            if (observed.namespace, observed.image) == image_key and observed.phase != "Running":
                stale.add(uid_of(obj))
        return frozenset(stale)

    def _build_begun(self, image_key: ImageKey, done: IoDone) -> None:
        if not done.ok:
            self._build_finished(image_key, False, f"could not start it: {done.error}")
            return
        existing = self._io.builds.get(image_key[0], done.result)
        if existing is not None:  # adopted, and it may have finished before we asked
            self._observe(existing)

    def on_BuildObserved(self, event: BuildObserved) -> None:
        if event.type == "DELETED":
            observed = self._io.build_observation(event.build)
            image_key = (observed.namespace, observed.image)
            if image_key not in self._builds or uid_of(event.build) in self._stale:
                return
            if self._owned_by_another(event.build):
                self._build_again(image_key)
            else:
                self._build_finished(image_key, False, "its build object was deleted")
            return
        self._observe(event.build)

    def _owned_by_another(self, obj: Obj) -> bool:
        """Whether `obj` has owners and we are not one: a Module's build we adopted, which the
        garbage collector deletes with that Module."""
        refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
        return bool(refs) and all(ref.get("uid") != self._pv.metadata.uid for ref in refs)

    def _build_again(self, image_key: ImageKey) -> None:
        """A build adopted from a Module went with that Module (the garbage collector), not a
        failure: the image is still missing, so build it ourselves, owned by us. The metrics
        count one build of the image for this validation: the adopted one was the Module's,
        neither started nor finished here; ours carries on the start counted when we asked (and
        its duration runs from then: the time the validation waited)."""
        waiting = self._builds.pop(image_key)
        pair = min(waiting)
        log.info(
            "%s: adopted build of %s went with its owner; building again",
            self.describe(),
            image_key[1],
            extra=self._fields(pair, "build owner gone"),
        )
        for other in sorted(waiting):
            self._build(other, *self._plans[other])

    def _observe(self, obj: Obj) -> None:
        if uid_of(obj) in self._stale:
            return
        observed = self._io.build_observation(obj)
        image_key = (observed.namespace, observed.image)
        if image_key in self._builds and observed.phase != "Running":
            self._build_finished(image_key, observed.phase == "Succeeded", observed.message)

    def _build_finished(self, image_key: ImageKey, succeeded: bool, message: str) -> None:
        started = self._build_started.pop(image_key, None)
        if started is not None:
            self._metrics.build_finished(succeeded, time.monotonic() - started)
        if succeeded:
            pair = next(iter(self._builds[image_key]))
            module, plan = self._plans[pair]
            check = self._io.check_image(module, plan, fresh=True)
            self.bridge.run(self.actor_ref, ("fresh", self._generation, image_key), check)
            return
        for pair in self._builds.pop(image_key):
            self._decide(judge_build(pair[0], self._plans[pair][1], False, None, message))

    def _rechecked(self, image_key: ImageKey, done: IoDone) -> None:
        outcome: CheckOutcome = done.result.outcome if done.ok else "error"
        detail = done.result.message if done.ok else str(done.error)
        for pair in self._builds.pop(image_key, set()):
            self._decide(judge_build(pair[0], self._plans[pair][1], True, outcome, detail))

    # --- status ----------------------------------------------------------------------------

    def _decide(self, finding: Finding) -> None:
        pair = (finding.module, finding.kernel)
        self._findings[pair] = finding
        if finding.verdict is not None:
            reason = finding.verdict.value
            log.info(
                "%s: %s %s: %s",
                self.describe(),
                reason,
                finding.image or "(no image)",
                finding.message,
                extra=self._fields(pair, reason),
            )
        self._schedule_write()

    def _schedule_write(self) -> None:
        if not self.timer_pending("write"):
            self.set_timer("write", WRITE_DELAY_SECONDS)

    def on_timer(self, name: str) -> None:
        if name == "write":
            self._write_status()
        elif name == "retry":
            self._begin()

    def _write_status(self) -> None:
        status = self._status()
        if status == self._written:
            return
        was_complete = _complete(self._written or {})
        self._written = status
        condition = status["conditions"][0]
        if _complete(status) and not was_complete:
            log.info(
                "%s answered generation %d: %s",
                self.describe(),
                self._generation,
                condition["message"],
                extra=log_fields(preflight=self._pv.metadata.name, reason=condition["reason"]),
            )
        patch = self._io.patch_preflight_status(self._pv.metadata.name, status)
        self.bridge.run(self.actor_ref, ("status", self._generation), patch)

    def _status(self) -> dict[str, Any]:
        findings = sort_findings(self._findings.values())
        previous = next(
            (c for c in (self._written or {}).get("conditions", []) if c.get("type") == "Complete"),
            None,
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = complete_condition(findings, self._generation, previous, now)
        return {
            "modules": [f.as_dict() for f in status_entries(findings)],
            "conditions": [condition],
            "observedGeneration": self._generation,
            "total": len(findings),
            "decided": sum(f.verdict is not None for f in findings),
            "ready": sum(f.ready for f in findings),
        }

    def _status_written(self, done: IoDone) -> None:
        if done.ok:
            self._write_backoff.reset()
            return
        delay = self._write_backoff.next_delay()
        log.warning(
            "%s: status write failed (retrying in %.0fs): %s", self.describe(), delay, done.error
        )
        self._written = None  # write again
        self.set_timer("write", delay)

    def _fields(self, pair: Pair, reason: str) -> dict[str, object]:
        return log_fields(
            preflight=self._pv.metadata.name, module=pair[0], kernel=pair[1], reason=reason
        )


def _complete(status: Obj) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    )
