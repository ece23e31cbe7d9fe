"""Fold per-kernel reports into one Module status (pure: same input, same status).

Conditions follow the Kubernetes conventions: `lastTransitionTime` moves only when a condition's
status flips, so a status recomputed with nothing new is byte-identical to the stored one and the
operator writes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ooto.domain.api import ConditionStatus, ConditionType, KernelPhase, KernelStatus
from ooto.domain.reasons import Reason

MAX_MESSAGE = 1024
MAX_NAMED = 5
T = TypeVar("T")


@dataclass(frozen=True)
class KernelProblem:
    """A kernel that has no actor: no mapping matches it, or its mapping is invalid for it."""

    kernel: str
    reason: str
    message: str
    nodes: int = 0
    """Selected nodes running this kernel."""


@dataclass(frozen=True)
class WarningCondition:
    """A condition that is True while something is wrong but harmless to readiness (for
    example NoUnloadHook); it is absent from the status otherwise."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutFacts:
    """The RolloutActor's view: ready label key, status.upgrade, failed and waiting nodes."""

    ready_label: str
    upgrade: Mapping[str, Any]
    failed: Sequence[tuple[str, str]] = ()
    waiting: Sequence[tuple[str, str]] = ()
    generation: int = 0
    """The Module generation the RolloutActor judged (its grants for it are made)."""


@dataclass(frozen=True)
class ModuleFacts:
    """Everything the Module status is computed from."""

    generation: int
    spec_errors: Sequence[str] = ()
    kernels: Sequence[KernelStatus] = ()
    kernel_reasons: Mapping[str, str] | None = None
    problems: Sequence[KernelProblem] = ()
    warnings: Sequence[WarningCondition] = ()
    nodes_invalid_kernel: int = 0
    rollout: RolloutFacts | None = None


def fold_status(facts: ModuleFacts, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The Module status for `facts`, keeping transition times from `previous`."""
    kernels = sorted(_running(facts), key=lambda k: k.kernel)
    ready, progressing = _conditions(facts, kernels)
    old = {c.get("type"): c for c in (previous or {}).get("conditions", []) if isinstance(c, dict)}
    conditions = [
        _compact(_condition(ConditionType.PROGRESSING, *progressing, facts.generation, old, now)),
        _compact(_condition(ConditionType.READY, *ready, facts.generation, old, now)),
        *(_compact(_warning(warning, facts.generation, old, now)) for warning in facts.warnings),
    ]
    reasons = facts.kernel_reasons or {}
    if facts.problems:  # a problem's reason wins over the report of a kernel that has both
        reasons = {**reasons, **{p.kernel: p.reason for p in facts.problems}}
    running = {k.kernel for k in kernels}
    listed = sorted(
        [_kernel_entry(k, reasons.get(k.kernel, "")) for k in kernels]
        + [
            _kernel_entry(_problem_entry(p), p.reason)
            for p in facts.problems
            if p.kernel not in running
        ],
        key=lambda entry: str(entry["kernel"]),
    )
    status: dict[str, Any] = {
        "conditions": conditions,
        "kernels": listed,
        "observedGeneration": facts.generation,
        "kernelCount": len(listed),
        "nodesDesired": sum(k.nodes_desired for k in kernels),
        "nodesReady": sum(k.nodes_ready for k in kernels),
        "nodesUnavailable": sum(k.nodes_unavailable for k in kernels),
        "nodesInvalidKernel": facts.nodes_invalid_kernel,
    }
    if facts.rollout is not None:
        status["readyLabel"] = facts.rollout.ready_label
        status["upgrade"] = dict(facts.rollout.upgrade)
    return status


_KERNEL_FIELDS = tuple(name for name in KernelStatus.model_fields if name != "reason")


def condition_flags(facts: ModuleFacts) -> tuple[Any, ...]:
    """What `fold_status(facts, ...)` would make news of: its generation and each condition's
    type and status (`status_flags` of the folded status), without the kernel entries.
    Lets a supervisor holding back a progress-only status skip the whole fold."""
    ready, progressing = _conditions(facts, _running(facts))
    flags = [
        (ConditionType.PROGRESSING.value, progressing[0].value),
        (ConditionType.READY.value, ready[0].value),
        *((warning.type, ConditionStatus.TRUE.value) for warning in facts.warnings),
    ]
    return facts.generation, tuple(sorted(flags))


def status_flags(status: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What makes a status news: the generation it speaks for and each condition's status."""
    status = status or {}
    conditions = [c for c in status.get("conditions") or () if isinstance(c, dict)]
    flags = tuple(sorted((c.get("type"), c.get("status")) for c in conditions))
    return status.get("observedGeneration"), flags


def _kernel_entry(kernel: KernelStatus, reason: str) -> dict[str, Any]:
    """status.kernels[] entry of `kernel` with `reason`. Memoized by value: a 500-kernel Module
    folds its status every debounce while it rolls, and dumping each entry anew was most of it."""
    return dict(_dumped(tuple(getattr(kernel, name) for name in _KERNEL_FIELDS), reason))


@functools.lru_cache(maxsize=8192)
def _dumped(values: tuple[Any, ...], reason: str) -> dict[str, Any]:
    fields = dict(zip(_KERNEL_FIELDS, values, strict=True))
    kernel = KernelStatus.model_validate({**fields, "reason": reason})
    return _compact(kernel.model_dump(by_alias=True, mode="json"))


def kernel_count(facts: ModuleFacts) -> int:
    """Distinct kernels in `facts` (status.kernelCount, the entries of status.kernels)."""
    if not facts.problems:
        return len(facts.kernels)
    return len({k.kernel for k in facts.kernels} | {p.kernel for p in facts.problems})


def _running(facts: ModuleFacts) -> Sequence[KernelStatus]:
    """The kernel actors' reports, where a kernel that also has a problem takes the problem's
    phase, reason and message: its actor runs its last valid plan (an InvalidSpec or a
    SignCollision does not stop it), so its image and node counts stay, but the problem is why
    it does not move on. Such a kernel has one status entry, not two."""
    if not facts.problems:
        return facts.kernels
    problems = {p.kernel: p for p in facts.problems}
    return [
        _with_problem(k, problems[k.kernel]) if k.kernel in problems else k for k in facts.kernels
    ]


def _with_problem(kernel: KernelStatus, problem: KernelProblem) -> KernelStatus:
    update = {
        "phase": _problem_phase(problem),
        "reason": problem.reason,
        "message": problem.message,
    }
    return kernel.model_copy(update=update)


def _problem_entry(problem: KernelProblem) -> KernelStatus:
    """A kernel without an actor (no mapping, an invalid one, an actor being replaced)."""
    return KernelStatus(
        kernel=problem.kernel,
        phase=_problem_phase(problem),
        nodes_desired=problem.nodes,
        reason=problem.reason,
        message=problem.message,
    )


def _problem_phase(problem: KernelProblem) -> KernelPhase:
    return KernelPhase.DEGRADED if problem.reason == Reason.ACTOR_FAILED else KernelPhase.INVALID


Verdict = tuple[ConditionStatus, str, str]


def _conditions(facts: ModuleFacts, kernels: Sequence[KernelStatus]) -> tuple[Verdict, Verdict]:
    """(Ready, Progressing) as (status, reason, message)."""
    false, true = ConditionStatus.FALSE, ConditionStatus.TRUE
    if facts.spec_errors:
        message = _join(facts.spec_errors)
        return (false, Reason.INVALID_SPEC, message), (false, Reason.INVALID_SPEC, message)
    settled = (KernelPhase.READY, KernelPhase.DEGRADED, KernelPhase.INVALID)
    busy = [k for k in kernels if k.phase not in settled]
    progressing: Verdict = (
        (true, _busy_reason(busy), _join_each(busy, _kernel_waits))
        if busy
        else (false, Reason.CONVERGED, "every kernel is deployed or has stopped progressing")
    )
    ready = _ready(facts, kernels)
    return _upgrade_verdicts(facts, ready, progressing)


def _upgrade_verdicts(
    facts: ModuleFacts, ready: Verdict, progressing: Verdict
) -> tuple[Verdict, Verdict]:
    """A failed node upgrade stops the rollout (both conditions say UpgradeFailed, naming the
    node and cause); a running one makes the Module Progressing, and not Ready, with reason
    Upgrading: Ready for a generation means its loaders run on every node (nodes held back on
    purpose, by the skip label or Manual mode, do not count)."""
    rollout = facts.rollout
    if rollout is None or facts.problems:
        return ready, progressing
    false, true = ConditionStatus.FALSE, ConditionStatus.TRUE
    if rollout.failed:
        message = _join_each(rollout.failed, _node_failed)
        message += "; the rollout stopped: a new Module generation resumes it"
        return (false, Reason.UPGRADE_FAILED, message), (false, Reason.UPGRADE_FAILED, message)
    upgrading = int(rollout.upgrade.get("nodesUpgrading", 0))
    if upgrading and progressing[1] in (Reason.ROLLING, Reason.CONVERGED):
        done = int(rollout.upgrade.get("nodesUpToDate", 0))
        parts = [f"{upgrading} nodes upgrading, {done} up to date"]
        parts += [f"node {node}: {why}" for node, why in rollout.waiting]
        progressing = (true, Reason.UPGRADING, _join(parts))
        if ready[0] is true or ready[1] == Reason.ROLLING:
            ready = (false, Reason.UPGRADING, progressing[2])
    return ready, progressing


def _ready(facts: ModuleFacts, kernels: Sequence[KernelStatus]) -> Verdict:
    false = ConditionStatus.FALSE
    if facts.problems:
        by_reason = sorted({p.reason for p in facts.problems})
        return false, by_reason[0], _join_each(facts.problems, _problem_says)
    reasons = facts.kernel_reasons or {}
    failing = [k for k in kernels if k.phase in (KernelPhase.DEGRADED, KernelPhase.INVALID)]
    if failing:
        reason = sorted({reasons.get(k.kernel) or Reason.DEGRADED for k in failing})[0]
        return false, reason, _join_each(failing, _kernel_fails)
    waiting = [k for k in kernels if k.phase != KernelPhase.READY]
    if waiting:
        return (
            false,
            _busy_reason(waiting),
            _join_each(waiting, _kernel_waits),
        )
    if not kernels:
        return ConditionStatus.TRUE, Reason.NO_NODES_SELECTED, "no node matches the selector"
    nodes = sum(k.nodes_ready for k in kernels)
    return (
        ConditionStatus.TRUE,
        Reason.ALL_KERNELS_READY,
        f"module loaded on {nodes} nodes across {len(kernels)} kernels",
    )


def _busy_reason(kernels: Sequence[KernelStatus]) -> str:
    phases = {k.phase for k in kernels}
    if KernelPhase.BUILDING in phases:
        return Reason.BUILDING
    if KernelPhase.RESOLVING in phases:
        return Reason.RESOLVING
    return Reason.ROLLING


def _condition(
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    old: Mapping[Any, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    previous = old.get(type_.value, {})
    same = previous.get("status") == status.value and previous.get("lastTransitionTime")
    return {
        "type": type_.value,
        "status": status.value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": previous["lastTransitionTime"] if same else now,
    }


def _warning(
    warning: WarningCondition, generation: int, old: Mapping[Any, Mapping[str, Any]], now: str
) -> dict[str, Any]:
    previous = old.get(warning.type, {})
    same = previous.get("status") == ConditionStatus.TRUE.value and previous.get(
        "lastTransitionTime"
    )
    return {
        "type": warning.type,
        "status": ConditionStatus.TRUE.value,
        "reason": warning.reason,
        "message": warning.message[:MAX_MESSAGE],
        "observedGeneration": generation,
        "lastTransitionTime": previous["lastTransitionTime"] if same else now,
    }


def _join_each(items: Sequence[T], say: Callable[[T], str]) -> str:
    """`_join` of what `say` makes of each item, making only what is shown: a 500-kernel Module
    rolling has 500 busy kernels and its status is folded every debounce."""
    text = _join(say(item) for item in items[:MAX_NAMED])
    if len(items) > MAX_NAMED:
        text += f"; and {len(items) - MAX_NAMED} more"
    return text[:MAX_MESSAGE]


def _kernel_waits(kernel: KernelStatus) -> str:
    return f"{kernel.kernel}: {kernel.message or kernel.phase}"


def _kernel_fails(kernel: KernelStatus) -> str:
    return f"{kernel.kernel}: {kernel.message}"


def _problem_says(problem: KernelProblem) -> str:
    return f"{problem.kernel}: {problem.message}"


def _node_failed(failed: tuple[str, str]) -> str:
    return f"node {failed[0]}: {failed[1]}"


def _join(parts: Iterable[str]) -> str:
    items = list(parts)
    text = "; ".join(items[:MAX_NAMED])
    if len(items) > MAX_NAMED:
        text += f"; and {len(items) - MAX_NAMED} more"
    return text[:MAX_MESSAGE]


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """Drop empty strings: the 1.20 API server turns `""` inside a merge-patched list into null
    and then rejects it (seen with status.kernels[].message), and absent reads back as absent."""
    return {key: value for key, value in entry.items() if value != ""}
