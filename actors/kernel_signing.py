"""The signing steps of a KernelActor whose mapping signs (a mixin: the actor's state, these
handlers). Kept apart so actors/kernel.py stays about one image's check, build and rollout.

    Resolving: is the signed image there, labelled with the current certificate's fingerprint?
        yes -> Deploying
        no  -> is the unsigned image there?  yes -> Signing    no -> Building (unsigned) -> Signing
    Signing --(ok)--> Signed: check the signed image again -> Deploying
            --(failed)--> SignFailed (Event with the log tail), retried after backoff

A key rotation (new certificate in the same Secret) is noticed by a timer: every
`sign_recheck_seconds` the actor asks for the current fingerprint (the certificate Secret is read
once per interval for all kernels, no registry request); only when it differs from the label seen
on the deployed image does it check and sign again, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.messages import IoDone
from actors.ports import ActorMetrics, ActorSettings, OperatorIO
from ooto.api import BuildPhase, KernelPhase, Module
from ooto.kernels import KernelPlan
from ooto.signing import CertificateError

log = logging.getLogger("actors.kernel")

FAILED = (BuildPhase.FAILED, BuildPhase.SIGN_FAILED)


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

    def _check_signature(self, fresh: bool = False) -> None:
        image = self._plan.image
        self._set_phase(KernelPhase.RESOLVING, "", f"checking {image} and its signature")
        self._run_check(self._io.check_signature(self._module, self._plan, fresh=fresh))

    def _signature_missing(self, message: str) -> None:
        """The signed image is missing or signed with another certificate."""
        if self._build is BuildPhase.SIGNED:
            self._fail("ImageMissing", f"signed, but {message}")
            return
        log.info("%s: %s", self.describe(), message, extra=self._log_extra("SignatureMissing"))
        self._check_unsigned(fresh=self._build is BuildPhase.BUILT)

    def _check_unsigned(self, fresh: bool) -> None:
        assert self._plan.sign is not None
        check = self._io.check_unsigned(self._module, self._plan, fresh=fresh)
        self._run(UnsignedChecked(self._plan.sign.unsigned_image), check)

    def _done_unsigned(self, image: str, done: IoDone) -> None:
        if self._plan.sign is None or image != self._plan.sign.unsigned_image:
            return
        outcome = done.result.outcome if done.ok else "error"
        message = done.result.message if done.ok else str(done.error)
        unsigned = self._plan.sign.unsigned_image
        if outcome == "present":
            self._start_sign()
        elif outcome == "missing" and self._plan.build is not None:
            if self._build is BuildPhase.BUILT:
                self._fail("ImageMissing", f"build finished but {unsigned} is not in the registry")
            else:
                self._start_build()
        elif outcome == "missing":
            self._fail("ImageMissing", f"the unsigned image {unsigned} is not in the registry")
        else:
            self._fail("ImageCheckFailed", f"cannot check {unsigned}: {message}")

    def _start_sign(self) -> None:
        self._build = BuildPhase.SIGNING
        image = self._plan.image
        self._set_phase(KernelPhase.BUILDING, "Signing", f"signing {image}")
        log.info("%s signs %s", self.describe(), image, extra=self._log_extra("Signing"))
        self._begin_build_object(sign=True)
        self._run(SignStarted(image), self._io.start_sign(self._module, self._plan))

    def _sign_not_started(self, error: CertificateError) -> None:
        """start_sign refused: a signing Secret is missing or garbled."""
        self._metrics.sign_finished(False)
        self._build = BuildPhase.SIGN_FAILED
        self._fail("SignSecretInvalid", str(error))

    def _sign_done(self, succeeded: bool) -> None:
        self._metrics.sign_finished(succeeded)
        self._build = BuildPhase.SIGNED if succeeded else BuildPhase.SIGN_FAILED
        if succeeded:
            self._check_signature(fresh=True)

    def _signature_present(self, signed_by: str) -> None:
        self._signed_by = signed_by
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
            reason = "SignSecretInvalid" if isinstance(done.error, CertificateError) else ""
            self._fail(reason or "ImageCheckFailed", str(done.error))
            return
        if done.result != self._signed_by and self._build not in (
            BuildPhase.BUILDING,
            BuildPhase.SIGNING,
        ):
            log.info(
                "%s: certificate changed", self.describe(), extra=self._log_extra("KeyRotated")
            )
            self._rechecking = True
            self._image_present = None
            self._build = BuildPhase.CHECKING
            self._check_signature(fresh=True)

    if TYPE_CHECKING:  # provided by KernelActor and OotoActor

        def describe(self) -> str: ...
        def _log_extra(self, reason: str) -> dict[str, object]: ...
        def _set_phase(self, phase: KernelPhase, reason: str, message: str) -> None: ...
        def _run(self, tag: object, coro: Any) -> None: ...
        def _fail(self, reason: str, message: str) -> None: ...
        def _start_build(self) -> None: ...
        def _begin_build_object(self, sign: bool) -> None: ...
        def _done_build(self, image: str, done: IoDone) -> None: ...
        def _run_check(self, coro: Any) -> None: ...
        def set_timer(self, name: str, delay: float) -> None: ...
