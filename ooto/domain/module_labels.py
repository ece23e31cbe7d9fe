"""Two Modules of one namespace must never share a Module label value.

A Module's DaemonSets and loader pods are found and routed by (namespace, Module label value)
(`actors/routes.py`, the RolloutActor's view of its loader pods, the kernel actors' pod troubles),
because a loader pod carries no other trace of its Module. Module names are DNS subdomains
(lowercase alphanumerics, `-` and `.`, up to 253 characters): a name of up to 63 characters is
its own label value, so distinct short names never meet; a longer one becomes its first 52
characters, `-` and 40 bits of its hash (`ooto.domain.kernels.label_safe`). Two Modules thus share
a value only if those 40 bits collide or someone names a Module after another one's hashed form
(long names differing only beyond the cut get distinct hashes). Then the older Module
(creationTimestamp, then name) keeps the value and the other is refused: it gets a clear status
and Event, and nothing runs for it, instead of one Module's rollout deleting the other's loader
pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ooto.domain.kernels import label_safe

Obj = Mapping[str, Any]


def label_rival(module: Obj, others: Iterable[Obj]) -> str | None:
    """The name of an older live Module of `module`'s namespace whose Module label value is the
    same as `module`'s (None when there is none: `module` may run)."""
    meta = module.get("metadata") or {}
    namespace, name = meta.get("namespace"), str(meta.get("name") or "")
    value, rank = label_safe(name), _rank(meta)
    rivals = []
    for other in others:
        theirs = other.get("metadata") or {}
        other_name = str(theirs.get("name") or "")
        if theirs.get("namespace") != namespace or other_name == name:
            continue
        if theirs.get("deletionTimestamp") or label_safe(other_name) != value:
            continue
        if _rank(theirs) < rank:
            rivals.append((_rank(theirs), other_name))
    return min(rivals)[1] if rivals else None


def rival_message(name: str, rival: str) -> str:
    return (
        f"Module {name} would share the Module label value {label_safe(name)!r} with the older"
        f" Module {rival} of this namespace, so their loader pods could not be told apart:"
        " nothing runs for this Module until it is renamed or the other one is deleted"
    )


def _rank(meta: Obj) -> tuple[str, str]:
    # RFC 3339 timestamps of one API server sort as strings; the name breaks ties.
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))
