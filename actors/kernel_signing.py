"""The signing steps of a KernelActor whose mapping signs (a mixin: the actor's state, these
handlers). Kept apart so actors/kernel_builds.py stays about one image's check and build. What
each reply means in each build phase is decided by `ooto.domain.sign_flow.sign_step` (pure, tested
exhaustively); these handlers turn replies into its events and perform its actions.

    Resolving: is the signed image there, labelled with the current certificate's fingerprint?
        yes -> Deploying
        no  -> is the unsigned image there?  yes -> Signing    no -> Building (unsigned) -> Signing
    Signing --(ok)--> Signed: check the signed image again -> Deploying
            --(failed)--> SignFailed (Event with the log tail), retried after backoff

A key rotation (new certificate in the same Secret) is noticed by a timer: every
`sign_recheck_seconds` the actor asks for the current fingerprint (the certificate Secret is read
once per interval for all kernels, no registry request); only when it differs from the label seen
on the deployed image does it check and sign again, once. A signed image labelled with another
certificate AND signed for another Module that still signs it is not signed again:
SignConflict (Degraded, one Event), checked again after backoff, taken over once that Module is
gone or no longer signs the image (`_signer_still_signs`: judged from the Module and Node caches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from actors.messages import IoDone
from actors.node_tracker import node_view, selects
from actors.ports import ActorMetrics, ActorSettings, OperatorIO
from ooto.domain.api import BuildPhase, KernelPhase, Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.reasons import Reason
from ooto.domain.sign_flow import (
    SignAction,
    SignEvent,
    mismatch_event,
    sign_step,
    signs_image,
)
from ooto.domain.signing import CertificateError
from ooto.domain.validation import validate_module

log = logging.getLogger("actors.kernel")

FAILED = (BuildPhase.FAILED, BuildPhase.SIGN_FAILED)
_UNSIGNED_EVENTS = {"present": SignEvent.UNSIGNED_PRESENT, "missing": SignEvent.UNSIGNED_MISSING}


# Reply tags of the signing steps (KernelActor.on_IoDone dispatches on them).
@dataclass(frozen=True, slots=True)
class UnsignedChecked:
    image: str


@dataclass(frozen=True, slots=True)
class SignStarted:
    image: str


@dataclass(frozen=True, slots=True)
class FingerprintRead:
    image: str


class KernelSigning:
    """Mixin for KernelActor; every attribute used here is the actor's."""

    _plan: KernelPlan
    _module: Module
    _io: OperatorIO
    _settings: ActorSettings
    _metrics: ActorMetrics
    _build: BuildPhase
    _signed_by: str
    _rechecking: bool
    _image_present: str | None
    _conflict_with: str  # the Module our SignConflict Event named ("" for none)

    def _check_signature(self, fresh: bool = False) -> None:
        image = self._plan.image
        self._set_phase(KernelPhase.RESOLVING, "", f"checking {image} and its signature")
        self._run_check(self._io.check_signature(self._module, self._plan, fresh=fresh))

    def _signature_missing(self, message: str, signed_for: str) -> None:
        """The signed image is missing or signed with another certificate (`signed_for`: the
        Module its signed-for label names, "" for none)."""
        other_signs = signed_for != self._module.key and self._signer_still_signs(signed_for)
        event = mismatch_event(signed_for, self._module.key, other_signs)
        step = sign_step(self._build, event, self._plan.build is not None)
        if step.reason == Reason.SIGN_CONFLICT:
            conflict = _conflict_message(message, signed_for)
            if self._conflict_with != signed_for:  # one Event, not one per retry
                self._conflict_with = signed_for
                self._build_event(f"kernel {self._plan.kernel}: {conflict}", step.reason)
            self._fail(step.reason, conflict)
        elif step.action is SignAction.FAIL:
            self._fail(step.reason, f"signed, but {message}")
        elif step.action is SignAction.CHECK_UNSIGNED:
            log.info("%s: %s", self.describe(), message, extra=self._log_extra("SignatureMissing"))
            self._check_unsigned(fresh=False)

    def _signer_still_signs(self, signed_for: str) -> bool:
        """Whether the Module `signed_for` names (namespace/name) still signs our image: in the
        Module cache, not being deleted, and one kernel of the nodes it selects maps to the image
        with a sign. A spec that cannot be read or is invalid counts as signing (its last valid
        DaemonSets keep running; never take an image over on a guess)."""
        ns, _, name = signed_for.partition("/")
        raw = self._io.modules.get(ns, name) if signed_for else None
        if raw is None or (raw.get("metadata") or {}).get("deletionTimestamp"):
            return False
        try:
            other = Module.model_validate(raw)
        except ValidationError:
            return True
        if validate_module(other, self._settings.module_policy):
            return True
        kernels = set()
        for node in self._io.nodes.list():
            view = node_view(node)
            if view.kernel is not None and selects(other.spec.selector, view.labels):
                kernels.add(view.kernel)
        return signs_image(other, kernels, self._plan.image)

    def _check_unsigned(self, fresh: bool) -> None:
        assert self._plan.sign is not None
        check = self._io.check_unsigned(self._module, self._plan, fresh=fresh)
        self._run(UnsignedChecked(self._plan.sign.unsigned_image), check)

    def _done_unsigned(self, image: str, done: IoDone) -> None:
        if self._plan.sign is None or image != self._plan.sign.unsigned_image:
            return
        outcome = done.result.outcome if done.ok else "error"
        event = _UNSIGNED_EVENTS.get(outcome, SignEvent.UNSIGNED_UNKNOWN)
        step = sign_step(self._build, event, self._plan.build is not None)
        if step.action is SignAction.START_SIGN:
            self._start_sign()
        elif step.action is SignAction.START_BUILD:
            self._start_build()
        elif step.action is SignAction.FAIL:
            self._fail(step.reason, self._unsigned_problem(event, done))

    def _unsigned_problem(self, event: SignEvent, done: IoDone) -> str:
        assert self._plan.sign is not None
        unsigned = self._plan.sign.unsigned_image
        if event is SignEvent.UNSIGNED_UNKNOWN:
            return f"cannot check {unsigned}: {done.result.message if done.ok else done.error}"
        if self._build is BuildPhase.BUILT:
            return f"build finished but {unsigned} is not in the registry"
        return f"the unsigned image {unsigned} is not in the registry"

    def _start_sign(self) -> None:
        self._build = BuildPhase.SIGNING
        image = self._plan.image
        self._set_phase(KernelPhase.BUILDING, Reason.SIGNING, f"signing {image}")
        log.info("%s signs %s", self.describe(), image, extra=self._log_extra(Reason.SIGNING))
        self._begin_build_object(sign=True)
        self._run(SignStarted(image), self._io.start_sign(self._module, self._plan))

    def _sign_not_started(self, error: CertificateError) -> None:
        """start_sign refused: a signing Secret is missing or garbled."""
        step = sign_step(self._build, SignEvent.SIGN_REFUSED, self._plan.build is not None)
        if step.action is SignAction.FAIL:
            self._metrics.sign_finished(False)
            self._build = step.phase
            self._fail(step.reason, str(error))

    def _sign_done(self, succeeded: bool) -> None:
        """The sign Job ended; the caller reports a failure (Event with the log tail)."""
        event = SignEvent.SIGN_SUCCEEDED if succeeded else SignEvent.SIGN_FAILED
        step = sign_step(self._build, event, self._plan.build is not None)
        if step.action is SignAction.NOTHING:
            return
        self._metrics.sign_finished(succeeded)
        self._build = step.phase
        if step.action is SignAction.CHECK_SIGNATURE:
            self._check_signature(fresh=True)

    def _signature_present(self, signed_by: str) -> None:
        self._signed_by, self._conflict_with = signed_by, ""
        self.set_timer("sign-recheck", self._settings.sign_recheck_seconds)

    def _recheck_signature(self) -> None:
        """Timer: has the certificate changed since the image was signed?"""
        if self._plan.sign is not None:
            fingerprint = self._io.current_fingerprint(self._module, self._plan)
            self._run(FingerprintRead(self._plan.image), fingerprint)

    def _done_fingerprint(self, image: str, done: IoDone) -> None:
        if self._plan.sign is None or image != self._plan.image:
            return
        self.set_timer("sign-recheck", self._settings.sign_recheck_seconds)
        if not done.ok:
            invalid = isinstance(done.error, CertificateError)
            event = SignEvent.CERT_INVALID if invalid else SignEvent.CERT_UNREADABLE
        else:
            changed = done.result != self._signed_by
            event = SignEvent.CERT_CHANGED if changed else SignEvent.CERT_SAME
        step = sign_step(self._build, event, self._plan.build is not None)
        if step.action is SignAction.FAIL:
            self._fail(step.reason, str(done.error))
        elif step.action is SignAction.CHECK_SIGNATURE:
            log.info(
                "%s: certificate changed", self.describe(), extra=self._log_extra("KeyRotated")
            )
            self._rechecking = True
            self._image_present = None
            self._build = step.phase
            self._check_signature(fresh=True)

    if TYPE_CHECKING:  # provided by KernelActor and OotoActor

        def describe(self) -> str: ...
        def _log_extra(self, reason: str) -> dict[str, object]: ...
        def _set_phase(self, phase: KernelPhase, reason: str, message: str) -> None: ...
        def _run(self, tag: object, coro: Any) -> None: ...
        def _fail(self, reason: str, message: str) -> None: ...
        def _build_event(self, message: str, reason: str) -> None: ...
        def _start_build(self) -> None: ...
        def _begin_build_object(self, sign: bool) -> None: ...
        def _done_build(self, image: str, done: IoDone) -> None: ...
        def _run_check(self, coro: Any) -> None: ...
        def set_timer(self, name: str, delay: float) -> None: ...


def _conflict_message(message: str, other: str) -> str:
    return (
        f"{message}: Module {other} signs the same image with another certificate; not signing "
        f"it again (the two would re-sign it in turn). Give one of them another containerImage "
        f"or the same sign Secrets; once {other} is deleted or no longer signs this image, this "
        f"Module signs it"
    )
