"""The image steps of a KernelActor (a mixin: the actor's state, these methods): is the kernel's
image in the registry, and if not, build it. Kept apart so actors/kernel.py stays about the
actor's messages and phases; actors/kernel_signing.py adds the signing steps.

    Resolving --(image present / no build)--> Deploying
        +--(image missing)--> Building --(ok: checked again)--> Deploying
                                  +--(failed)--> Degraded (Event: log tail), retried after backoff

Builds are shared by every Module of a namespace that wants the same image: one build object per
image (`<module>-build-<hash of the image>`), adopted when it exists. What we hear of a finished
build of our image from before our start (`_stale_builds`) is old news.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from actors.base import Backoff
from actors.kernel_signing import FAILED
from actors.messages import IoDone
from actors.ports import ActorMetrics, Obj, OperatorIO
from actors.replies import BuildDeleted, BuildLogRead, BuildStarted, FailedBuild, ImageChecked
from ooto.builds.model import tail_message
from ooto.domain.api import BuildPhase, KernelPhase, Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import Reason
from ooto.domain.signing import CertificateError
from ooto.domain.stored import uid_of

log = logging.getLogger("actors.kernel")

EVENT_MESSAGE_LIMIT = 1024
"""What the event recorder keeps of a message (ooto.kube.events.MAX_MESSAGE)."""


class KernelBuilds:
    """Mixin for KernelActor; every attribute used here is the actor's."""

    _plan: KernelPlan
    _module: Module
    _io: OperatorIO
    _metrics: ActorMetrics
    _backoff: Backoff
    _build: BuildPhase
    _inflight: set[object]
    _image_present: str | None
    _rechecking: bool
    _digest: str
    _build_started: float | None
    _build_name: str
    _stale_builds: frozenset[str]
    _failed_build: FailedBuild | None

    def _owns(self, obj: Obj) -> bool:
        """Whether our Module owns `obj` (builds are shared across the namespace's Modules)."""
        refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
        return any(ref.get("uid") == self._module.metadata.uid for ref in refs)

    def _run_check(self, coro: Any) -> None:
        self._run(ImageChecked(self._plan.image), coro)

    def _resolve_image(self) -> None:
        if self._build in (BuildPhase.BUILDING, BuildPhase.SIGNING, *FAILED):
            return
        tag = ImageChecked(self._plan.image)
        if tag in self._inflight:
            return
        self._build = BuildPhase.CHECKING
        if self._plan.sign is not None:
            self._check_signature()
            return
        self._set_phase(KernelPhase.RESOLVING, "", f"checking {self._plan.image}")
        self._run(tag, self._io.check_image(self._module, self._plan))

    def _done_check(self, tag: ImageChecked, done: IoDone) -> None:
        if tag.image != self._plan.image:
            return
        outcome = done.result.outcome if done.ok else "error"
        message = done.result.message if done.ok else str(done.error)
        if isinstance(done.error, CertificateError):
            self._fail(Reason.SIGN_SECRET_INVALID, message)
        elif outcome == "missing" and self._plan.sign is not None:
            self._signature_missing(message, done.result.signed_for)
        elif outcome == "present":
            self._digest = done.result.digest
            if self._plan.sign is not None:
                self._signature_present(done.result.signed_by)
            self._backoff.reset()
            self._rechecking = False
            self._image_present = self._plan.image
            if self._build is BuildPhase.CHECKING:
                self._build = BuildPhase.NOT_NEEDED
            self._deploy()
        elif outcome == "missing" and self._build is not BuildPhase.BUILT:
            self._start_build()
        elif outcome == "missing":
            self._fail(
                Reason.IMAGE_MISSING,
                f"build finished but {self._plan.image} is not in the registry",
            )
        else:
            self._fail(Reason.IMAGE_CHECK_FAILED, f"cannot check {self._plan.image}: {message}")

    def _start_build(self) -> None:
        self._build = BuildPhase.BUILDING
        self._set_phase(KernelPhase.BUILDING, Reason.BUILDING, f"building {self._plan.image}")
        log.info(
            "%s builds %s",
            self.describe(),
            self._plan.image,
            extra=self._log_extra("image missing"),
        )
        self._begin_build_object(sign=False)
        self._run(BuildStarted(self._plan.image), self._io.start_build(self._module, self._plan))

    def _begin_build_object(self, sign: bool) -> None:
        if not sign:
            self._metrics.build_started()
        self._build_started = time.monotonic()
        self._build_name = ""
        self._stale_builds = self._finished_builds()
        self._forget_older_failure()

    def _forget_older_failure(self) -> None:
        """Keep only the newest failed build per kernel: the one of an image we no longer build
        goes when a build of another image starts (the same image's retry replaces it anyway)."""
        failed, self._failed_build = self._failed_build, None
        if failed is None or failed.image == self._target():
            return
        tag = BuildDeleted(failed.name, failed.uid)
        self._run(tag, self._io.delete_object("build", self._plan.namespace, tag.name, tag.uid))

    def _done_build(self, image: str, done: IoDone) -> None:
        if image != self._plan.image:
            return
        if self._build not in (BuildPhase.BUILDING, BuildPhase.SIGNING):
            return
        if isinstance(done.error, CertificateError) and self._build is BuildPhase.SIGNING:
            self._sign_not_started(done.error)
            return
        if not done.ok:
            what = "sign" if self._build is BuildPhase.SIGNING else "build"
            self._build_done(False, f"could not start the {what} of {self._target()}: {done.error}")
            return
        self._build_name = done.result
        existing = self._io.builds.get(self._plan.namespace, self._build_name)
        if existing is not None:  # adopted, and it may have finished before we asked
            self._observe_build(existing)

    def _finished_builds(self) -> frozenset[str]:
        """Finished builds of our image. `start_build` replaces them (a Job keeps its name), so
        what we hear of them later (an update, their deletion, a cache not yet updated) is old
        news, never the outcome of the build we are starting."""
        stale = set()
        for obj in self._io.builds.list():
            if (obj.get("metadata") or {}).get("namespace") != self._plan.namespace:
                continue
            observed = self._io.build_observation(obj)
            if observed.image == self._target() and observed.phase != "Running" and uid_of(obj):
                stale.add(uid_of(obj))
        return frozenset(stale)

    def _observe_build(self, obj: Obj) -> None:
        if uid_of(obj) in self._stale_builds:
            return
        observed = self._io.build_observation(obj)
        if observed.image != self._target() or observed.phase not in ("Succeeded", "Failed"):
            return
        self._build_name = observed.name
        self._build_done(observed.phase == "Succeeded", observed.message)

    def _target(self, signing: bool | None = None) -> str:
        """The image the build object makes: the kernel's image for a sign build (`signing`, by
        default: the build phase says Signing), else the build's image (the unsigned one when
        the mapping signs)."""
        if signing is None:
            signing = self._build is BuildPhase.SIGNING
        build = self._plan.build
        return build.image if build is not None and not signing else self._plan.image

    def _build_done(self, succeeded: bool, message: str) -> None:
        signing = self._build is BuildPhase.SIGNING
        if self._build_started is not None and not signing:
            self._metrics.build_finished(succeeded, time.monotonic() - self._build_started)
        self._build_started = None
        if signing:
            self._sign_done(succeeded)
            if succeeded:
                return
        elif succeeded and self._plan.sign is not None:
            self._build = BuildPhase.BUILT
            self._check_unsigned(fresh=True)
            return
        elif succeeded:
            self._build = BuildPhase.BUILT
            check = self._io.check_image(self._module, self._plan, fresh=True)
            self._run(ImageChecked(self._plan.image), check)
            return
        reason = Reason.SIGN_FAILED if signing else Reason.BUILD_FAILED
        image = self._target(signing)
        if not signing:
            self._build = BuildPhase.FAILED
        self._fail(reason, message)
        stored = self._io.builds.get(self._plan.namespace, self._build_name or "-")
        if stored is not None:
            self._failed_build = FailedBuild(self._build_name, uid_of(stored), image)
        if self._build_name:
            detail = self._io.build_failure_detail(self._plan.namespace, self._build_name)
            self._run(BuildLogRead(self._build_name, reason, image), detail)
        else:  # it never started: no log, the reason is the message
            text = f"kernel {self._plan.kernel}: {message}"[:EVENT_MESSAGE_LIMIT]
            self._build_event(text, reason)

    def _delete_succeeded_builds(self) -> None:
        """A succeeded build of our image has served its purpose once a DaemonSet uses the image;
        so has, when the mapping signs, the build of the unsigned image it was signed from.
        Failed builds stay for inspection (a retry replaces the one of the same image)."""
        if self._plan.build is None and self._plan.sign is None:
            return
        ours = {self._target(signing=False), self._target(signing=True)}
        for obj in self._io.builds.list():
            meta = obj.get("metadata") or {}
            if meta.get("namespace") != self._plan.namespace or meta.get("deletionTimestamp"):
                continue
            observed = self._io.build_observation(obj)
            tag = BuildDeleted(observed.name, uid_of(obj))
            if observed.image not in ours or observed.phase != "Succeeded":
                continue
            if tag not in self._inflight:
                log.info(
                    "%s deletes build %s",
                    self.describe(),
                    observed.name,
                    extra=self._log_extra("image in use"),
                )
                coro = self._io.delete_object("build", self._plan.namespace, observed.name, tag.uid)
                self._run(tag, coro)

    def _done_buildlog(self, tag: BuildLogRead, done: IoDone) -> None:
        tail = done.result if done.ok else f"(no log: {done.error})"
        what = "sign" if tag.reason == Reason.SIGN_FAILED else "build"
        head = f"kernel {self._plan.kernel}: {what} of {tag.image} failed; log tail:"
        self._build_event(tail_message(head, tail, EVENT_MESSAGE_LIMIT), tag.reason)

    def _build_event(self, message: str, reason: str) -> None:
        self._io.record_event(self._module.object_reference(), "Warning", reason, message)

    if TYPE_CHECKING:  # provided by KernelActor, KernelDaemonSets, KernelSigning and OotoActor

        def describe(self) -> str: ...
        def _log_extra(self, reason: str) -> dict[str, object]: ...
        def _set_phase(self, phase: KernelPhase, reason: str, message: str) -> None: ...
        def _run(self, tag: object, coro: Any) -> None: ...
        def _fail(self, reason: str, message: str) -> None: ...
        def _deploy(self) -> None: ...
        def _check_signature(self, fresh: bool = False) -> None: ...
        def _signature_missing(self, message: str, signed_for: str) -> None: ...
        def _signature_present(self, signed_by: str) -> None: ...
        def _check_unsigned(self, fresh: bool) -> None: ...
        def _sign_done(self, succeeded: bool) -> None: ...
        def _sign_not_started(self, error: CertificateError) -> None: ...
