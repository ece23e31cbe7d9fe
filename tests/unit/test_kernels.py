"""Kernel mappings: which mapping a node's kernel gets, and the image and build that follow."""

from __future__ import annotations

from typing import Any

import pytest

from ooto.domain.api.module import Module
from ooto.domain.kernels import (
    MAX_KERNEL_LENGTH,
    SpecError,
    build_job_name,
    plan_kernel,
)


def make_module(*mappings: dict[str, Any], name: str = "mod", namespace: str = "ns") -> Module:
    return Module.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1"},
            "spec": {"kernelMappings": list(mappings), "moduleLoader": {"image": "x"}},
        }
    )


def literal(kernel: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"literal": kernel, "containerImage": image, **extra}


def regexp(pattern: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"regexp": pattern, "containerImage": image, **extra}


def dockerfile_build(**extra: Any) -> dict[str, Any]:
    return {
        "dockerfile": "FROM base\nARG KERNEL_FULL_VERSION\nRUN echo ${KERNEL_FULL_VERSION}\n",
        **extra,
    }


class TestFirstMatchWins:
    def test_literal_matches_only_the_exact_kernel(self) -> None:
        module = make_module(literal("5.4.0-1054-gke", "q.io/m:a"))
        assert plan_kernel(module, "5.4.0-1054-gke") is not None
        assert plan_kernel(module, "5.4.0-1054-gke2") is None
        assert plan_kernel(module, "x5.4.0-1054-gke") is None

    def test_mappings_are_tried_in_list_order(self) -> None:
        module = make_module(
            literal("5.4.0-1054-gke", "q.io/m:literal"),
            regexp(r"-gke$", "q.io/m:regexp"),
        )
        first = plan_kernel(module, "5.4.0-1054-gke")
        second = plan_kernel(module, "5.4.0-1055-gke")
        assert first is not None and (first.mapping_index, first.image) == (0, "q.io/m:literal")
        assert second is not None and (second.mapping_index, second.image) == (1, "q.io/m:regexp")

    def test_regexp_is_an_unanchored_search_like_go(self) -> None:
        module = make_module(regexp(r"gke", "q.io/m:a"))
        assert plan_kernel(module, "5.4.0-1054-gke-x") is not None

    def test_design_example_regexp_matches_gke_kernels(self) -> None:
        module = make_module(regexp(r"^.*\-gke$", "q.io/m:gke"))
        assert plan_kernel(module, "5.4.0-1054-gke") is not None
        assert plan_kernel(module, "5.16.11-200.fc35.x86_64") is None

    def test_no_mapping_matching_gives_none(self) -> None:
        assert plan_kernel(make_module(literal("a", "q.io/m:a")), "b") is None

    def test_an_overlong_kernel_matches_nothing(self) -> None:
        module = make_module(regexp(".*", "q.io/m:a"))
        assert plan_kernel(module, "5" * (MAX_KERNEL_LENGTH + 1)) is None

    def test_a_kernel_with_a_lone_surrogate_matches_nothing(self) -> None:
        assert plan_kernel(make_module(regexp(".*", "q.io/m:a")), "5.4\ud800") is None


class TestVariables:
    def test_builtin_variables_of_a_kernel(self) -> None:
        module = make_module(regexp(".", "q.io/m:a"), name="m", namespace="n")
        plan = plan_kernel(module, "5.14.0-70.13.1.el9_0.x86_64")
        assert plan is not None
        assert dict(plan.variables) == {
            "KERNEL_FULL_VERSION": "5.14.0-70.13.1.el9_0.x86_64",
            "KERNEL_VERSION": "5.14.0-70.13.1.el9_0.x86_64",
            "KERNEL_XYZ": "5.14.0",
            "KERNEL_X": "5",
            "KERNEL_Y": "14",
            "KERNEL_Z": "0",
            "MOD_NAME": "m",
            "MOD_NAMESPACE": "n",
        }

    def test_both_spellings_are_substituted_in_the_image(self) -> None:
        module = make_module(regexp(".", "q.io/$MOD_NAME:${KERNEL_XYZ}-$KERNEL_X"))
        plan = plan_kernel(module, "5.14.0-70")
        assert plan is not None and plan.image == "q.io/mod:5.14.0-5"

    def test_named_groups_become_variables(self) -> None:
        module = make_module(regexp(r"^\d+\.\d+\.\d+-\d+-(?P<flavor>\w+)$", "q.io/m:${flavor}"))
        plan = plan_kernel(module, "5.4.0-1054-gke")
        assert plan is not None and plan.image == "q.io/m:gke"
        assert plan.variables["flavor"] == "gke"

    def test_an_optional_group_that_did_not_take_part_is_empty(self) -> None:
        module = make_module(regexp(r"^5(?P<rc>-rc\d)?", "q.io/m:v${rc}"))
        plan = plan_kernel(module, "5.4.0")
        assert plan is not None and plan.image == "q.io/m:v"

    def test_image_values_are_made_tag_safe(self) -> None:
        module = make_module(regexp(".", "q.io/m:${KERNEL_FULL_VERSION}"))
        plan = plan_kernel(module, "6.1.0-rpi7-rpi-v8+")
        assert plan is not None and plan.image == "q.io/m:6.1.0-rpi7-rpi-v8_"

    def test_a_group_named_like_a_builtin_is_an_error(self) -> None:
        module = make_module(regexp(r"(?P<KERNEL_X>\d)", "q.io/m:a"))
        with pytest.raises(SpecError) as caught:
            plan_kernel(module, "5.4")
        assert caught.value.field_path == "spec.kernelMappings[0].regexp"

    def test_xyz_variables_need_an_xyz_kernel(self) -> None:
        module = make_module(regexp(".", "q.io/m:${KERNEL_XYZ}"))
        with pytest.raises(SpecError, match=r"needs a kernel starting with X\.Y\.Z"):
            plan_kernel(module, "weird-kernel")


class TestSpecErrors:
    @pytest.mark.parametrize(
        ("image", "message"),
        [
            ("q.io/m:${NOPE}", "unknown variable 'NOPE'"),
            ("q.io/m:${KERNEL_X", "unterminated"),
            ("q.io/m:${}", "invalid variable name"),
            ("q.io/m", "neither a tag nor a digest"),
            ("Q.io/UPPER/m:a", "not a valid image reference"),
        ],
    )
    def test_bad_container_image_names_its_field(self, image: str, message: str) -> None:
        module = make_module(literal("5.4", "q.io/m:a"), regexp(".", image))
        with pytest.raises(SpecError, match=message) as caught:
            plan_kernel(module, "5.4.1")
        assert caught.value.field_path == "spec.kernelMappings[1].containerImage"
        assert str(caught.value).startswith("spec.kernelMappings[1].containerImage: ")

    def test_a_tag_starting_with_a_dot_is_rejected(self) -> None:
        module = make_module(regexp(".", "q.io/m:${KERNEL_FULL_VERSION}"))
        with pytest.raises(SpecError, match="not a valid image reference"):
            plan_kernel(module, ".5.4")

    def test_an_invalid_regexp_names_its_field(self) -> None:
        module = make_module(literal("a", "q.io/m:a"), regexp("(?<=x)y", "q.io/m:a"))
        with pytest.raises(SpecError, match="invalid RE2 regexp") as caught:
            plan_kernel(module, "b")
        assert caught.value.field_path == "spec.kernelMappings[1].regexp"

    def test_an_unknown_variable_in_a_build_arg_names_its_field(self) -> None:
        build = dockerfile_build(
            buildArgs=[{"name": "A", "value": "ok"}, {"name": "B", "value": "$X"}]
        )
        module = make_module(regexp(".", "q.io/m:a", build=build))
        with pytest.raises(SpecError) as caught:
            plan_kernel(module, "5.4.0")
        assert caught.value.field_path == "spec.kernelMappings[0].build.buildArgs[1].value"

    def test_digest_references_are_accepted(self) -> None:
        image = "q.io:5000/m@sha256:" + "a" * 64
        plan = plan_kernel(make_module(regexp(".", image)), "5.4.0")
        assert plan is not None and plan.image == image


class TestBuildPlan:
    def test_no_build_section_means_no_build_plan(self) -> None:
        plan = plan_kernel(make_module(regexp(".", "q.io/m:a")), "5.4.0")
        assert plan is not None and plan.build is None

    def test_build_args_get_raw_values_and_every_variable(self) -> None:
        build = dockerfile_build(
            buildArgs=[{"name": "SOME_KEY", "value": "${KERNEL_FULL_VERSION}"}],
            push={"insecure": True},
        )
        module = make_module(
            regexp("(?P<flavor>rpi)", "q.io/m:${KERNEL_FULL_VERSION}", build=build)
        )
        plan = plan_kernel(module, "6.1.0-rpi7-rpi-v8+")
        assert plan is not None and plan.build is not None
        args = dict(plan.build.build_args)
        assert args["SOME_KEY"] == "6.1.0-rpi7-rpi-v8+"
        assert args["KERNEL_FULL_VERSION"] == "6.1.0-rpi7-rpi-v8+"
        assert args["flavor"] == "rpi"
        assert {"KERNEL_XYZ", "KERNEL_X", "MOD_NAME", "MOD_NAMESPACE"} <= set(args)
        assert plan.build.image == plan.image == "q.io/m:6.1.0-rpi7-rpi-v8_"
        assert (plan.build.pull_insecure, plan.build.push_insecure) == (False, True)

    def test_a_user_build_arg_overrides_a_variable_of_the_same_name(self) -> None:
        build = dockerfile_build(buildArgs=[{"name": "KERNEL_X", "value": "mine"}])
        plan = plan_kernel(make_module(regexp(".", "q.io/m:a", build=build)), "5.4.0")
        assert plan is not None and plan.build is not None
        assert [value for name, value in plan.build.build_args if name == "KERNEL_X"] == ["mine"]

    def test_git_ref_is_substituted_with_raw_values(self) -> None:
        git = {"url": "https://example.com/r.git", "ref": "v$KERNEL_FULL_VERSION"}
        plan = plan_kernel(make_module(regexp(".", "q.io/m:a", build={"git": git})), "5.4.0+x")
        assert plan is not None and plan.build is not None and plan.build.git is not None
        assert plan.build.git.ref == "v5.4.0+x"
        assert plan.build.git.url == git["url"]


# RE2 makes these linear; a backtracking engine would not return within the test timeout.
# No wall-clock assertion: these machines are shared, and the timeout is the bound that matters.
@pytest.mark.timeout(120)
class TestBoundedTime:
    def test_hostile_regexp_on_a_long_kernel_finishes(self) -> None:
        module = make_module(regexp(r"^(a+)+$", "q.io/m:a"))
        assert plan_kernel(module, "a" * (MAX_KERNEL_LENGTH - 1) + "!") is None
        assert plan_kernel(module, "a" * 10_000_000) is None

    def test_huge_patterns_compile_and_run(self) -> None:
        module = make_module(
            regexp("(a|b|c|d)" * 50_000, "q.io/m:a"), regexp("[a-z]{1000}" * 200, "q.io/m:b")
        )
        assert plan_kernel(module, "abcd" * 60) is None

    def test_a_pattern_beyond_re2_limits_is_a_spec_error(self) -> None:
        module = make_module(regexp("((a{1000}){1000}){1000}", "q.io/m:a"))
        with pytest.raises(SpecError) as caught:
            plan_kernel(module, "a")
        assert caught.value.field_path == "spec.kernelMappings[0].regexp"


def test_build_job_name_depends_on_module_and_image() -> None:
    name = build_job_name("mod", "q.io/m:a")
    assert name.startswith("mod-build-") and len(name) == len("mod-build-") + 10
    assert name == build_job_name("mod", "q.io/m:a") != build_job_name("mod", "q.io/m:b")
