"""The signing flow of one kernel as a pure transition: `sign_step(phase, event, builds)` says
what a reply means in the kernel's current build phase (`BuildPhase`) and what to do next. The
kernel actor (actors/kernel_signing.py) only performs the step.

    Checking --signature missing--> check the unsigned image
             --unsigned present---> Signing (start the sign Job)
             --unsigned missing---> Building (build it; needs `build`) | ImageMissing
    Built    --unsigned present---> Signing     --unsigned missing--> ImageMissing
    Signing  --sign succeeded-----> Signed (check the signed image again, fresh)
             --sign failed--------> SignFailed (SignFailed)   --refused--> SignSecretInvalid
    Signed   --signature missing--> ImageMissing (signed, yet the registry disagrees)
    Checking/Signed --signed for another Module--> SignConflict (no sign: reported, retried)
    any but Building/Signing --certificate changed--> Checking (check the signature, fresh)

A signed image that carries another certificate's fingerprint is signed again only when it was
signed for this Module (a key rotation) or says for none (older ooto, or not signed by ooto);
signed for another Module that still signs it, it is a conflict: two Modules sign one image with
two certificates, and re-signing would make them take turns forever (a new digest, every node
rolled, each time). "Still signs it" (`signs_image`) is judged from the caches when the question
comes, with the planner the other Module's own supervisor uses: one kernel of the nodes it
selects maps to this image with a `sign`. The retry after backoff checks again: once the other
Module is gone (or being deleted), or its mappings or its nodes' kernels no longer lead it to
this image, this Module signs the image, once, and owns it from then on.

A reply that arrives in a phase that does not wait for it (late: the kernel moved on; duplicate:
the first copy already moved it; out of order: a check answered after the sign it led to) changes
nothing: that is what keeps a stale "unsigned image present" from starting a second sign.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ooto.domain.api import BuildPhase, Module
from ooto.domain.kernels import SpecError, plan_kernel
from ooto.domain.reasons import Reason


class SignEvent(StrEnum):
    SIGNATURE_MISSING = "SignatureMissing"  # the signed image is absent or signed by another cert
    SIGNED_FOR_OTHER = "SignedForOther"  # ... by another cert, for another Module that exists
    UNSIGNED_PRESENT = "UnsignedPresent"
    UNSIGNED_MISSING = "UnsignedMissing"
    UNSIGNED_UNKNOWN = "UnsignedUnknown"  # the registry could not say
    SIGN_SUCCEEDED = "SignSucceeded"
    SIGN_FAILED = "SignFailed"
    SIGN_REFUSED = "SignRefused"  # a signing Secret is missing or garbled: no Job started
    CERT_SAME = "CertificateSame"
    CERT_CHANGED = "CertificateChanged"
    CERT_INVALID = "CertificateInvalid"  # the certificate Secret is missing or garbled
    CERT_UNREADABLE = "CertificateUnreadable"  # the API server could not say


class SignAction(StrEnum):
    NOTHING = "Nothing"
    CHECK_UNSIGNED = "CheckUnsigned"
    START_BUILD = "StartBuild"
    START_SIGN = "StartSign"
    CHECK_SIGNATURE = "CheckSignature"  # fresh: past the registry cache
    FAIL = "Fail"


@dataclass(frozen=True)
class SignStep:
    phase: BuildPhase
    action: SignAction = SignAction.NOTHING
    reason: str = ""  # the condition reason of a FAIL


_BUSY = (BuildPhase.BUILDING, BuildPhase.SIGNING)
_WAITS_FOR_UNSIGNED = (BuildPhase.CHECKING, BuildPhase.BUILT)
_UNSIGNED_REPLIES = (
    SignEvent.UNSIGNED_PRESENT,
    SignEvent.UNSIGNED_MISSING,
    SignEvent.UNSIGNED_UNKNOWN,
)
_SIGN_ENDS = {
    SignEvent.SIGN_SUCCEEDED: SignStep(BuildPhase.SIGNED, SignAction.CHECK_SIGNATURE),
    SignEvent.SIGN_FAILED: SignStep(BuildPhase.SIGN_FAILED, SignAction.FAIL, Reason.SIGN_FAILED),
    SignEvent.SIGN_REFUSED: SignStep(
        BuildPhase.SIGN_FAILED, SignAction.FAIL, Reason.SIGN_SECRET_INVALID
    ),
}


def mismatch_event(signed_for: str, own: str, other_signs: bool) -> SignEvent:
    """The event of a signed image that lacks our fingerprint, by its signed-for label (`own`:
    our Module's namespace/name; `other_signs`: the Module it names still signs the image)."""
    if signed_for and signed_for != own and other_signs:
        return SignEvent.SIGNED_FOR_OTHER
    return SignEvent.SIGNATURE_MISSING


def signs_image(module: Module, kernels: Iterable[str], image: str) -> bool:
    """Whether `module` signs `image` for one of `kernels` (the kernels of the nodes it
    selects). A kernel its mappings cannot plan (SpecError) counts as signing: an image is never
    taken over on a guess."""
    for kernel in kernels:
        try:
            plan = plan_kernel(module, kernel)
        except SpecError:
            return True
        if plan is not None and plan.sign is not None and plan.image == image:
            return True
    return False


def sign_step(phase: BuildPhase, event: SignEvent, builds: bool) -> SignStep:
    """The next phase and action for `event` in `phase`; `builds`: the mapping builds the
    unsigned image. Unchanged phase and NOTHING for a reply the phase does not wait for."""
    stay = SignStep(phase)
    if event is SignEvent.SIGNATURE_MISSING:
        if phase is BuildPhase.SIGNED:
            return SignStep(phase, SignAction.FAIL, Reason.IMAGE_MISSING)
        if phase is BuildPhase.CHECKING:
            return SignStep(phase, SignAction.CHECK_UNSIGNED)
        return stay
    if event is SignEvent.SIGNED_FOR_OTHER:
        if phase in (BuildPhase.CHECKING, BuildPhase.SIGNED):
            return SignStep(phase, SignAction.FAIL, Reason.SIGN_CONFLICT)
        return stay
    if event in _UNSIGNED_REPLIES:
        return _unsigned_step(phase, event, builds) if phase in _WAITS_FOR_UNSIGNED else stay
    if event in _SIGN_ENDS:
        return _SIGN_ENDS[event] if phase is BuildPhase.SIGNING else stay
    if event is SignEvent.CERT_CHANGED and phase not in _BUSY:
        return SignStep(BuildPhase.CHECKING, SignAction.CHECK_SIGNATURE)
    if event is SignEvent.CERT_INVALID and phase not in _BUSY:
        return SignStep(phase, SignAction.FAIL, Reason.SIGN_SECRET_INVALID)
    if event is SignEvent.CERT_UNREADABLE and phase not in _BUSY:
        return SignStep(phase, SignAction.FAIL, Reason.IMAGE_CHECK_FAILED)
    return stay


def _unsigned_step(phase: BuildPhase, event: SignEvent, builds: bool) -> SignStep:
    if event is SignEvent.UNSIGNED_PRESENT:
        return SignStep(BuildPhase.SIGNING, SignAction.START_SIGN)
    if event is SignEvent.UNSIGNED_UNKNOWN:
        return SignStep(phase, SignAction.FAIL, Reason.IMAGE_CHECK_FAILED)
    if builds and phase is BuildPhase.CHECKING:
        return SignStep(BuildPhase.BUILDING, SignAction.START_BUILD)
    return SignStep(phase, SignAction.FAIL, Reason.IMAGE_MISSING)  # no build, or ours did not land
