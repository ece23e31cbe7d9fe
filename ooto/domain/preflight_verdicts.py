"""Preflight decisions (pure): for one (Module, kernel), what would an upgrade to that kernel find?

The same planner the operator uses (`plan_kernel`) picks the mapping and resolves the image; the
caller asks the registry (the operator's checker, the Module's credentials) and, with
pushBuiltImages, builds; these functions turn each answer into a `Finding` with a `Verdict`.
`ooto preflight` and the PreflightValidation actor share them, so both say the same thing.

A sign check (images whose mapping asks for signing) slots in as one more step between "the image
is present" and Ready, with its own verdicts; nothing else here needs to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ooto.domain.api import Module
from ooto.domain.api.preflight import READY_VERDICTS, Verdict
from ooto.domain.kernels import KernelPlan, SpecError, plan_kernel
from ooto.domain.validation import ModulePolicy, validate_module
from ooto.domain.validation import summary as errors_summary

MAX_MESSAGE = 1024
MAX_STATUS_ENTRIES = 500
"""status.modules[] lists at most this many entries (not-ready ones first), so a question about
many Modules and kernels stays far below etcd's object size limit (1.5 MB); the counts and the
Complete condition always cover every entry."""
CheckOutcome = Literal["present", "missing", "unauthorized", "error"]


@dataclass(frozen=True)
class Finding:
    """One (Module, kernel) answer: `verdict` None means still being decided."""

    module: str
    kernel: str
    verdict: Verdict | None
    image: str = ""
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.verdict in READY_VERDICTS

    def as_dict(self) -> dict[str, str]:
        """The machine-readable shape (`ooto preflight -o json`, status.modules[])."""
        found = {"module": self.module, "kernel": self.kernel}
        if self.verdict is not None:
            found["verdict"] = self.verdict.value
        # Kubernetes 1.20 turns "" inside a list of objects into null: leave empty strings out.
        if self.image:
            found["image"] = self.image
        if self.message:
            found["message"] = self.message[:MAX_MESSAGE]
        return found


def plan_or_finding(module: Module, kernel: str, policy: ModulePolicy) -> KernelPlan | Finding:
    """The plan to check, or the final Finding when the spec alone decides: invalid (the one
    validation the webhook and the operator use, under `policy`), or no mapping."""
    key = module.key
    errors = validate_module(module, policy)
    if errors:
        return Finding(key, kernel, Verdict.INVALID_SPEC, message=errors_summary(errors))
    try:
        plan = plan_kernel(module, kernel)
    except SpecError as error:
        return Finding(key, kernel, Verdict.INVALID_SPEC, message=str(error))
    if plan is None:
        return Finding(
            key, kernel, Verdict.NO_MAPPING, message=f"no kernelMappings entry matches {kernel}"
        )
    return plan


def judge_check(
    module: str, plan: KernelPlan, outcome: CheckOutcome, detail: str, *, push: bool
) -> Finding:
    """The Finding after the registry answered; verdict None when `push` means a build starts."""
    image = plan.image
    if outcome == "present":
        return Finding(module, plan.kernel, Verdict.READY, image, "in the registry")
    if outcome == "missing" and plan.build is None:
        message = f"not in the registry, and kernelMappings[{plan.mapping_index}] has no build"
        return Finding(module, plan.kernel, Verdict.IMAGE_MISSING, image, message)
    if outcome == "missing" and push:
        return Finding(module, plan.kernel, None, image, "not in the registry: building it")
    if outcome == "missing":
        message = "not in the registry; the operator will build it"
        return Finding(module, plan.kernel, Verdict.WILL_BUILD, image, message)
    return Finding(
        module, plan.kernel, Verdict.IMAGE_CHECK_FAILED, image, f"cannot check it: {detail}"
    )


def judge_build(
    module: str, plan: KernelPlan, succeeded: bool, outcome: CheckOutcome | None, detail: str
) -> Finding:
    """After preflight's own build: `outcome` is the registry's fresh answer when it succeeded."""
    image = plan.image
    if not succeeded:
        return Finding(
            module, plan.kernel, Verdict.BUILD_FAILED, image, f"the build failed: {detail}"
        )
    if outcome == "present":
        return Finding(module, plan.kernel, Verdict.BUILT, image, "built and pushed")
    message = f"the build finished but the registry does not have the image ({detail})"
    return Finding(module, plan.kernel, Verdict.BUILD_FAILED, image, message)


def selected(module_key: str, wanted: Sequence[str]) -> bool:
    """Does the namespace/name filter select this Module? Empty selects every Module."""
    return not wanted or module_key in wanted


def summary(findings: Iterable[Finding]) -> tuple[int, int, int]:
    """(total, decided, ready) over the findings."""
    total = decided = ready = 0
    for finding in findings:
        total += 1
        decided += finding.verdict is not None
        ready += finding.ready
    return total, decided, ready


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.module, f.kernel))


def status_entries(findings: Sequence[Finding], limit: int = MAX_STATUS_ENTRIES) -> list[Finding]:
    """The entries status.modules[] lists: all when they fit, else the not-ready (and undecided)
    ones first, each part in (module, kernel) order."""
    ordered = sort_findings(findings)
    if len(ordered) <= limit:
        return ordered
    first = [f for f in ordered if not f.ready] + [f for f in ordered if f.ready]
    return sort_findings(first[:limit])


def complete_condition(
    findings: Sequence[Finding], generation: int, previous: dict[str, Any] | None, now: str
) -> dict[str, Any]:
    """Complete: True once every entry has a verdict; reason AllReady, NotReady or InProgress.
    `lastTransitionTime` moves only when the status flips."""
    total, decided, ready = summary(findings)
    if decided < total:
        status, reason = "False", "InProgress"
        message = f"{decided} of {total} decided"
    elif ready == total:
        status, reason = "True", "AllReady"
        message = f"all {total} Module/kernel pairs are ready"
    else:
        status, reason = "True", "NotReady"
        message = f"{total - ready} of {total} Module/kernel pairs are not ready"
    if total > MAX_STATUS_ENTRIES:
        message += f"; status.modules lists {MAX_STATUS_ENTRIES} of them, not-ready ones first"
    since = now
    if previous is not None and previous.get("status") == status:
        since = previous.get("lastTransitionTime") or now
    return {
        "type": "Complete",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }
