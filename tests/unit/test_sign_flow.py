"""The signing flow's transition, every (build phase, event, builds?) triple: the expected step
is written out for the pairs that move the kernel; every other pair (a late, duplicate or
out-of-order reply) must leave the phase as it is and do nothing. The actor side (replies turned
into events, steps performed) is exercised end to end in tests/integration/test_signing.py."""

from __future__ import annotations

import itertools

import pytest

from ooto.domain.api import BuildPhase as P
from ooto.domain.api import Module
from ooto.domain.sign_flow import SignAction as A
from ooto.domain.sign_flow import SignEvent as E
from ooto.domain.sign_flow import SignStep, mismatch_event, sign_step, signs_image

IDLE = (P.NOT_NEEDED, P.CHECKING, P.BUILT, P.FAILED, P.SIGNED, P.SIGN_FAILED)


def _moves() -> dict[tuple[P, E, bool], SignStep]:
    moves: dict[tuple[P, E, bool], SignStep] = {}
    for builds in (False, True):
        moves |= {
            (P.CHECKING, E.SIGNATURE_MISSING, builds): SignStep(P.CHECKING, A.CHECK_UNSIGNED),
            (P.SIGNED, E.SIGNATURE_MISSING, builds): SignStep(P.SIGNED, A.FAIL, "ImageMissing"),
            (P.CHECKING, E.SIGNED_FOR_OTHER, builds): SignStep(P.CHECKING, A.FAIL, "SignConflict"),
            (P.SIGNED, E.SIGNED_FOR_OTHER, builds): SignStep(P.SIGNED, A.FAIL, "SignConflict"),
            (P.SIGNING, E.SIGN_SUCCEEDED, builds): SignStep(P.SIGNED, A.CHECK_SIGNATURE),
            (P.SIGNING, E.SIGN_FAILED, builds): SignStep(P.SIGN_FAILED, A.FAIL, "SignFailed"),
            (P.SIGNING, E.SIGN_REFUSED, builds): SignStep(
                P.SIGN_FAILED, A.FAIL, "SignSecretInvalid"
            ),
        }
        for phase in (P.CHECKING, P.BUILT):  # the phases that wait for the unsigned check
            moves[(phase, E.UNSIGNED_PRESENT, builds)] = SignStep(P.SIGNING, A.START_SIGN)
            moves[(phase, E.UNSIGNED_UNKNOWN, builds)] = SignStep(phase, A.FAIL, "ImageCheckFailed")
        moves[(P.BUILT, E.UNSIGNED_MISSING, builds)] = SignStep(P.BUILT, A.FAIL, "ImageMissing")
        for phase in IDLE:  # a rotation, or a certificate gone bad, is acted on unless busy
            moves[(phase, E.CERT_CHANGED, builds)] = SignStep(P.CHECKING, A.CHECK_SIGNATURE)
            moves[(phase, E.CERT_INVALID, builds)] = SignStep(phase, A.FAIL, "SignSecretInvalid")
            moves[(phase, E.CERT_UNREADABLE, builds)] = SignStep(phase, A.FAIL, "ImageCheckFailed")
    moves[(P.CHECKING, E.UNSIGNED_MISSING, True)] = SignStep(P.BUILDING, A.START_BUILD)
    moves[(P.CHECKING, E.UNSIGNED_MISSING, False)] = SignStep(P.CHECKING, A.FAIL, "ImageMissing")
    return moves


MOVES = _moves()
ALL = list(itertools.product(P, E, (False, True)))


def test_every_pair_is_covered_and_the_table_names_only_real_pairs() -> None:
    assert set(MOVES) <= set(ALL)
    assert len(ALL) == len(P) * len(E) * 2


@pytest.mark.parametrize(("phase", "event", "builds"), ALL)
def test_each_phase_and_event(phase: P, event: E, builds: bool) -> None:
    expected = MOVES.get((phase, event, builds), SignStep(phase))  # anything else: ignored
    assert sign_step(phase, event, builds) == expected


def test_a_duplicate_unsigned_reply_starts_one_sign_only() -> None:
    first = sign_step(P.CHECKING, E.UNSIGNED_PRESENT, True)
    assert first == SignStep(P.SIGNING, A.START_SIGN)
    assert sign_step(first.phase, E.UNSIGNED_PRESENT, True) == SignStep(P.SIGNING)


def test_an_unsigned_check_answered_after_the_sign_it_led_to_changes_nothing() -> None:
    """Out of order: the sign succeeded and the kernel is Signed when a stale 'present' (or
    'missing') of the unsigned image arrives: no second sign, no build, no failure."""
    for event in (E.UNSIGNED_PRESENT, E.UNSIGNED_MISSING, E.UNSIGNED_UNKNOWN):
        assert sign_step(P.SIGNED, event, True) == SignStep(P.SIGNED)


def test_a_late_sign_outcome_after_a_rotation_restarted_the_check_is_ignored() -> None:
    for event in (E.SIGN_SUCCEEDED, E.SIGN_FAILED, E.SIGN_REFUSED):
        assert sign_step(P.CHECKING, event, True) == SignStep(P.CHECKING)
        assert sign_step(P.SIGNED, event, True) == SignStep(P.SIGNED)


def test_a_rotation_seen_while_building_or_signing_waits_for_it() -> None:
    """The running sign's result is checked against the current certificate afterwards
    (SIGNED -> CHECK_SIGNATURE): a mismatch then is ImageMissing, and the retry signs again."""
    for phase in (P.BUILDING, P.SIGNING):
        for event in (E.CERT_CHANGED, E.CERT_INVALID, E.CERT_UNREADABLE):
            assert sign_step(phase, event, True) == SignStep(phase)


def test_a_whole_rotation_signs_exactly_once() -> None:
    path = [
        (P.SIGNED, E.CERT_CHANGED, SignStep(P.CHECKING, A.CHECK_SIGNATURE)),
        (P.CHECKING, E.SIGNATURE_MISSING, SignStep(P.CHECKING, A.CHECK_UNSIGNED)),
        (P.CHECKING, E.UNSIGNED_PRESENT, SignStep(P.SIGNING, A.START_SIGN)),
        (P.SIGNING, E.CERT_CHANGED, SignStep(P.SIGNING)),  # the next recheck, mid-sign
        (P.SIGNING, E.SIGN_SUCCEEDED, SignStep(P.SIGNED, A.CHECK_SIGNATURE)),
        (P.SIGNED, E.CERT_SAME, SignStep(P.SIGNED)),
    ]
    starts = 0
    for phase, event, expected in path:
        step = sign_step(phase, event, True)
        assert step == expected
        starts += step.action is A.START_SIGN
    assert starts == 1


OWN, OTHER = "team-a/driver", "team-b/driver"


@pytest.mark.parametrize(
    ("signed_for", "other_signs", "expected"),
    [
        (OWN, True, E.SIGNATURE_MISSING),  # signed for us with an older certificate: a rotation
        ("", False, E.SIGNATURE_MISSING),  # older ooto, or not signed by ooto: ours to sign
        (OTHER, True, E.SIGNED_FOR_OTHER),  # another Module's signature: a conflict
        (OTHER, False, E.SIGNATURE_MISSING),  # gone, or signs it no more: we take it over
    ],
)
def test_a_fingerprint_mismatch_is_a_rotation_only_for_our_own_module(
    signed_for: str, other_signs: bool, expected: E
) -> None:
    assert mismatch_event(signed_for, OWN, other_signs) is expected


def test_two_modules_with_two_certificates_sign_one_image_once_each_then_report() -> None:
    """Module A signed the image; B finds A's signature, and A's recheck then finds B's (if B
    ever signed): neither starts a sign, however often they check, until the other is gone."""
    for _ in range(5):  # every recheck interval, every retry after backoff
        event = mismatch_event(OWN, OTHER, other_signs=True)
        step = sign_step(P.CHECKING, event, builds=False)
        assert step == SignStep(P.CHECKING, A.FAIL, "SignConflict")
    event = mismatch_event(OWN, OTHER, other_signs=False)  # A deleted, or signs it no more
    assert sign_step(P.CHECKING, event, builds=False).action is A.CHECK_UNSIGNED


def test_a_sign_overwritten_by_another_module_is_a_conflict_not_a_missing_image() -> None:
    """Both Modules signed at once; the fresh check after ours finds the other's label."""
    event = mismatch_event(OTHER, OWN, other_signs=True)
    assert sign_step(P.SIGNED, event, builds=True) == SignStep(P.SIGNED, A.FAIL, "SignConflict")


K1, K2 = "6.1.0-18-amd64", "6.8.0-31-generic"
SIGN = {"keySecret": {"name": "k"}, "certSecret": {"name": "c"}, "filesToSign": ["/a.ko"]}


def signer(*mappings: dict[str, object]) -> Module:
    return Module.model_validate(
        {
            "metadata": {"name": "driver", "namespace": "team-b"},
            "spec": {"moduleLoader": {"image": "x"}, "kernelMappings": list(mappings)},
        }
    )


def signed(match: dict[str, str], image: str) -> dict[str, object]:
    return {**match, "containerImage": image, "sign": {**SIGN, "unsignedImage": "r.io/u:1"}}


@pytest.mark.parametrize(
    ("module", "kernels", "signs"),
    [
        (signer(signed({"regexp": "^6"}, "r.io/d:${KERNEL_FULL_VERSION}")), [K1], True),
        # its nodes run another kernel only (or it selects none): another image, or none
        (signer(signed({"regexp": "^6"}, "r.io/d:${KERNEL_FULL_VERSION}")), [K2], False),
        (signer(signed({"regexp": "^6"}, "r.io/d:${KERNEL_FULL_VERSION}")), [], False),
        # its mapping now names another image
        (signer(signed({"regexp": "^6"}, "r.io/d:v2-${KERNEL_FULL_VERSION}")), [K1], False),
        # it maps the image without signing it: nothing to re-sign in turn
        (signer({"literal": K1, "containerImage": f"r.io/d:{K1}"}), [K1], False),
        # no mapping for the kernel
        (signer(signed({"literal": K2}, f"r.io/d:{K1}")), [K1], False),
        # a mapping that cannot be planned for the kernel: unknown, so still signing
        (signer(signed({"regexp": "^6"}, "r.io/d:${nope}")), [K1], True),
    ],
)
def test_whether_a_module_still_signs_an_image(
    module: Module, kernels: list[str], signs: bool
) -> None:
    assert signs_image(module, kernels, f"r.io/d:{K1}") is signs
