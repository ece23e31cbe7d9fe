"""What a retiring kernel actor still has to do: pure, so every case is a plain unit test.

A kernel actor that retires deletes every DaemonSet it owns and stops only once nothing of it can
remain: no write of its own is in flight (a create still on the wire lands later, with the old
nodeSelector) and the informer cache shows none of its DaemonSets (a delete that failed, or one
whose watch event has not arrived yet, keeps it waiting).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ooto.domain.render import LABEL_KERNEL
from ooto.domain.stored import owned_by

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Doomed:
    """One of our DaemonSets to delete (only while its uid still matches)."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class RetireStep:
    delete: tuple[Doomed, ...]
    done: bool
    """Nothing left: report retired and stop."""


def kernel_daemonsets(
    cached: Iterable[Obj], namespace: str, module_uid: str, kernel_label: str
) -> list[Obj]:
    """The DaemonSets of one (Module, kernel) the cache shows, whatever plan rendered them."""
    found = []
    for obj in cached:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != namespace or not owned_by(obj, module_uid):
            continue
        if (meta.get("labels") or {}).get(LABEL_KERNEL) == kernel_label:
            found.append(obj)
    return found


def retire_step(
    owned: Iterable[Obj], writes_in_flight: bool, deleting: Collection[str]
) -> RetireStep:
    """The deletes to send now, and whether retiring is over.

    `owned`: what the cache shows of ours; `deleting`: uids whose delete is in flight or was
    answered (the cache may lag behind it); `writes_in_flight`: an apply or delete not answered.
    """
    delete = []
    remaining = False
    for obj in owned:
        remaining = True
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if uid and uid not in deleting and not meta.get("deletionTimestamp"):
            delete.append(Doomed(str(meta.get("namespace")), str(meta.get("name")), uid))
    return RetireStep(tuple(delete), done=not remaining and not writes_in_flight)


def orphans(
    cached: Iterable[Obj], namespace: str, module_uid: str, live_labels: Collection[str]
) -> list[Doomed]:
    """The Module's DaemonSets whose kernel label belongs to no live kernel actor (a kernel left
    while we were down, an actor died, a write landed after its actor retired)."""
    found = []
    for obj in cached:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != namespace or not owned_by(obj, module_uid):
            continue
        if meta.get("deletionTimestamp") or (meta.get("labels") or {}).get(LABEL_KERNEL) in (
            live_labels
        ):
            continue
        found.append(Doomed(namespace, str(meta.get("name")), str(meta.get("uid") or "")))
    return found
