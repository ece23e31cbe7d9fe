"""Preflight verdicts (pure): what an upgrade to a kernel would find, for each registry answer."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ooto.domain.api.module import Module
from ooto.domain.api.preflight import PreflightSpec, Verdict
from ooto.domain.kernels import KernelPlan
from ooto.domain.preflight_verdicts import (
    MAX_STATUS_ENTRIES,
    Finding,
    complete_condition,
    judge_build,
    judge_check,
    plan_or_finding,
    selected,
    sort_findings,
    status_entries,
    summary,
)
from ooto.domain.validation import ModulePolicy

K = "6.8.0-31-generic"
POLICY = ModulePolicy()


def make_module(*mappings: dict[str, Any]) -> Module:
    return Module.model_validate(
        {
            "metadata": {"name": "drv", "namespace": "ns", "uid": "u"},
            "spec": {"kernelMappings": list(mappings), "moduleLoader": {"image": "x"}},
        }
    )


def planned(module: Module, kernel: str = K) -> KernelPlan:
    plan = plan_or_finding(module, kernel, POLICY)
    assert isinstance(plan, KernelPlan), plan
    return plan


WITH_BUILD = {"regexp": "^6\\.8", "containerImage": "r.io/drv:${KERNEL_FULL_VERSION}",
              "build": {"dockerfile": "FROM x\n"}}  # fmt: skip
NO_BUILD = {"literal": K, "containerImage": "r.io/drv:v1"}


class TestPlanning:
    def test_no_mapping_is_decided_without_a_registry(self) -> None:
        found = plan_or_finding(make_module(NO_BUILD), "5.4.0-1", POLICY)
        assert isinstance(found, Finding)
        assert (found.verdict, found.module) == (Verdict.NO_MAPPING, "ns/drv")
        assert "5.4.0-1" in found.message

    def test_an_unknown_variable_is_invalid_spec_naming_the_field(self) -> None:
        bad = {"literal": K, "containerImage": "r.io/drv:${NOPE}"}
        found = plan_or_finding(make_module(bad), K, POLICY)
        assert isinstance(found, Finding) and found.verdict is Verdict.INVALID_SPEC
        assert "spec.kernelMappings[0].containerImage" in found.message

    def test_an_image_invalid_for_this_kernel_only_is_invalid_spec(self) -> None:
        mapping = {"regexp": "^(?P<v>.*)$", "containerImage": "r.io/drv${v}"}
        found = plan_or_finding(make_module(mapping), "A:B:C", POLICY)
        assert isinstance(found, Finding) and found.verdict is Verdict.INVALID_SPEC

    def test_a_usable_mapping_gives_the_operators_plan(self) -> None:
        plan = planned(make_module(WITH_BUILD))
        assert plan.image == f"r.io/drv:{K}" and plan.build is not None


class TestJudgeCheck:
    def test_present_is_ready(self) -> None:
        found = judge_check("ns/drv", planned(make_module(NO_BUILD)), "present", "", push=False)
        assert found.verdict is Verdict.READY and found.ready and found.image == "r.io/drv:v1"

    def test_missing_without_build_is_image_missing_not_ready(self) -> None:
        found = judge_check("ns/drv", planned(make_module(NO_BUILD)), "missing", "", push=True)
        assert found.verdict is Verdict.IMAGE_MISSING and not found.ready
        assert "no build" in found.message

    def test_missing_with_build_will_build_and_counts_as_ready(self) -> None:
        found = judge_check("ns/drv", planned(make_module(WITH_BUILD)), "missing", "", push=False)
        assert found.verdict is Verdict.WILL_BUILD and found.ready

    def test_missing_with_build_and_push_is_undecided_until_the_build_ends(self) -> None:
        found = judge_check("ns/drv", planned(make_module(WITH_BUILD)), "missing", "", push=True)
        assert found.verdict is None and not found.ready

    @pytest.mark.parametrize("outcome", ["unauthorized", "error"])
    def test_registry_problems_are_image_check_failed_with_the_answer(self, outcome: Any) -> None:
        plan = planned(make_module(NO_BUILD))
        found = judge_check("ns/drv", plan, outcome, "rejected the credentials", push=False)
        assert found.verdict is Verdict.IMAGE_CHECK_FAILED and not found.ready
        assert "rejected the credentials" in found.message


class TestJudgeBuild:
    def test_built_and_present_is_built(self) -> None:
        found = judge_build("ns/drv", planned(make_module(WITH_BUILD)), True, "present", "")
        assert found.verdict is Verdict.BUILT and found.ready

    def test_built_but_still_missing_is_build_failed(self) -> None:
        found = judge_build("ns/drv", planned(make_module(WITH_BUILD)), True, "missing", "404")
        assert found.verdict is Verdict.BUILD_FAILED and "does not have the image" in found.message

    def test_failed_build_is_build_failed_with_its_message(self) -> None:
        found = judge_build("ns/drv", planned(make_module(WITH_BUILD)), False, None, "exit 1")
        assert found.verdict is Verdict.BUILD_FAILED and "exit 1" in found.message


class TestStatus:
    def test_empty_strings_stay_out_of_status_entries(self) -> None:
        assert Finding("ns/a", K, None).as_dict() == {"module": "ns/a", "kernel": K}

    def test_messages_are_capped(self) -> None:
        long = Finding("ns/a", K, Verdict.NO_MAPPING, message="x" * 5000).as_dict()
        assert len(long["message"]) == 1024

    def test_complete_only_when_every_entry_is_decided(self) -> None:
        undecided = [Finding("ns/a", K, Verdict.READY), Finding("ns/b", K, None)]
        condition = complete_condition(undecided, 3, None, "t1")
        assert (condition["status"], condition["reason"]) == ("False", "InProgress")
        assert condition["observedGeneration"] == 3

    def test_complete_says_whether_all_are_ready(self) -> None:
        ready = [Finding("ns/a", K, Verdict.READY), Finding("ns/b", K, Verdict.WILL_BUILD)]
        assert complete_condition(ready, 1, None, "t")["reason"] == "AllReady"
        mixed = [*ready, Finding("ns/c", K, Verdict.NO_MAPPING)]
        condition = complete_condition(mixed, 1, None, "t")
        assert (condition["status"], condition["reason"]) == ("True", "NotReady")
        assert condition["message"].startswith("1 of 3")

    def test_transition_time_moves_only_on_a_flip(self) -> None:
        done = [Finding("ns/a", K, Verdict.READY)]
        first = complete_condition(done, 1, None, "t1")
        assert complete_condition(done, 1, first, "t2")["lastTransitionTime"] == "t1"
        flipped = complete_condition([Finding("ns/a", K, None)], 2, first, "t3")
        assert flipped["lastTransitionTime"] == "t3"

    def test_summary_counts(self) -> None:
        findings = [
            Finding("ns/a", K, Verdict.BUILT),
            Finding("ns/a", "k2", Verdict.BUILD_FAILED),
            Finding("ns/b", K, None),
        ]
        assert summary(findings) == (3, 2, 1)


class TestSpec:
    def test_filter_selects_named_modules_or_all(self) -> None:
        assert selected("ns/a", []) and selected("ns/a", ["ns/a"])
        assert not selected("ns/b", ["ns/a"])

    @pytest.mark.parametrize(
        "spec",
        [
            {"kernelVersions": []},
            {"kernelVersions": [""]},
            {"kernelVersions": [K], "modules": ["no-slash"]},
            {"kernelVersions": [K], "modules": ["Ns/Upper"]},
            {"kernelVersions": [K] * 65},
            {"kernelVersions": [K], "unknown": True},
        ],
    )
    def test_bad_specs_are_refused(self, spec: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            PreflightSpec.model_validate(spec)


def test_a_huge_question_lists_not_ready_entries_first_within_the_cap() -> None:
    findings = [Finding(f"ns/m{i:04d}", K, Verdict.READY) for i in range(MAX_STATUS_ENTRIES)]
    findings += [Finding("ns/zz-broken", K, Verdict.NO_MAPPING), Finding("ns/zz-wait", K, None)]
    listed = status_entries(findings)
    assert len(listed) == MAX_STATUS_ENTRIES
    assert {f.module for f in listed} >= {"ns/zz-broken", "ns/zz-wait"}
    assert listed == sort_findings(listed)
    condition = complete_condition(findings, 1, None, "t")
    assert "lists 500 of them" in condition["message"]
    assert status_entries(findings[:3]) == sort_findings(findings[:3])


def test_the_operators_policy_refusals_are_invalid_spec() -> None:
    privileged = make_module({**NO_BUILD})
    raw = privileged.model_dump(by_alias=True)
    raw["spec"]["moduleLoader"]["securityContext"] = {"privileged": True}
    module = Module.model_validate(raw)
    found = plan_or_finding(module, K, POLICY)
    assert isinstance(found, Finding) and found.verdict is Verdict.INVALID_SPEC
    assert "spec.moduleLoader.securityContext.privileged" in found.message
    allowed = ModulePolicy(allow_privileged_module_loader=True)
    assert isinstance(plan_or_finding(module, K, allowed), KernelPlan)
