"""What the RolloutActor keeps besides its decisions: its Module's loader pods by node, and the
evictions running on nodes (each cancellable, so none goes on after its node failed or left)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ooto.render import LABEL_MODULE
from ooto.upgrade import facts

Obj = Mapping[str, Any]


class LoaderPods:
    """The Module's module-loader pods (from the loader-pod informer), indexed by node."""

    def __init__(self, namespace: str, module_label: str) -> None:
        self._namespace = namespace
        self._module_label = module_label
        self._by_node: dict[str, dict[str, Obj]] = {}

    def observe(self, type_: str, pod: Obj) -> str:
        """Record an event; returns the pod's node ("" when it is not ours or not bound)."""
        meta = pod.get("metadata") or {}
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        # Another Module's loader pods may share the namespace and the node: never count them
        # (one would be "upgraded", i.e. deleted, under a Module that does not own it).
        module = (meta.get("labels") or {}).get(LABEL_MODULE)
        if meta.get("namespace") != self._namespace or module != self._module_label or not node:
            return ""
        pods = self._by_node.setdefault(node, {})
        if type_ == "DELETED":
            pods.pop(str(meta.get("uid")), None)
        else:
            pods[str(meta.get("uid"))] = pod
        return node

    def current(self, node: str) -> Obj | None:
        """The node's loader pod that counts (not being deleted; the newest)."""
        return facts.current_pod(self._by_node.get(node, {}).values())

    def by_uid(self, node: str, uid: str) -> Obj | None:
        return self._by_node.get(node, {}).get(uid)


ClearNode = Callable[[threading.Event], Coroutine[Any, Any, int | None]]


class Clearings:
    """Nodes whose pods are being evicted; `start` returns the coroutine to run, or None when
    that node is being cleared already."""

    def __init__(self) -> None:
        self._running: dict[str, threading.Event] = {}
        self.blocked: dict[str, str] = {}  # node -> why its evictions wait (status message)

    def start(self, node: str, clear: ClearNode) -> Coroutine[Any, Any, int | None] | None:
        if node in self._running:
            return None
        cancelled = self._running[node] = threading.Event()
        return clear(cancelled)

    def finished(self, node: str) -> None:
        self._running.pop(node, None)

    def cancel(self, node: str) -> None:
        """No eviction on `node` any more (it failed, left, or finished this step)."""
        self.blocked.pop(node, None)
        if node in self._running:
            self._running[node].set()

    def cancel_all(self) -> None:
        for cancelled in self._running.values():
            cancelled.set()
