"""NodeCleaner: takes what deleted Modules left off the Nodes (ready labels, upgrade records,
ooto's cordons), retried with backoff until done, and found again after a restart.

A Module's own RolloutActor cannot do this: it stops with its Module, and a patch that failed
then (or an operator killed then) would leave a node cordoned forever. The cleaner judges from the
caches alone (`ooto.domain.upgrade.leftovers`: a key no cached Module has), so a restarted
operator finds
the same leftovers with its first sweep, and at rest it writes nothing. It hears of every Node that
carries an ooto key (a write of a RolloutActor that landed after its Module went is seen too), of
each Module deletion, and sweeps once the caches are synced.
"""

from __future__ import annotations

import logging

from actors.base import Backoff, OotoActor
from actors.bridge import Bridge
from actors.messages import IoDone, NodeObserved, SweepLeftovers
from actors.ports import OperatorIO
from ooto.domain.upgrade.leftovers import leftovers, live_parts
from ooto.kube.errors import NotFound
from ooto.logs import log_fields

log = logging.getLogger(__name__)


class NodeCleaner(OotoActor):
    def __init__(
        self, bridge: Bridge, io: OperatorIO, backoff: Backoff, namespace: str | None
    ) -> None:
        super().__init__(bridge)
        self._io = io
        self._backoff = backoff
        self._namespace = namespace
        self._synced = False  # judging before the Module cache is synced would take live keys
        self._inflight: set[str] = set()
        self._again: set[str] = set()  # nodes that changed while their patch was in flight

    def on_SweepLeftovers(self, _: SweepLeftovers) -> None:
        self._synced = True  # the first one is told once every cache is synced
        for node in self._io.nodes.list():
            self._check(str((node.get("metadata") or {}).get("name", "")))

    def on_NodeObserved(self, message: NodeObserved) -> None:
        if message.type != "DELETED":
            self._check(str((message.node.get("metadata") or {}).get("name", "")))

    def on_timer(self, name: str) -> None:
        self._check(name.partition(":")[2])

    def _check(self, name: str) -> None:
        if not self._synced:
            return  # the sweep after sync judges this node
        if name in self._inflight:
            self._again.add(name)
            return
        node = self._io.nodes.get("", name)
        if node is None:
            return
        found = leftovers(node, live_parts(self._io.modules.list()), self._namespace)
        if found is None:
            return
        self._inflight.add(name)
        log.info(
            "node %s: removing what deleted Modules left: %s%s",
            name,
            ", ".join(found.labels + found.annotations),
            " and ooto's cordon" if found.uncordon else "",
            extra=log_fields(node=name, reason="ModuleLeftovers"),
        )
        write = self._io.patch_node(
            name,
            dict.fromkeys(found.labels),
            dict.fromkeys(found.annotations),
            False if found.uncordon else None,
            resource_version=found.resource_version,
        )
        self.bridge.run(self.actor_ref, ("clean", name), write)

    def on_IoDone(self, done: IoDone) -> None:
        name = done.tag[1]
        self._inflight.discard(name)
        again = name in self._again
        self._again.discard(name)
        if done.ok:
            self._backoff.reset()
        elif isinstance(done.error, NotFound):
            return  # the node is gone, and what it carried with it
        else:
            # A 409 means the Node changed since it was judged: its next event (or this timer)
            # judges it again; any other failure is retried the same way, never given up.
            delay = self._backoff.next_delay()
            log.warning(
                "node %s: cleanup failed (%s); retrying in %.1fs",
                name,
                done.error,
                delay,
                extra=log_fields(node=name, reason="CleanupFailed"),
            )
            self.set_timer(f"clean:{name}", delay)
            return
        if again:
            self._check(name)
