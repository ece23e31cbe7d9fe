"""The DaemonSets of a KernelActor (a mixin: the actor's state, these methods): render them,
write them when the stored spec-hash differs (or a hand edit changed them), and delete them when
the kernel retires. Kept apart so actors/kernel.py stays about the actor's messages and phases.

Retire: delete our DaemonSets (those the cache shows, and those a write still in flight creates),
then KernelRetired to the supervisor, then stop: never while a write is in flight or the cache
still shows one of them (`actors/retire.py` decides).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from actors.base import Backoff
from actors.messages import IoDone, KernelRetired
from actors.ports import Obj, OperatorIO
from actors.replies import Applied, Deleted
from actors.retire import Doomed, kernel_daemonsets, retire_step
from ooto.domain.api import Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import EventReason, Reason
from ooto.domain.render import RenderOptions, render_daemonsets, render_failure
from ooto.domain.stored import Target, owned_by, pod_images, stored_hash

log = logging.getLogger("actors.kernel")


class RenderError(Exception):
    """The Module passed validation but its DaemonSets cannot be rendered (message: why, where)."""


class WrittenGenerations:
    """Per DaemonSet of ours, the (uid, generation) we last wrote or adopted.

    The spec-hash annotation says which intent a DaemonSet was written for, but a hand edit
    (`kubectl set image`) keeps it: a generation beyond the one we last wrote or adopted is such an
    edit, and we write our spec back once. At first sight (say, after a restart) we cannot know
    the generation we wrote, so we adopt it unless its images are not ours.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, int]] = {}  # DaemonSet -> (uid, generation)

    def edit(self, target: Target, current: Obj) -> str:
        """Why `current` must be written back ("" when it is what we wrote or adopted)."""
        name, meta = target.name, current.get("metadata") or {}
        seen = (meta.get("uid", ""), int(meta.get("generation", 0)))
        live = pod_images(current)
        if name not in self._known and live is not None and live != target.images:
            return "edited by someone else"
        known = self._known.setdefault(name, seen)  # first sight: adopt as it is
        if seen[0] == known[0] and seen[1] > known[1]:
            return "edited by someone else"
        if seen[0] != known[0]:
            self._known[name] = seen  # recreated (by us or the user): adopt
        return ""

    def wrote(self, name: str, written: tuple[str, int]) -> None:
        known = self._known.get(name)
        if known is None or known[0] != written[0] or known[1] < written[1]:
            self._known[name] = written  # replies may arrive out of order


class KernelDaemonSets:
    """Mixin for KernelActor; every attribute used here is the actor's."""

    _plan: KernelPlan
    _module: Module
    _io: OperatorIO
    _backoff: Backoff
    _inflight: set[object]
    _retiring: bool
    _digest: str
    _deleted: set[str]
    _delete_failed: set[str]
    _generations: WrittenGenerations
    _targets_of: tuple[Module, KernelPlan, list[Target]] | None
    _render_options: RenderOptions
    _supervisor: Any

    def _deployed_now(self) -> bool:
        """Our DaemonSets already run this plan: the image was checked when they were made."""
        self._adopt_digest()
        return all(
            stored_hash(self._io.daemonsets.get(t.namespace, t.name)) == t.spec_hash
            for t in self._targets()
        )

    def _targets(self) -> list[Target]:
        """Our DaemonSets' names and spec-hashes, rendered once per (Module object, plan): a
        DaemonSet event costs two dict lookups, and no rendered manifest stays in memory."""
        cached, plan = self._targets_of, self._deployed_plan()
        if cached is None or cached[0] is not self._module or cached[1] != plan:
            targets = [Target.of(d) for d in self._render()]
            cached = self._targets_of = (self._module, plan, targets)
        return cached[2]

    def _manifest(self, name: str) -> dict[str, Any]:
        return next(d for d in self._render() if d["metadata"]["name"] == name)

    def _render(self) -> list[dict[str, Any]]:
        try:
            return render_daemonsets(self._module, self._deployed_plan(), self._render_options)
        except Exception as error:  # RecursionError from a spec nested too deep, and the like
            raise RenderError(render_failure(self._module, error)) from error

    def _deployed_plan(self) -> KernelPlan:
        """The plan as DaemonSets run it: an image ooto builds or signs is referenced by the
        digest the registry answered (`image:tag@sha256:...`), so a new image under the same tag
        (a rebuild, a re-sign after a key rotation) rolls out like any other change."""
        plan = self._plan
        if self._digest and (plan.build is not None or plan.sign is not None):
            return dataclasses.replace(plan, image=f"{plan.image}@{self._digest}")
        return plan

    def _adopt_digest(self) -> None:
        """At first sight (a restart), the digest our loader DaemonSet already runs."""
        if self._digest or not self._targets():
            return
        target = self._targets()[0]
        images = pod_images(self._io.daemonsets.get(target.namespace, target.name) or {}) or ()
        prefix = f"{self._plan.image}@"
        running = [image for _, image in images if image.startswith(prefix)]
        if running:
            self._digest = running[0].removeprefix(prefix)

    def _deploy(self) -> None:
        targets = self._targets()
        waiting = False
        for target in targets:
            current = self._io.daemonsets.get(target.namespace, target.name)
            if current is not None and not owned_by(current, self._module.metadata.uid):
                self._fail(
                    Reason.DAEMONSET_CONFLICT, f"DaemonSet {target.name} exists and is not ours"
                )
                return
            want = target.spec_hash
            reason = self._apply_reason(target, current)
            if reason:
                waiting = True
                tag = Applied(target.name, want)
                if tag not in self._inflight:
                    log.info(
                        "%s applies %s",
                        self.describe(),
                        target.name,
                        extra=self._log_extra(reason),
                    )
                    manifest = self._manifest(target.name)
                    self._run(tag, self._io.apply_daemonset(manifest, current))
        self._report_rollout(targets, waiting)

    def _apply_reason(self, target: Target, current: Obj | None) -> str:
        """Why our DaemonSet must be written ("" when it is right).

        The spec-hash annotation says which intent a DaemonSet was written for, but a hand edit
        (`kubectl set image`) keeps it: a generation beyond the one we last wrote or adopted is
        such an edit, and we write our spec back once. At first sight (say, after a restart) we
        cannot know the generation we wrote, so we adopt it unless its images are not ours.
        """
        if stored_hash(current) != target.spec_hash:
            return "spec changed"
        assert current is not None
        return self._generations.edit(target, current)

    def _done_apply(self, tag: Applied, done: IoDone) -> None:
        if not done.ok:
            if self._retiring:
                self._retire_step()  # nothing written, or the cache will show what was
            else:
                self._fail(
                    Reason.APPLY_FAILED, f"could not apply DaemonSet {tag.name}: {done.error}"
                )
            return
        meta = done.result.get("metadata") or {}
        if self._retiring:
            # It landed after we were told to retire: it must go too, even if the cache has not
            # shown it yet (the watch may lag behind this reply).
            self._delete(Doomed(meta.get("namespace", ""), tag.name, meta.get("uid", "")))
            return
        self._backoff.reset()
        self._delete_succeeded_builds()  # the image is in use now
        written = (meta.get("uid", ""), int(meta.get("generation", 0)))
        self._generations.wrote(tag.name, written)
        if _caught_up(self._io.daemonsets.get(meta.get("namespace", ""), tag.name), written):
            # The watch showed our write before this reply came (a slow reply): those events
            # were judged against the generation before it and may be all we hear.
            self._converge()

    def _retire_step(self) -> None:
        owned = kernel_daemonsets(
            self._io.daemonsets.list(),
            self._module.metadata.namespace,
            self._module.metadata.uid,
            self._plan.kernel_label,
        )
        writes = any(isinstance(tag, Applied | Deleted) for tag in self._inflight)
        step = retire_step(owned, writes, self._deleted)
        for doomed in step.delete:
            self._delete(doomed)
        if step.done:
            log.info("%s retired", self.describe(), extra=self._log_extra("kernel left"))
            self.send(self._supervisor, KernelRetired(self._plan.kernel))
            self.actor_ref.stop(block=False)

    def _delete(self, doomed: Doomed) -> None:
        if doomed.uid in self._deleted:
            return
        self._deleted.add(doomed.uid)
        log.info(
            "%s deletes %s", self.describe(), doomed.name, extra=self._log_extra("kernel left")
        )
        coro = self._io.delete_object("daemonset", doomed.namespace, doomed.name, doomed.uid)
        self._run(Deleted(doomed.name, doomed.uid), coro)

    def _done_delete(self, tag: Deleted, done: IoDone) -> None:
        if not done.ok:
            self._delete_failed.add(tag.uid)  # retried when the "retire" timer fires
            message = f"could not delete DaemonSet {tag.name}: {done.error}"
            log.warning(
                "%s %s", self.describe(), message, extra=self._log_extra(EventReason.DELETE_FAILED)
            )
            self._io.record_event(
                self._module.object_reference(),
                "Warning",
                EventReason.DELETE_FAILED,
                f"kernel {self._plan.kernel}: {message}",
            )
            self.set_timer("retire", self._backoff.next_delay())
            return
        self._retire_step()

    if TYPE_CHECKING:  # provided by KernelActor, KernelBuilds and OotoActor
        actor_ref: Any

        def describe(self) -> str: ...
        def _log_extra(self, reason: str) -> dict[str, object]: ...
        def _run(self, tag: object, coro: Any) -> None: ...
        def _fail(self, reason: str, message: str) -> None: ...
        def _converge(self) -> None: ...
        def _delete_succeeded_builds(self) -> None: ...
        def _report_rollout(self, targets: list[Target], waiting: bool) -> None: ...
        def set_timer(self, name: str, delay: float) -> None: ...
        def send(self, receiver: Any, message: object) -> None: ...


def _caught_up(cached: Obj | None, written: tuple[str, int]) -> bool:
    """The cache holds the object we wrote, or a later version of it."""
    meta = (cached or {}).get("metadata") or {}
    return meta.get("uid") == written[0] and int(meta.get("generation", 0)) >= written[1]
