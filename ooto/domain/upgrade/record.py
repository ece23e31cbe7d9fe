"""A node's upgrade record as a Node annotation value (`keys.upgrade_annotation_key`).

JSON with short, stable field names, e.g.
`{"state":"pod-restart-required","digest":"3f..","generation":4,"cordoned":true,
"oldPod":"6d1c..","since":1764600000.0,"owner":"<Module uid>"}`. `owner` tells a record of a
Module deleted and re-created under the same name from its own (`owner_of`). A value ooto cannot
read (hand-edited, from a future version) is treated as no record: the node is judged afresh
from its loader pod. While ooto runs, the record it holds in memory is the truth: a record edited
on the Node is put back (`edited`), so that a restart still resumes what is under way.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ooto.domain.upgrade.state import NodeUpgrade, NodeUpgradeState

_FIELDS = (
    ("digest", "digest", str),
    ("generation", "generation", int),
    ("cordoned", "cordoned", bool),
    ("oldPod", "old_pod", str),
    ("since", "since", float),
    ("cause", "cause", str),
)


def encode(upgrade: NodeUpgrade, owner: str = "") -> str:
    out: dict[str, Any] = {"state": upgrade.state.value}
    if owner:
        out["owner"] = owner
    for wire, attribute, _ in _FIELDS:
        value = getattr(upgrade, attribute)
        if value:
            out[wire] = value
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def decode(text: str | None) -> NodeUpgrade | None:
    """The record in `text`, None when there is none or it is not one ooto wrote."""
    if not text:
        return None
    try:
        raw = json.loads(text)
        state = NodeUpgradeState(raw["state"])
        values = {
            attribute: _typed(raw[wire], kind) for wire, attribute, kind in _FIELDS if wire in raw
        }
    except (ValueError, KeyError, TypeError):
        return None
    if state is NodeUpgradeState.IDLE:
        return None
    return NodeUpgrade(state=state, written=True, **values)


def edited(text: str | None, held: NodeUpgrade, owner: str) -> bool:
    """The Node's record (`text`) is not the one ooto holds for the node (`held`, IDLE: none):
    someone edited it, to garbage or to another record. False while `held`'s own write is on
    its way, and for a record of another Module of this name (another `owner`: the NodeCleaner's
    to remove)."""
    idle = held.state is NodeUpgradeState.IDLE
    if (idle and not text) or (not idle and not held.written):
        return False  # the common case first: a node at rest without a record (no JSON parsed)
    if owner_of(text) not in ("", owner):
        return False
    return idle or decode(text) != replace(held, written=True)


def owner_of(text: str | None) -> str:
    """The uid of the Module that wrote the record ("" when unknown: older ooto, unreadable)."""
    try:
        raw = json.loads(text or "")
    except ValueError:
        return ""
    owner = raw.get("owner") if isinstance(raw, dict) else None
    return owner if isinstance(owner, str) else ""


def _typed(value: Any, kind: type) -> Any:
    """`value` if JSON gave it the field's type (an int is a valid float), else TypeError."""
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise TypeError(value)
    if not isinstance(value, kind):
        raise TypeError(value)
    return value
