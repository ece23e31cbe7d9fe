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

from collections.abc import Mapping
from typing import Any

from actors.messages import (
    DaemonSetObserved,
    EventType,
    ImagePullFailed,
    LoaderPodObserved,
    LoaderPodTrouble,
    NodeObserved,
    PodCreateFailed,
)
from ooto.loader_health import PodTrouble, pod_trouble
from ooto.stored import pull_failures

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

    A loader pod goes to the actor of its (namespace, Module label). A Node event goes to every
    RolloutActor (one per Module, so a handful): each keeps only its own nodes' news.
    """

    def __init__(self, bridge: Any, module_label: str) -> None:
        self._bridge = bridge
        self._module_label = module_label
        self._routes: dict[tuple[str, str], Any] = {}

    def add(self, key: tuple[str, str], ref: Any) -> None:
        self._bridge.call_soon(self._add, key, ref)

    def remove(self, key: tuple[str, str], ref: Any) -> None:
        self._bridge.call_soon(self._remove, key, ref)

    def deliver_pod(self, type_: EventType, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(self._module_label, ""))
        ref = self._routes.get(key)
        if ref is not None:
            self._bridge.tell(ref, LoaderPodObserved(type_, pod))

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
        for ref in list(self._routes.values()):
            self._bridge.tell(ref, NodeObserved(type_, node))

    def _add(self, key: tuple[str, str], ref: Any) -> None:
        self._routes[key] = ref

    def _remove(self, key: tuple[str, str], ref: Any) -> None:
        if self._routes.get(key) == ref:
            del self._routes[key]
