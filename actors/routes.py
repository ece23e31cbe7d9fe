"""DaemonSet events go from the informer straight to the kernel actor that owns the DaemonSet.

Routing through the root and the supervisor cost two thread hand-offs per event, and the
DaemonSet controller updates each new DaemonSet's status several times while a Module converges.
The table lives on the loop thread (the informer's), so lookups take no lock; supervisors add and
remove routes through `Bridge.call_soon`.

Every event is told: a kernel actor reads the informer cache when it handles one, so it always
acts on the newest object. Coalescing events behind a flag the actor clears was tried: with it,
one message lost or stuck anywhere leaves a kernel that never hears of its DaemonSet again
(seen as a stalled rollout in the slow-API reliability test, together with raised GC thresholds:
docs/benchmarks.md), for a gain too small to measure apart from the other changes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from actors.messages import (
    DaemonSetObserved,
    EventType,
    Flush,
    ImagePullFailed,
    LoaderPodObserved,
    LoaderPodTrouble,
    NodeObserved,
    PodCreateFailed,
)
from ooto.domain.loader_health import PodTrouble, pod_trouble
from ooto.domain.stored import pull_failures
from ooto.domain.upgrade.keys import READY_LABEL_PREFIX, UPGRADE_ANNOTATION_PREFIX

RouteKey = tuple[str, str, str]
"""(namespace, Module label, kernel label): the labels every DaemonSet of a kernel carries."""
ModuleRouteKey = tuple[str, str]
"""(namespace, Module label): where a DaemonSet no kernel actor claims goes (an orphan)."""


class DaemonSetRoutes:
    def __init__(self, bridge: Any, module_label: str, kernel_label: str) -> None:
        self._bridge = bridge
        self._module_label, self._kernel_label = module_label, kernel_label
        self._routes: dict[RouteKey, Any] = {}  # -> pykka.ActorRef of the KernelActor
        self._modules: dict[ModuleRouteKey, Any] = {}  # -> pykka.ActorRef of the supervisor
        self._troubles: dict[str, PodTrouble] = {}  # pod uid -> what its kernel actor was told

    # --- from actor threads ---------------------------------------------------------------

    def add(self, key: RouteKey, ref: Any) -> None:
        """Events for `key`'s DaemonSets go to `ref` from now on (replacing an older actor)."""
        self._bridge.call_soon(self._add, key, ref)

    def remove(self, key: RouteKey, ref: Any) -> None:
        """Stop routing `key` to `ref`; a newer actor's route for the same key stays."""
        self._bridge.call_soon(self._remove, key, ref)

    def add_module(self, key: ModuleRouteKey, ref: Any) -> None:
        """DaemonSets of `key`'s Module that no kernel route claims go to its supervisor."""
        self._bridge.call_soon(self._add_module, key, ref)

    def remove_module(self, key: ModuleRouteKey, ref: Any) -> None:
        self._bridge.call_soon(self._remove_module, key, ref)

    # --- on the loop thread ---------------------------------------------------------------

    def deliver(self, daemonset: Mapping[str, Any]) -> None:
        """Tell the owning kernel actor that its DaemonSet changed (the cache already has it)."""
        key = self._key(daemonset)
        ref = self._routes.get(key) or self._modules.get(key[:2])
        if ref is not None:  # else its Module has no supervisor (deleted: the GC removes it)
            self._bridge.tell(ref, DaemonSetObserved(daemonset))

    def deliver_failed_create(self, event: Mapping[str, Any], daemonsets: Any) -> None:
        """A `FailedCreate` Event of the DaemonSet controller: tell the kernel actor whose
        DaemonSet it is about (`daemonsets`: the DaemonSet informer's cache)."""
        involved = event.get("involvedObject") or {}
        daemonset = daemonsets.get(involved.get("namespace"), involved.get("name", ""))
        if daemonset is None:
            return  # not one of ours (the informer caches only ours), or gone
        uid = (daemonset.get("metadata") or {}).get("uid", "")
        if involved.get("uid") not in (None, "", uid):
            return  # about an earlier DaemonSet of that name
        ref = self._routes.get(self._key(daemonset))
        if ref is not None:
            message = str(event.get("message") or "")[:512]
            self._bridge.tell(ref, PodCreateFailed(involved.get("name", ""), uid, message))

    def deliver_pod(self, pod: Mapping[str, Any], deleted: bool = False) -> None:
        """Tell the owning kernel actor when one of its loader pods cannot pull an image, and
        when why a pod cannot run changes (a pod that runs, and ran, costs no message)."""
        ref = self._routes.get(self._key(pod))
        self._deliver_trouble(ref, pod, deleted)
        failed = pull_failures(pod) if not deleted and ref is not None else frozenset()
        for image in sorted(failed):
            self._bridge.tell(ref, ImagePullFailed(image))

    def _deliver_trouble(self, ref: Any, pod: Mapping[str, Any], deleted: bool) -> None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        trouble = None if deleted else pod_trouble(pod)
        if trouble == self._troubles.get(uid):
            return
        if ref is None:  # no kernel actor yet: it reads the pod cache when it starts
            self._troubles.pop(uid, None)
            return
        if trouble is None:
            del self._troubles[uid]
        else:
            self._troubles[uid] = trouble
        self._bridge.tell(ref, LoaderPodTrouble(uid, trouble))

    def _key(self, daemonset: Mapping[str, Any]) -> RouteKey:
        meta = daemonset.get("metadata") or {}
        labels = meta.get("labels") or {}
        return (
            meta.get("namespace", ""),
            labels.get(self._module_label, ""),
            labels.get(self._kernel_label, ""),
        )

    def __len__(self) -> int:
        return len(self._routes)

    def _add(self, key: RouteKey, ref: Any) -> None:
        self._routes[key] = ref

    def _remove(self, key: RouteKey, ref: Any) -> None:
        if self._routes.get(key) == ref:
            del self._routes[key]

    def _add_module(self, key: ModuleRouteKey, ref: Any) -> None:
        self._modules[key] = ref

    def _remove_module(self, key: ModuleRouteKey, ref: Any) -> None:
        if self._modules.get(key) == ref:
            del self._modules[key]


class RolloutRoutes:
    """Loader-pod and Node events to the RolloutActors, on the loop thread like DaemonSetRoutes.

    A loader pod goes to the actor of its (namespace, Module label). A Node event goes only to the
    actors that care about that node: those whose Module targets it (`target`) and those whose
    ready label or upgrade record it carries (by the key's name part, `add`). Broadcasting every
    Node event to every actor cost ~180 us of CPU per Node event with 50 Modules
    (tests/bench/node_fanout.py, docs/benchmarks.md), all of it for nothing on nodes a Module does
    not select. Changing an actor's targets tells it `Flush("routed")` once the table holds them,
    so it reads the newly targeted nodes from the cache: no event falls between the two.
    """

    def __init__(self, bridge: Any, module_label: str) -> None:
        self._bridge = bridge
        self._module_label = module_label
        self._routes: dict[tuple[str, str], Any] = {}
        self._parts: dict[str, Any] = {}  # key name part (`<ns>.<name>`, maybe hashed) -> actor
        self._targets: dict[Any, frozenset[str]] = {}  # actor -> nodes its Module targets
        self._by_node: dict[str, set[Any]] = {}  # node -> actors targeting it

    def add(self, key: tuple[str, str], ref: Any, part: str = "") -> None:
        self._bridge.call_soon(self._add, key, ref, part)

    def remove(self, key: tuple[str, str], ref: Any) -> None:
        self._bridge.call_soon(self._remove, key, ref)

    def target(self, ref: Any, nodes: frozenset[str]) -> None:
        """`ref`'s Module now targets `nodes`: their events go to it from now on."""
        self._bridge.call_soon(self._target, ref, nodes)

    def deliver_pod(self, type_: EventType, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(self._module_label, ""))
        ref = self._routes.get(key)
        if ref is not None:
            self._bridge.tell(ref, LoaderPodObserved(type_, pod, time.monotonic()))

    def deliver_daemonset(self, daemonset: Mapping[str, Any]) -> None:
        """A loader DaemonSet changed: its Module's RolloutActor reads the desired digest there."""
        meta = daemonset.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get("ooto.sigs.k8s.io/role") != "module-loader":
            return
        ref = self._routes.get((meta.get("namespace", ""), labels.get(self._module_label, "")))
        if ref is not None:
            self._bridge.tell(ref, DaemonSetObserved(daemonset))

    def deliver_node(self, type_: EventType, node: Mapping[str, Any]) -> None:
        meta = node.get("metadata") or {}
        refs = set(self._by_node.get(str(meta.get("name", "")), ()))
        for key in (*(meta.get("labels") or {}), *(meta.get("annotations") or {})):
            prefix, _, part = key.partition("/")
            if prefix in (READY_LABEL_PREFIX, UPGRADE_ANNOTATION_PREFIX) and part in self._parts:
                refs.add(self._parts[part])
        for ref in refs:
            self._bridge.tell(ref, NodeObserved(type_, node))

    def _add(self, key: tuple[str, str], ref: Any, part: str) -> None:
        self._routes[key] = ref
        if part:
            self._parts[part] = ref

    def _remove(self, key: tuple[str, str], ref: Any) -> None:
        if self._routes.get(key) == ref:
            del self._routes[key]
        for part in [p for p, r in self._parts.items() if r == ref]:
            del self._parts[part]
        self._set_targets(ref, frozenset())

    def _target(self, ref: Any, nodes: frozenset[str]) -> None:
        if ref in self._routes.values():  # not after it was removed
            self._set_targets(ref, nodes)
            self._bridge.tell(ref, Flush("routed"))

    def _set_targets(self, ref: Any, nodes: frozenset[str]) -> None:
        old = self._targets.pop(ref, frozenset())
        for node in old - nodes:
            refs = self._by_node.get(node, set())
            refs.discard(ref)
            if not refs:
                self._by_node.pop(node, None)
        for node in nodes - old:
            self._by_node.setdefault(node, set()).add(ref)
        if nodes:
            self._targets[ref] = nodes
