"""KernelActor: one (Module, kernel). Owns that kernel's image check, build and DaemonSets.

    Resolving --(image present / no build)--> Deploying --(pods ready)--> Ready
        |                                        ^
        +--(image missing)--> Building --(ok)----+      (failed: Degraded, retry after backoff)
    Retire: delete our DaemonSets (those the cache shows, and those a write still in flight
    creates), then KernelRetired to the supervisor, then stop: never while a write is in flight
    or the cache still shows one of them.

Cluster state is the truth: before writing, the actor reads the informer cache, and it writes only
when the stored spec-hash differs from the rendered one.

This module holds the actor's state and messages; its steps are mixins, one concern each:
actors/kernel_builds.py (image check and build), actors/kernel_signing.py (signing),
actors/kernel_daemonsets.py (render, write, retire) and actors/kernel_status.py (phase, report).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actors.base import Backoff, OotoActor
from actors.kernel_builds import KernelBuilds
from actors.kernel_daemonsets import KernelDaemonSets, RenderError, WrittenGenerations
from actors.kernel_signing import (
    FAILED,
    FingerprintRead,
    KernelSigning,
    SignStarted,
    UnsignedChecked,
)
from actors.kernel_status import CreateFailures, KernelReporting
from actors.loader_troubles import LoaderTroubles
from actors.messages import (
    BuildObserved,
    ChildDied,
    DaemonSetObserved,
    ImagePullFailed,
    IoDone,
    KernelReport,
    LoaderPodTrouble,
    PlanKernel,
    PodCreateFailed,
    Retire,
)
from actors.ports import ActorContext
from actors.replies import (
    Applied,
    BuildDeleted,
    BuildLogRead,
    BuildStarted,
    Deleted,
    FailedBuild,
    ImageChecked,
)
from ooto.domain.api import BuildPhase, KernelPhase, Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import Reason
from ooto.domain.render import RenderOptions
from ooto.domain.stored import Target, uid_of
from ooto.logs import log_fields

log = logging.getLogger(__name__)


class KernelActor(OotoActor, KernelReporting, KernelDaemonSets, KernelBuilds, KernelSigning):
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
        self._create_failures = CreateFailures()  # why pods of our DaemonSets cannot be created
        self._troubles = LoaderTroubles()  # our loader pods that cannot pull or keep crashing
        self._phase: KernelPhase | None = None
        self._build = BuildPhase.NOT_NEEDED if plan.build is None else BuildPhase.CHECKING
        self._image_present: str | None = None  # the image the registry last said exists
        self._inflight: set[object] = set()  # reply tags of the I/O we wait for
        self._deleted: set[str] = set()  # uids we deleted; the cache may show them a while longer
        self._delete_failed: set[str] = set()  # ... and those whose delete failed (retry later)
        self._generations = WrittenGenerations()  # of our DaemonSets: what we wrote or adopted
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
        self._create_failures.observe(failure)
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

    # --- helpers -----------------------------------------------------------------------------

    def _run(self, tag: object, coro: Any) -> None:
        self._inflight.add(tag)
        self.bridge.run(self.actor_ref, tag, coro)

    def _fail(self, reason: str, message: str) -> None:
        log.warning("%s: %s", self.describe(), message, extra=self._log_extra(reason))
        self._set_phase(KernelPhase.DEGRADED, reason, message)
        self.set_timer("retry", self._backoff.next_delay())

    def _log_extra(self, reason: str) -> dict[str, object]:
        return log_fields(module=self._module.key, kernel=self._plan.kernel, reason=reason)
