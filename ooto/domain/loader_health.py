"""Why a kernel's loader pods do not run, from what their kubelets report (pure).

A kubelet says it in `status.containerStatuses[]`: a container waits with reason `ErrImagePull`
(the pull failed, with the runtime's error as message), then `ImagePullBackOff` ("Back-off pulling
image ...", nothing new), and again; one that exits non-zero waits in `CrashLoopBackOff` with its
last exit in `lastState.terminated`. A kernel's status says this per kernel, not per pod or
per attempt: the message counts the nodes and quotes one cause, and stays the same while pods
alternate between the states of one failure, so the pods' churn writes no status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ooto.domain.reasons import Reason

IMAGE_PULL_FAILED = Reason.IMAGE_PULL_FAILED
LOADER_CRASHING = Reason.LOADER_CRASHING

PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
PULL_DETAIL = frozenset({"ErrImagePull", "InvalidImageName"})
"""Waiting reasons whose message says why (ImagePullBackOff's only says it waits)."""
BACK_OFF_CAUSE = ": ErrImagePull: "
"""Newer kubelets append the last pull error to the back-off message after this."""
DETAIL_LIMIT = 300


@dataclass(frozen=True, slots=True)
class PodTrouble:
    """Why one loader pod cannot run: `reason` is IMAGE_PULL_FAILED or LOADER_CRASHING."""

    node: str
    reason: str
    image: str
    detail: str = ""
    """The kubelet's cause ("" while only a back-off is known)."""


def pod_trouble(pod: Mapping[str, Any]) -> PodTrouble | None:
    """The first container's trouble of a pod that is not being deleted, or None."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return None
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    for container in status.get("containerStatuses") or []:
        trouble = _container_trouble(node, container)
        if trouble is not None:
            return trouble
    return None


def _container_trouble(node: str, container: Mapping[str, Any]) -> PodTrouble | None:
    state = container.get("state") or {}
    image = str(container.get("image") or "")
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason in PULL_WAITING:
        message = str(waiting.get("message") or "")
        detail = message if reason in PULL_DETAIL else message.partition(BACK_OFF_CAUSE)[2]
        return PodTrouble(node, IMAGE_PULL_FAILED, image, _clip(detail))
    exit_ = state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    crashed = int(exit_.get("exitCode") or 0) != 0
    if reason == "CrashLoopBackOff" or (
        crashed and not container.get("ready") and int(container.get("restartCount") or 0) > 0
    ):
        return PodTrouble(node, LOADER_CRASHING, image, _exit_detail(exit_))
    return None


def _exit_detail(terminated: Mapping[str, Any]) -> str:
    if not terminated:
        return ""
    text = f"exit code {int(terminated.get('exitCode') or 0)}"
    why = str(terminated.get("message") or terminated.get("reason") or "").strip()
    return _clip(f"{text}: {why}" if why else text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 3] + "..."


def carry_detail(previous: PodTrouble | None, new: PodTrouble | None) -> PodTrouble | None:
    """`new`, keeping the cause `previous` knew when `new` is the same failure's back-off."""
    if new is None or previous is None or new.detail:
        return new
    if (previous.reason, previous.image) == (new.reason, new.image):
        return replace(new, detail=previous.detail)
    return new


def with_stored_cause(trouble: PodTrouble, stored_message: str) -> PodTrouble:
    """`trouble`, with the cause the kernel's stored status message quotes for its image when it
    knows none: a restarted operator that finds pods backing off then writes nothing new."""
    marker = f"cannot pull {trouble.image}: "
    if trouble.detail or trouble.reason != IMAGE_PULL_FAILED or marker not in stored_message:
        return trouble
    return replace(trouble, detail=stored_message.partition(marker)[2])


def kernel_trouble(troubles: Iterable[PodTrouble], nodes: int) -> tuple[str, str] | None:
    """(reason, message) for a kernel whose loader pods have `troubles` out of `nodes`, or None.

    A pull failure goes first (nothing runs without the image). The message names the image,
    the node count, and the cause of the node first by name that knows one, so which node
    retries when does not change it."""
    listed = sorted(troubles, key=lambda t: (t.reason != IMAGE_PULL_FAILED, t.node))
    if not listed:
        return None
    reason, image = listed[0].reason, listed[0].image
    same = [t for t in listed if t.reason == reason]
    count = f"{len(same)}/{max(nodes, len(same))} nodes"
    detail = next((t.detail for t in same if t.image == image and t.detail), "")
    if reason == IMAGE_PULL_FAILED:
        message = f"{count} cannot pull {image}"
    else:
        message = f"{count}: the loader ({image}) keeps crashing"
    return reason, f"{message}: {detail}" if detail else message
