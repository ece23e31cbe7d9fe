"""Folding kernel reports into the Module status: reasons, counts, and transition times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ooto.domain.api import KernelPhase, KernelStatus
from ooto.domain.status import (
    KernelProblem,
    ModuleFacts,
    RolloutFacts,
    WarningCondition,
    condition_flags,
    fold_status,
    status_flags,
)

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"


def ready(kernel: str, nodes: int) -> KernelStatus:
    return KernelStatus(
        kernel=kernel,
        image=f"r/m:{kernel}",
        phase=KernelPhase.READY,
        nodes_desired=nodes,
        nodes_ready=nodes,
    )


def conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_all_kernels_ready_makes_the_module_ready_with_node_counts() -> None:
    status = fold_status(
        ModuleFacts(generation=3, kernels=[ready("b", 1), ready("a", 2)]), None, NOW
    )
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["reason"] == "AllKernelsReady"
    assert cond["Progressing"]["status"] == "False"
    assert [k["kernel"] for k in status["kernels"]] == ["a", "b"]  # type: ignore[attr-defined]
    assert (status["nodesReady"], status["nodesDesired"], status["kernelCount"]) == (3, 3, 2)
    assert status["observedGeneration"] == 3 and cond["Ready"]["observedGeneration"] == 3


def test_recomputing_an_unchanged_status_is_byte_identical() -> None:
    facts = ModuleFacts(generation=1, kernels=[ready("a", 2)])
    first = fold_status(facts, None, NOW)
    assert fold_status(facts, first, LATER) == first


def test_transition_time_moves_only_when_the_status_flips() -> None:
    rolling = KernelStatus(
        kernel="a",
        phase=KernelPhase.DEPLOYING,
        nodes_desired=2,
        nodes_ready=1,
        message="1/2 nodes ready",
    )
    first = fold_status(ModuleFacts(generation=1, kernels=[rolling]), None, NOW)
    second = fold_status(ModuleFacts(generation=1, kernels=[ready("a", 2)]), first, LATER)
    assert conditions(first)["Ready"]["status"] == "False"
    assert conditions(second)["Ready"]["lastTransitionTime"] == LATER
    assert conditions(first)["Ready"]["reason"] == "Rolling"


def test_a_kernel_without_mapping_is_named_in_ready_false() -> None:
    problem = KernelProblem("6.9.9", "NoMatchingMapping", "no kernelMappings entry matches")
    status = fold_status(
        ModuleFacts(generation=1, kernels=[ready("a", 1)], problems=[problem]), None, NOW
    )
    cond = conditions(status)["Ready"]
    assert cond["status"] == "False" and cond["reason"] == "NoMatchingMapping"
    assert "6.9.9" in str(cond["message"])
    assert status["kernelCount"] == 2


def test_spec_errors_win_over_everything_and_stop_progress() -> None:
    facts = ModuleFacts(
        generation=2, spec_errors=["spec.kernelMappings[0].regexp: bad"], kernels=[ready("a", 1)]
    )
    cond = conditions(fold_status(facts, None, NOW))
    assert cond["Ready"]["reason"] == cond["Progressing"]["reason"] == "InvalidSpec"
    assert cond["Progressing"]["status"] == "False"


def test_a_degraded_kernel_reports_its_own_reason() -> None:
    failed = KernelStatus(kernel="a", phase=KernelPhase.DEGRADED, message="build failed: exit 1")
    status = fold_status(
        ModuleFacts(
            generation=1, kernels=[failed, ready("b", 1)], kernel_reasons={"a": "BuildFailed"}
        ),
        None,
        NOW,
    )
    assert conditions(status)["Ready"]["reason"] == "BuildFailed"


def test_no_selected_nodes_is_ready_with_its_own_reason() -> None:
    cond = conditions(fold_status(ModuleFacts(generation=1), None, NOW))["Ready"]
    assert (cond["status"], cond["reason"]) == ("True", "NoNodesSelected")


def test_long_messages_are_bounded_and_empty_strings_dropped() -> None:
    problems = [KernelProblem(f"k{i}", "NoMatchingMapping", "x" * 400) for i in range(50)]
    status = fold_status(ModuleFacts(generation=1, problems=problems), None, NOW)
    assert len(str(conditions(status)["Ready"]["message"])) <= 1024
    quiet = fold_status(ModuleFacts(generation=1, kernels=[ready("a", 1)]), None, NOW)
    assert all("message" not in k for k in quiet["kernels"])  # type: ignore[attr-defined]


NO_HOOK = WarningCondition("NoUnloadHook", "NoUnloadHook", "nothing unloads the module")


def test_a_warning_condition_is_true_and_leaves_ready_alone() -> None:
    facts = ModuleFacts(generation=2, kernels=[ready("a", 1)], warnings=[NO_HOOK])
    status = fold_status(facts, None, NOW)
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["reason"] == "AllKernelsReady"
    assert cond["NoUnloadHook"] == {
        "type": "NoUnloadHook",
        "status": "True",
        "reason": "NoUnloadHook",
        "message": "nothing unloads the module",
        "observedGeneration": 2,
        "lastTransitionTime": NOW,
    }
    again = fold_status(facts, status, LATER)
    assert again == status, "an unchanged warning keeps its transition time: nothing to write"


def test_a_warning_goes_away_when_its_cause_does() -> None:
    warned = fold_status(ModuleFacts(generation=1, warnings=[NO_HOOK]), None, NOW)
    fixed = fold_status(ModuleFacts(generation=2), warned, LATER)
    assert "NoUnloadHook" in conditions(warned) and "NoUnloadHook" not in conditions(fixed)


def test_kernels_without_an_actor_get_their_own_entry_with_the_reason() -> None:
    problems = [
        KernelProblem("6.9.9", "NoMatchingMapping", "no kernelMappings entry matches", nodes=2),
        KernelProblem("7.0.0", "InvalidSpec", "spec.kernelMappings[0].containerImage: bad", 1),
    ]
    status = fold_status(
        ModuleFacts(generation=1, kernels=[ready("a", 1)], problems=problems), None, NOW
    )
    entries = {k["kernel"]: k for k in status["kernels"]}  # type: ignore[attr-defined]
    assert sorted(entries) == ["6.9.9", "7.0.0", "a"]
    assert entries["6.9.9"]["reason"] == "NoMatchingMapping"
    assert entries["6.9.9"]["nodesDesired"] == 2 and entries["6.9.9"]["phase"] == "Invalid"
    assert entries["7.0.0"]["message"] == "spec.kernelMappings[0].containerImage: bad"
    assert status["kernelCount"] == 3


def test_unavailable_nodes_and_refused_kernels_are_counted() -> None:
    partly = KernelStatus(
        kernel="a", phase=KernelPhase.READY, nodes_desired=3, nodes_ready=2, nodes_unavailable=1
    )
    facts = ModuleFacts(generation=1, kernels=[partly], nodes_invalid_kernel=4)
    status = fold_status(facts, None, NOW)
    assert (status["nodesUnavailable"], status["nodesInvalidKernel"]) == (1, 4)
    assert conditions(status)["Ready"]["status"] == "True"


def test_a_kernel_that_cannot_render_is_not_progressing() -> None:
    invalid = KernelStatus(kernel="a", phase=KernelPhase.INVALID, message="too deep")
    status = fold_status(
        ModuleFacts(generation=1, kernels=[invalid], kernel_reasons={"a": "RenderFailed"}),
        None,
        NOW,
    )
    cond = conditions(status)
    assert cond["Ready"]["reason"] == "RenderFailed"
    assert cond["Progressing"]["status"] == "False"
    assert status["kernels"][0]["reason"] == "RenderFailed"  # type: ignore[index]


kernel_statuses = st.builds(
    KernelStatus,
    kernel=st.sampled_from(["k1", "k2", "k3", "k4", "k5", "k6", "k7"]),
    phase=st.sampled_from(list(KernelPhase)),
    nodes_ready=st.integers(0, 2),
    message=st.sampled_from(["", "pulling"]),
)
rollouts = st.one_of(
    st.none(),
    st.builds(
        RolloutFacts,
        ready_label=st.just("ready.ooto.sigs.k8s.io/ns.mod"),
        upgrade=st.fixed_dictionaries(
            {"nodesUpgrading": st.integers(0, 2), "nodesUpToDate": st.integers(0, 2)}
        ),
        failed=st.lists(st.tuples(st.just("n1"), st.just("not Ready")), max_size=1),
    ),
)
facts_strategy = st.builds(
    ModuleFacts,
    generation=st.integers(1, 3),
    spec_errors=st.lists(st.just("spec.x: bad"), max_size=1),
    kernels=st.lists(kernel_statuses, max_size=8, unique_by=lambda k: k.kernel),
    # "k1" may also have a report: a kernel whose actor runs its last valid plan while its new
    # plan is refused (InvalidSpec, SignCollision).
    problems=st.lists(
        st.builds(
            KernelProblem,
            st.sampled_from(["k1", "k9"]),
            st.sampled_from(["NoMatchingMapping", "InvalidSpec", "SignCollision", "ActorFailed"]),
            st.just("none"),
            st.integers(0, 2),
        ),
        max_size=2,
        unique_by=lambda p: p.kernel,
    ),
    warnings=st.lists(st.just(WarningCondition("NoUnloadHook", "NoUnloadHook", "x")), max_size=1),
    rollout=rollouts,
)


@given(facts_strategy)
def test_condition_flags_are_the_flags_of_the_folded_status(facts: ModuleFacts) -> None:
    """The supervisor skips the fold of a held, progress-only status on condition_flags: they
    must be exactly what the fold would make news of."""
    assert condition_flags(facts) == status_flags(fold_status(facts, None, "now"))


@given(facts_strategy)
def test_each_kernel_is_listed_and_counted_once(facts: ModuleFacts) -> None:
    status = fold_status(facts, None, "now")
    listed = [k["kernel"] for k in status["kernels"]]
    known = {k.kernel for k in facts.kernels} | {p.kernel for p in facts.problems}
    assert sorted(listed) == sorted(known) and status["kernelCount"] == len(known)
    assert status["nodesReady"] == sum(k.nodes_ready for k in facts.kernels)


def test_a_kernel_with_a_problem_while_its_actor_runs_is_one_entry_naming_the_problem() -> None:
    """InvalidSpec (or SignCollision) for a kernel whose actor still runs its last valid plan:
    the problem says why it does not progress, the actor's image and counts say what runs."""
    problem = KernelProblem("a", "InvalidSpec", "spec.kernelMappings[0].containerImage: bad", 3)
    facts = ModuleFacts(generation=2, kernels=[ready("a", 2), ready("b", 1)], problems=[problem])
    status = fold_status(facts, None, NOW)
    assert [k["kernel"] for k in status["kernels"]] == ["a", "b"]
    assert status["kernels"][0] == {
        "kernel": "a",
        "image": "r/m:a",
        "phase": "Invalid",
        "build": "NotNeeded",
        "nodesDesired": 2,
        "nodesReady": 2,
        "nodesUnavailable": 0,
        "reason": "InvalidSpec",
        "message": "spec.kernelMappings[0].containerImage: bad",
    }
    assert (status["kernelCount"], status["nodesDesired"], status["nodesReady"]) == (2, 3, 3)
    assert conditions(status)["Ready"]["reason"] == "InvalidSpec"


def test_a_busy_actor_of_a_kernel_with_a_problem_is_not_progressing() -> None:
    """Its actor still works on the last valid plan, but the kernel waits on the problem: the
    Module does not progress towards this generation there."""
    building = KernelStatus(kernel="a", phase=KernelPhase.BUILDING, message="building r/m:a")
    problem = KernelProblem("a", "SignCollision", "spec.kernelMappings[1] gives r/m:a ...", 1)
    facts = ModuleFacts(generation=1, kernels=[building], problems=[problem])
    status = fold_status(facts, None, NOW)
    cond = conditions(status)
    assert (cond["Progressing"]["status"], cond["Progressing"]["reason"]) == ("False", "Converged")
    assert (cond["Ready"]["reason"], status["kernels"][0]["phase"]) == ("SignCollision", "Invalid")
    assert condition_flags(facts) == status_flags(status)


def test_many_busy_kernels_are_named_five_and_counted() -> None:
    kernels = [KernelStatus(kernel=f"k{i:02}", phase=KernelPhase.DEPLOYING) for i in range(12)]
    status = fold_status(ModuleFacts(generation=1, kernels=kernels), None, "now")
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    named = "; ".join(f"k{i:02}: Deploying" for i in range(5))
    assert progressing["message"] == f"{named}; and 7 more"
