"""What a deleted Module left on a Node: its ready label, its upgrade record, and ooto's cordon.

A key is left over when no Module in the (synced) Module cache has it: the Module cache is
updated before any actor hears of a Module, and only a RolloutActor of a Module already in the
cache writes that Module's keys, so a key whose Module the cache lacks belongs to a Module that
is gone; so is a record whose `owner` uid is not the cached Module's (a Module deleted and
re-created under the same name while no operator ran: its RolloutActor ignores that record). What
is still racy (a Module created while the cleanup patch is in flight) is closed by
the patch itself: it carries the Node's resourceVersion, so it fails (409) if anything wrote the
Node after it was judged, and the Node is judged again. An unreadable Module still counts as
present (it is in the cache). Under a watch namespace, only keys that may name a Module of that
namespace are judged (another ooto may own the rest): `<namespace>.` and a verbatim name, or a
shortened key whose readable part is a prefix of `<namespace>.<name>` (two namespaces sharing
their first 45 characters, each with its own ooto, could then judge each other's shortened keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ooto.domain.upgrade import facts, record
from ooto.domain.upgrade.keys import (
    HASH_HEX,
    READY_LABEL_PREFIX,
    UPGRADE_ANNOTATION_PREFIX,
    module_name_part,
)

Obj = Mapping[str, Any]
_READY = READY_LABEL_PREFIX + "/"
_RECORD = UPGRADE_ANNOTATION_PREFIX + "/"


@dataclass(frozen=True)
class Cleanup:
    """One Node patch: keys to remove, whether to uncordon, the version it was judged at."""

    labels: tuple[str, ...]
    annotations: tuple[str, ...]
    uncordon: bool
    resource_version: str


def carries_module_keys(node: Obj) -> bool:
    """Any ooto ready label or upgrade record on `node` (cheap: to route Node events)."""
    meta = node.get("metadata") or {}
    return any(k.startswith(_READY) for k in meta.get("labels") or {}) or any(
        k.startswith(_RECORD) for k in meta.get("annotations") or {}
    )


def live_parts(modules: Iterable[Obj]) -> dict[str, str]:
    """The key name parts of the Modules in the cache (every one, readable or not) -> uid."""
    parts = {}
    for module in modules:
        meta = module.get("metadata") or {}
        part = module_name_part(str(meta.get("namespace", "")), str(meta.get("name", "")))
        parts[part] = str(meta.get("uid") or "")
    return parts


def leftovers(node: Obj, live: Mapping[str, str], namespace: str | None = None) -> Cleanup | None:
    """What to take off `node`: keys of Modules not in `live`; None when there is nothing."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}

    def orphan(key: str, prefix: str) -> bool:
        part = key[len(prefix) :]
        if not key.startswith(prefix) or part in live:
            return False
        return namespace is None or may_name(part, namespace)

    def stale(key: str) -> bool:
        """A record of a Module deleted and re-created under the same name (another uid)."""
        owner = record.owner_of(annotations[key])
        return owner not in ("", live.get(key[len(_RECORD) :], owner))

    gone_labels = tuple(sorted(k for k in labels if orphan(k, _READY)))
    gone_records = tuple(
        sorted(k for k in annotations if orphan(k, _RECORD) or (k.startswith(_RECORD) and stale(k)))
    )
    if not gone_labels and not gone_records:
        return None
    uncordon = facts.cordoned(node) and any(
        (found := record.decode(annotations[k])) is not None and found.cordoned
        for k in gone_records
    )
    version = str(meta.get("resourceVersion") or "")
    return Cleanup(gone_labels, gone_records, uncordon, version)


def may_name(part: str, namespace: str) -> bool:
    """Whether a key name part can be that of a Module in `namespace` (see `keys`)."""
    if part.startswith(f"{namespace}."):
        return True
    readable, dash, digest = part.rpartition("-")
    shortened = dash and len(digest) == HASH_HEX and all(c in "0123456789abcdef" for c in digest)
    return bool(shortened) and bool(readable) and f"{namespace}.".startswith(readable)
