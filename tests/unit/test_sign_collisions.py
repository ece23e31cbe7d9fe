"""Two mappings of one Module giving one signed image two different sign Secrets would re-sign it
in turn: refused by validation when the image does not depend on the kernel, held per kernel
(`SignCollision`) when only kernels tell. The supervisor's side runs end to end in
tests/integration/test_sign_conflict.py."""

from __future__ import annotations

from typing import Any

import pytest

from ooto.domain.api.module import Module
from ooto.domain.kernels import SpecError, plan_kernel
from ooto.domain.sign_collisions import kernel_collisions, waiting_kernels
from ooto.domain.validation import ModulePolicy, validate_module

K1, K2, K3 = "6.1.0-18-amd64", "6.1.0-18-cloud-amd64", "6.8.0-31-generic"


def sign(who: str) -> dict[str, Any]:
    return {
        "keySecret": {"name": f"{who}-key"},
        "certSecret": {"name": f"{who}-cert"},
        "filesToSign": ["/lib/modules/${KERNEL_FULL_VERSION}/*.ko"],
        "unsignedImage": "q.io/m:unsigned-${KERNEL_FULL_VERSION}",
    }


def module(*mappings: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "mod", "namespace": "ns"},
        "spec": {"moduleLoader": {"image": "x"}, "kernelMappings": list(mappings), **spec},
    }


def errors(raw: dict[str, Any]) -> list[str]:
    found = validate_module(raw, ModulePolicy())
    assert validate_module(Module.model_validate(raw), ModulePolicy()) == found
    return [str(error) for error in found]


def test_two_mappings_giving_one_fixed_image_two_keys_are_refused_naming_both() -> None:
    raw = module(
        {"regexp": "amd64$", "containerImage": "q.io/m:v1", "sign": sign("a")},
        {"regexp": "generic$", "containerImage": "q.io/m:v1", "sign": sign("b")},
    )
    (error,) = errors(raw)
    assert error.startswith("spec.kernelMappings[1].containerImage: gives the image q.io/m:v1")
    assert "spec.kernelMappings[0].containerImage" in error
    assert "spec.kernelMappings[1].sign: keySecret b-key/" in error
    assert "spec.kernelMappings[0].sign: keySecret a-key/" in error


def test_literal_mappings_are_resolved_for_their_own_kernel() -> None:
    """Two literals whose KERNEL_XYZ is the same give one image; spec.sign against a mapping's."""
    raw = module(
        {"literal": K1, "containerImage": "q.io/m:${KERNEL_XYZ}"},
        {"literal": K3, "containerImage": "q.io/m:${KERNEL_XYZ}"},  # 6.8.0: another image
        {"literal": K2, "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("b")},
        sign=sign("a"),
    )
    (error,) = errors(raw)
    assert error.startswith("spec.kernelMappings[2].containerImage: gives the image q.io/m:6.1.0")
    assert "spec.sign: keySecret a-key/" in error and "as spec.kernelMappings[0]." in error


@pytest.mark.parametrize(
    "mappings",
    [
        # the same Secrets: one signature whoever signs
        [
            {"regexp": "amd64$", "containerImage": "q.io/m:v1", "sign": sign("a")},
            {"regexp": "generic$", "containerImage": "q.io/m:v1", "sign": sign("a")},
        ],
        # images that depend on the kernel: only kernels can tell (kernel_collisions)
        [
            {
                "regexp": "amd64$",
                "containerImage": "q.io/m:${KERNEL_FULL_VERSION}",
                "sign": sign("a"),
            },
            {
                "regexp": "generic$",
                "containerImage": "q.io/m:${KERNEL_FULL_VERSION}",
                "sign": sign("b"),
            },
        ],
        # one of them does not sign
        [
            {"regexp": "amd64$", "containerImage": "q.io/m:v1", "sign": sign("a")},
            {"regexp": "generic$", "containerImage": "q.io/m:v1"},
        ],
        # a literal an earlier regexp takes never applies
        [
            {"regexp": "^6", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
            {"literal": K1, "containerImage": "q.io/m:6.1.0", "sign": sign("b")},
        ],
        # a broken earlier regexp: reported by its own check, no crash here
        [
            {"regexp": "(", "containerImage": "q.io/m:v1", "sign": sign("a")},
            {"literal": K1, "containerImage": "q.io/m:v1", "sign": sign("b")},
        ],
    ],
)
def test_what_is_not_a_static_collision(mappings: list[dict[str, Any]]) -> None:
    assert not [e for e in errors(module(*mappings)) if "signs it with other Secrets" in e]


def plans(raw: dict[str, Any], *kernels: str) -> dict[str, Any]:
    parsed = Module.model_validate(raw)
    return {kernel: plan_kernel(parsed, kernel) for kernel in kernels}


REGEXPS = module(
    {"regexp": "-cloud-", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("b")},
    {"regexp": "amd64$", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
    {"regexp": "generic$", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("c")},
)


def test_kernels_resolving_to_one_image_with_two_keys_keep_the_first_mapping() -> None:
    found = kernel_collisions(plans(REGEXPS, K1, K2, K3), incumbents=())
    assert set(found) == {K1}  # K3 gives 6.8.0: no collision
    assert found[K1].holder.kernel == K2  # mapping 0 before mapping 1
    message = found[K1].message(plan_kernel(Module.model_validate(REGEXPS), K1))
    assert "spec.kernelMappings[1] gives q.io/m:6.1.0" in message
    assert f"spec.kernelMappings[0] does for kernel {K2}" in message
    assert "keySecret a-key/" in message and "keySecret b-key/" in message


def test_a_kernel_that_signs_the_image_already_keeps_it() -> None:
    found = kernel_collisions(plans(REGEXPS, K1, K2), incumbents={K1})
    assert set(found) == {K2} and found[K2].holder.kernel == K1


def test_kernels_with_the_same_secrets_never_collide() -> None:
    same = module(
        {"regexp": "-cloud-", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
        {"regexp": "amd64$", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
    )
    assert kernel_collisions(plans(same, K1, K2), incumbents=()) == {}


def test_a_spec_change_holds_back_the_kernel_that_would_change_the_signature() -> None:
    """Both kernels ran the image with key a; the spec gives mapping 0 key b. Its kernel waits
    (keeping its old plan): the other one, which signs as before, keeps the image although its
    mapping comes later."""
    before = module(
        {"regexp": "-cloud-", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
        {"regexp": "amd64$", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
    )
    after = module(
        {"regexp": "-cloud-", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("b")},
        {"regexp": "amd64$", "containerImage": "q.io/m:${KERNEL_XYZ}", "sign": sign("a")},
    )
    running = plans(before, K1, K2)
    found = waiting_kernels(plans(after, K1, K2), running)
    assert set(found) == {K2} and found[K2].holder.kernel == K1


def test_a_kernel_running_its_last_valid_plan_still_holds_the_image() -> None:
    running = plans(REGEXPS, K2)  # K2 (mapping 0, key b) runs; its new plan cannot be made
    fresh = {K2: SpecError("spec.kernelMappings[0].containerImage", "bad"), **plans(REGEXPS, K1)}
    found = waiting_kernels(fresh, running)
    assert set(found) == {K1} and found[K1].holder.kernel == K2


def test_kernels_that_leave_or_sign_nothing_hold_nothing() -> None:
    running = plans(REGEXPS, K2)
    assert waiting_kernels({K2: None, **plans(REGEXPS, K1)}, running) == {}
    unsigned = module({"regexp": "^6", "containerImage": "q.io/m:${KERNEL_XYZ}"})
    assert waiting_kernels(plans(unsigned, K1), running) == {}
