"""KernelActor: one (Module, kernel). Owns that kernel's image check, build and DaemonSets.

    Resolving --(image present / no build)--> Deploying --(pods ready)--> Ready
        |                                        ^
        +--(image missing)--> Building --(ok)----+      (failed: Degraded, retry after backoff)
    Retire: delete our DaemonSets (those the cache shows, and those a write still in flight
    creates), then KernelRetired to the supervisor, then stop: never while a write is in flight
    or the cache still shows one of them.

Cluster state is the truth: before writing, the actor reads the informer cache, and it writes only
when the stored spec-hash differs from the rendered one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from actors.base import Backoff, OotoActor
from actors.kernel_signing import (
    FAILED,
    FingerprintRead,
    KernelSigning,
    SignStarted,
    UnsignedChecked,
)
from actors.loader_troubles import LoaderTroubles
from actors.messages import (
    BuildObserved,
    ChildDied,
    DaemonSetObserved,
    ImagePullFailed,
    IoDone,
    KernelReport,
    KernelRetired,
    LoaderPodTrouble,
    PlanKernel,
    PodCreateFailed,
    Retire,
)
from actors.ports import ActorContext, Obj
from actors.replies import (
    Applied,
    BuildDeleted,
    BuildLogRead,
    BuildStarted,
    Deleted,
    FailedBuild,
    ImageChecked,
)
from actors.retire import Doomed, kernel_daemonsets, retire_step
from ooto.builds.model import tail_message
from ooto.domain.api import BuildPhase, KernelPhase, KernelStatus, Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import EventReason, Reason
from ooto.domain.render import RenderOptions, render_daemonsets, render_failure
from ooto.domain.signing import CertificateError
from ooto.domain.stored import Target, daemonset_ready, owned_by, pod_images, stored_hash, uid_of
from ooto.logs import log_fields

log = logging.getLogger(__name__)

EVENT_MESSAGE_LIMIT = 1024
"""What the event recorder keeps of a message (ooto.kube.events.MAX_MESSAGE)."""


class RenderError(Exception):
    """The Module passed validation but its DaemonSets cannot be rendered (message: why, where)."""


class KernelActor(OotoActor, KernelSigning):
    def __init__(
        self,
        context: ActorContext,
        supervisor: Any,
        module: Module,
        plan: KernelPlan,
        nodes: frozenset[str],
        unavailable: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(context.bridge)
        self._io, self._settings, self._metrics = context.io, context.settings, context.metrics
        self._supervisor = supervisor
        self._module, self._plan, self._nodes = module, plan, nodes
        self._unavailable = unavailable  # of our nodes: NotReady or unschedulable
        self._create_failures: dict[str, PodCreateFailed] = {}  # DaemonSet -> its latest
        self._troubles = LoaderTroubles()  # our loader pods that cannot pull or keep crashing
        self._phase: KernelPhase | None = None
        self._build = BuildPhase.NOT_NEEDED if plan.build is None else BuildPhase.CHECKING
        self._message = ""
        self._reason = ""
        self._image_present: str | None = None  # the image the registry last said exists
        self._inflight: set[object] = set()  # reply tags of the I/O we wait for
        self._deleted: set[str] = set()  # uids we deleted; the cache may show them a while longer
        self._delete_failed: set[str] = set()  # ... and those whose delete failed (retry later)
        self._generations: dict[str, tuple[str, int]] = {}  # DaemonSet -> (uid, generation) ours
        self._retiring = False
        self._backoff = Backoff(
            self._settings.backoff_initial_seconds, self._settings.backoff_max_seconds
        )
        self._build_started: float | None = None
        self._build_name = ""
        self._stale_builds: frozenset[str] = frozenset()  # uids of builds our start replaces
        self._failed_build: FailedBuild | None = None  # kept for inspection until the next one
        self._pull_checked_at: float | None = None  # last registry check a pull failure asked for
        self._rechecking = False  # that check (or the build it started) is not over
        self._signed_by = ""  # the signed-by label of our signed image, as last checked
        self._conflict_with = ""  # the Module a SignConflict Event named (kernel_signing.py)
        self._digest = ""  # of plan.image as the registry last answered: DaemonSets pin it
        self._last_report: KernelReport | None = None
        self._targets_of: tuple[Module, KernelPlan, list[Target]] | None = None
        self._render_options = RenderOptions(firmware_host_dir=self._settings.firmware_host_dir)

    def describe(self) -> str:
        return f"KernelActor({self._module.key}, {self._plan.kernel})"

    def on_started(self) -> None:
        meta, pods = self._module.metadata, self._io.loader_pods.list()
        reason, stored = self._stored_entry()
        self._troubles.seed(pods, meta.namespace, meta.name, self._plan.kernel_label, stored)
        self._troubles.announced = reason  # a restart does not repeat the Event
        self._converge()

    def _stored_entry(self) -> tuple[str, str]:
        """Our kernel's (reason, message) in the Module's stored status."""
        kernels = (self._module.status or {}).get("kernels")
        for entry in kernels if isinstance(kernels, list) else ():
            if isinstance(entry, dict) and entry.get("kernel") == self._plan.kernel:
                return str(entry.get("reason") or ""), str(entry.get("message") or "")
        return "", ""

    def on_stop(self) -> None:
        self._metrics.kernel_phase_changed(self._phase, None)

    def on_crash(self, error: Exception) -> None:
        if self._retiring:
            self.set_timer("retire", self._backoff.next_delay())
            return
        self._set_phase(KernelPhase.DEGRADED, Reason.INTERNAL_ERROR, f"internal error: {error!r}")
        self.set_timer("retry", self._backoff.next_delay())

    def on_death(self, error: BaseException | None) -> None:
        self.send(self._supervisor, ChildDied(self._plan.kernel, self.actor_ref, repr(error)))
        self._metrics.kernel_phase_changed(self._phase, None)

    # --- messages ----------------------------------------------------------------------------

    def on_PlanKernel(self, message: PlanKernel) -> None:
        plan = message.plan
        changed = plan != self._plan or message.module.metadata.uid != self._module.metadata.uid
        regenerated = message.module.metadata.generation != self._module.metadata.generation
        self._module, self._nodes = message.module, message.nodes
        self._unavailable = message.unavailable
        if changed and plan.image != self._plan.image:
            self._image_present, self._digest = None, ""
            self._build = BuildPhase.NOT_NEEDED if plan.build is None else BuildPhase.CHECKING
        self._plan = plan
        if changed or regenerated:
            # A new generation retries at once, without waiting out the backoff: the user may
            # have fixed what failed (a failed build included).
            if self._build in FAILED:
                self._build = BuildPhase.CHECKING
            self._backoff.reset()
            self.cancel_timer("retry")
        self._converge()

    def on_DaemonSetObserved(self, _: DaemonSetObserved) -> None:
        # The cache already holds the new object; converging re-reads it (and repairs drift).
        if self._retiring:
            self._retire_step()
        else:
            self._converge()

    def on_PodCreateFailed(self, failure: PodCreateFailed) -> None:
        self._create_failures[failure.daemonset] = failure
        if not self._retiring:
            self._converge()

    def on_LoaderPodTrouble(self, message: LoaderPodTrouble) -> None:
        self._troubles.observe(message.uid, message.trouble)
        if not self._retiring:
            self._converge()  # reports only if the kernel's reason or message changed

    def on_ImagePullFailed(self, failed: ImagePullFailed) -> None:
        """Nodes cannot pull our image. If ooto builds or signs it and the registry lost it (an
        in-cluster registry on an emptyDir restarted), make it again: ask the registry afresh, at
        most once per initial backoff however many pods report it, never while a build runs."""
        image = self._plan.image
        deployed = self._deployed_plan().image  # a pod on an older digest waits for the rollout
        makes_image = self._plan.build is not None or self._plan.sign is not None
        if self._retiring or not makes_image or failed.image != deployed:
            return
        if self._build in (BuildPhase.BUILDING, BuildPhase.SIGNING):
            return
        if ImageChecked(image) in self._inflight:
            return
        now = time.monotonic()
        last = self._pull_checked_at
        if last is not None and now - last < self._settings.backoff_initial_seconds:
            return
        self._pull_checked_at, self._rechecking = now, True
        log.info("%s checks %s again", self.describe(), image, extra=self._log_extra("ImagePull"))
        self._image_present = None
        self._build = BuildPhase.CHECKING
        message = f"nodes cannot pull {image}; checking it"
        self._set_phase(KernelPhase.RESOLVING, Reason.IMAGE_PULL_FAILED, message)
        if self._plan.sign is not None:
            self._check_signature(fresh=True)
            return
        self._run_check(self._io.check_image(self._module, self._plan, fresh=True))

    def on_BuildObserved(self, event: BuildObserved) -> None:
        building = self._build in (BuildPhase.BUILDING, BuildPhase.SIGNING)
        if not building or uid_of(event.build) in self._stale_builds:
            return
        if event.type != "DELETED":
            self._observe_build(event.build)
        elif (event.build.get("metadata") or {}).get("name") != self._build_name:
            return
        elif self._build is BuildPhase.BUILDING and not self._owns(event.build):
            # A build of our image we adopted from another Module: that Module's deletion took
            # it (the garbage collector), not a failure of ours. The image is still missing.
            log.info(
                "%s: shared build %s went with its Module; building again",
                self.describe(),
                self._build_name,
                extra=self._log_extra("build owner gone"),
            )
            self._start_build()
        else:  # someone deleted our running build
            self._build_done(
                False, f"the build of {self._plan.image} was deleted before it finished"
            )

    def _owns(self, obj: Obj) -> bool:
        """Whether our Module owns `obj` (builds are shared across the namespace's Modules)."""
        refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
        return any(ref.get("uid") == self._module.metadata.uid for ref in refs)

    def on_Retire(self, _: Retire) -> None:
        self._retiring = True
        self.cancel_timer("retry")
        self._retire_step()

    def on_timer(self, name: str) -> None:
        if name == "retire":
            self._deleted -= self._delete_failed
            self._delete_failed.clear()
            self._retire_step()
        elif name == "sign-recheck" and not self._retiring:
            self._recheck_signature()
        elif name == "retry" and not self._retiring:
            if self._build in FAILED:  # check again; the backend replaces a failed build
                self._build = BuildPhase.CHECKING
            self._converge()

    def on_IoDone(self, done: IoDone) -> None:
        self._inflight.discard(done.tag)
        match done.tag:
            case Applied() as tag:
                self._done_apply(tag, done)
            case Deleted() as tag:
                self._done_delete(tag, done)
            case BuildLogRead() as tag:
                self._done_buildlog(tag, done)
            case BuildDeleted() as tag:
                if not done.ok:
                    log.warning(
                        "%s: could not delete build %s: %s", self.describe(), tag.name, done.error
                    )
            case _ if self._retiring:
                pass  # an image check or build start: nothing to deploy any more
            case ImageChecked() as tag:
                self._done_check(tag, done)
            case BuildStarted(image) | SignStarted(image):
                self._done_build(image, done)
            case UnsignedChecked(image):
                self._done_unsigned(image, done)
            case FingerprintRead(image):
                self._done_fingerprint(image, done)

    # --- convergence -------------------------------------------------------------------------

    def _converge(self) -> None:
        if self._retiring:
            return
        try:
            self._targets()
        except RenderError as error:
            # Deterministic for this spec: no retry; a new generation (PlanKernel) tries again.
            log.warning(
                "%s: %s", self.describe(), error, extra=self._log_extra(Reason.RENDER_FAILED)
            )
            self._set_phase(KernelPhase.INVALID, Reason.RENDER_FAILED, str(error))
            return
        makes_image = self._plan.build is not None or self._plan.sign is not None
        if makes_image and self._image_present != self._plan.image:
            if self._rechecking or not self._deployed_now():
                self._resolve_image()
                return
            self._image_present = self._plan.image
            self._delete_succeeded_builds()
            if self._plan.sign is not None and not self.timer_pending("sign-recheck"):
                self.set_timer("sign-recheck", 0)  # trusted as deployed: is its signature current?
        self._deploy()

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
        name, meta = target.name, current.get("metadata") or {}
        seen = (meta.get("uid", ""), int(meta.get("generation", 0)))
        live = pod_images(current)
        if name not in self._generations and live is not None and live != target.images:
            return "edited by someone else"
        known = self._generations.setdefault(name, seen)  # first sight: adopt as it is
        if seen[0] == known[0] and seen[1] > known[1]:
            return "edited by someone else"
        if seen[0] != known[0]:
            self._generations[name] = seen  # recreated (by us or the user): adopt
        return ""

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
        known = self._generations.get(tag.name)
        if known is None or known[0] != written[0] or known[1] < written[1]:
            self._generations[tag.name] = written  # replies may arrive out of order
        if _caught_up(self._io.daemonsets.get(meta.get("namespace", ""), tag.name), written):
            # The watch showed our write before this reply came (a slow reply): those events
            # were judged against the generation before it and may be all we hear.
            self._converge()

    def _report_rollout(self, targets: list[Target], waiting: bool) -> None:
        """Ready when every available node runs our pods: a NotReady or cordoned node is
        counted (nodesUnavailable) but not waited for."""
        objs = [self._io.daemonsets.get(t.namespace, t.name) for t in targets]
        excused = len(self._unavailable)
        readiness = [daemonset_ready(obj, excused) for obj in objs]
        nodes_ready = min(ready for ready, _ in readiness)
        want = len(self._nodes) - excused
        blocked = self._pod_create_failure(objs)
        if not waiting and all(rolled for _, rolled in readiness) and nodes_ready >= want:
            self._set_phase(KernelPhase.READY, "", "", nodes_ready)
            self._troubles.announced = ""
        elif blocked:
            # The DaemonSet controller retries on its own; its DaemonSet events re-judge this.
            message = f"{nodes_ready}/{want} nodes ready; pods cannot be created: {blocked}"
            self._set_phase(KernelPhase.DEGRADED, Reason.POD_CREATE_FAILED, message, nodes_ready)
        elif trouble := self._troubles.verdict(self._unavailable, want):
            # Until the pods run: the kubelets retry (and we rebuild a lost image we make).
            reason, why = trouble
            message = f"{nodes_ready}/{want} nodes ready; {why}"
            self._set_phase(KernelPhase.DEGRADED, reason, message, nodes_ready)
            if self._troubles.announced != reason:  # once, until the kernel is Ready again
                self._troubles.announced = reason
                self._build_event(f"kernel {self._plan.kernel}: {why}", reason)
        else:
            message = f"{nodes_ready}/{want} nodes ready"
            if excused:
                message += f" ({excused} unavailable)"
            self._set_phase(KernelPhase.DEPLOYING, Reason.ROLLING, message, nodes_ready)

    def _pod_create_failure(self, objs: list[Obj | None]) -> str:
        """The latest FailedCreate message of a DaemonSet of ours that still lacks pods."""
        for obj in objs:
            meta, status = (obj or {}).get("metadata") or {}, (obj or {}).get("status") or {}
            failure = self._create_failures.get(meta.get("name", ""))
            if failure is None or failure.uid != meta.get("uid"):
                continue
            # Not desiredNumberScheduled: the controller may not count nodes it failed on.
            if status.get("currentNumberScheduled", 0) >= len(self._nodes - self._unavailable):
                del self._create_failures[failure.daemonset]  # every pod exists now
                continue
            return failure.message
        return ""

    # --- retiring ----------------------------------------------------------------------------

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

    # --- helpers -----------------------------------------------------------------------------

    def _run(self, tag: object, coro: Any) -> None:
        self._inflight.add(tag)
        self.bridge.run(self.actor_ref, tag, coro)

    def _fail(self, reason: str, message: str) -> None:
        log.warning("%s: %s", self.describe(), message, extra=self._log_extra(reason))
        self._set_phase(KernelPhase.DEGRADED, reason, message)
        self.set_timer("retry", self._backoff.next_delay())

    def _set_phase(self, phase: KernelPhase, reason: str, message: str, ready: int = 0) -> None:
        if phase is not self._phase:
            self._metrics.kernel_phase_changed(self._phase, phase)
            self._phase = phase
        self._reason, self._message = reason, message
        status = KernelStatus(
            kernel=self._plan.kernel,
            image=self._plan.image,
            phase=phase,
            build=self._build,
            nodes_desired=len(self._nodes),
            nodes_ready=min(ready, len(self._nodes)),
            nodes_unavailable=len(self._unavailable),
            reason=reason,
            message=message,
        )
        report = KernelReport(self._plan.kernel, status, reason)
        if report != self._last_report:
            self._last_report = report
            self.send(self._supervisor, report)

    def _log_extra(self, reason: str) -> dict[str, object]:
        return log_fields(module=self._module.key, kernel=self._plan.kernel, reason=reason)


def _caught_up(cached: Obj | None, written: tuple[str, int]) -> bool:
    """The cache holds the object we wrote, or a later version of it."""
    meta = (cached or {}).get("metadata") or {}
    return meta.get("uid") == written[0] and int(meta.get("generation", 0)) >= written[1]
