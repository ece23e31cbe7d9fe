"""DaemonSet events go from the informer straight to the kernel actor that owns the DaemonSet.

Routing through the root and the supervisor cost two thread hand-offs per event, and the
DaemonSet controller updates each new DaemonSet's status several times while a Module converges.
The table lives on the loop thread (the informer's), so lookups take no lock; supervisors add and
remove routes through `Bridge.call_soon`.

Events coalesce per kernel actor: the actor re-reads the informer cache when it handles one, so
while one `DaemonSetObserved` waits in its mailbox, later events have nothing to add. The protocol
across the two threads: the loop updates the cache, then tells only if `route.queued` is False
(setting it); the actor clears `queued` *before* it reads the cache. An event skipped because
`queued` was still set is therefore in the cache when that read happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.messages import DaemonSetObserved

RouteKey = tuple[str, str, str]
"""(namespace, Module label, kernel label): the labels every DaemonSet of a kernel carries."""


@dataclass(slots=True, eq=False)
class Route:
    ref: Any  # pykka.ActorRef of the KernelActor
    queued: bool = False


class DaemonSetRoutes:
    def __init__(self, bridge: Any, module_label: str, kernel_label: str) -> None:
        self._bridge = bridge
        self._module_label, self._kernel_label = module_label, kernel_label
        self._routes: dict[RouteKey, Route] = {}

    # --- from actor threads ---------------------------------------------------------------

    def add(self, key: RouteKey, ref: Any) -> None:
        """Events for `key`'s DaemonSets go to `ref` from now on (replacing an older actor)."""
        self._bridge.call_soon(self._add, key, ref)

    def remove(self, key: RouteKey, ref: Any) -> None:
        """Stop routing `key` to `ref`; a newer actor's route for the same key stays."""
        self._bridge.call_soon(self._remove, key, ref)

    # --- on the loop thread ---------------------------------------------------------------

    def deliver(self, daemonset: Mapping[str, Any]) -> None:
        """Tell the owning kernel actor that its DaemonSet changed (the cache already has it)."""
        meta = daemonset.get("metadata") or {}
        labels = meta.get("labels") or {}
        key = (
            meta.get("namespace", ""),
            labels.get(self._module_label, ""),
            labels.get(self._kernel_label, ""),
        )
        route = self._routes.get(key)
        if route is None or route.queued:
            return  # nobody owns it (an orphan is found by its supervisor's cache scan)
        route.queued = True
        self._bridge.tell(route.ref, DaemonSetObserved(route))

    def __len__(self) -> int:
        return len(self._routes)

    def _add(self, key: RouteKey, ref: Any) -> None:
        self._routes[key] = Route(ref)

    def _remove(self, key: RouteKey, ref: Any) -> None:
        route = self._routes.get(key)
        if route is not None and route.ref == ref:
            del self._routes[key]
