"""The RolloutActor's Node writes: one patch in flight per node, and the newest view of a node.

A node's writes are serialized, so a ready-label write can never overtake an upgrade step's write
(the bridge runs coroutines concurrently). A write's reply is the stored Node: until the informer
cache shows that version, `view` returns the reply, so the actor never judges a node by a cache
that does not have its own write yet (which would write the same thing twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.ports import ObjectStore
from ooto.domain.stored import resource_version

Obj = Mapping[str, Any]
Patch = tuple[dict[str, str | None], dict[str, str | None], bool | None, bool]
"""labels, annotations, unschedulable, and whether it is an upgrade step."""


class NodeWrites:
    def __init__(self, nodes: ObjectStore) -> None:
        self._nodes = nodes
        self._inflight: dict[str, Patch | None] = {}  # node -> step queued behind the write
        self._fresh: dict[str, Obj] = {}

    def busy(self, node: str) -> bool:
        return node in self._inflight

    def start(self, node: str, patch: Patch) -> Patch | None:
        """`patch` to send now, or None: another is in flight (an upgrade step then waits for
        it; a label write is dropped: the actor decides labels again when the write is done)."""
        if node in self._inflight:
            if patch[3]:
                self._inflight[node] = patch
            return None
        self._inflight[node] = None
        return patch

    def done(self, node: str, stored: Obj | None) -> Patch | None:
        """The write finished (`stored`: what the server returned, if it succeeded); returns the
        step queued behind it, to send now."""
        queued = self._inflight.pop(node, None)
        if stored is not None:
            self._fresh[node] = stored
        return queued

    def view(self, name: str) -> Obj | None:
        """The newer of the cached Node and the one our last write returned. A Node the cache
        no longer has is deleted (ooto writes only Nodes it saw in the cache): None, and what
        its last write returned is dropped (else a deleted node would live on in the view, be
        written to, and be kept for ever)."""
        cached, mine = self._nodes.get("", name), self._fresh.get(name)
        if mine is None:
            return cached
        if cached is None or resource_version(cached) >= resource_version(mine):
            del self._fresh[name]
            return cached
        return mine
