"""What the RolloutActor keeps besides its decisions: its Module's loader pods by node, and the
evictions running on nodes (each cancellable, so none goes on after its node failed or left)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ooto.domain.render import LABEL_MODULE
from ooto.domain.upgrade import facts

Obj = Mapping[str, Any]


class LoaderPods:
    """The Module's module-loader pods (from the loader-pod informer), indexed by node."""

    def __init__(self, namespace: str, module_label: str) -> None:
        self._namespace = namespace
        self._module_label = module_label
        self._by_node: dict[str, dict[str, Obj]] = {}
        self._current: dict[str, Obj | None] = {}  # per node until its next pod event

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
        self._current.pop(node, None)
        if type_ == "DELETED":
            pods.pop(str(meta.get("uid")), None)
        else:
            pods[str(meta.get("uid"))] = pod
        return node

    def current(self, node: str) -> Obj | None:
        """The node's loader pod that counts (not being deleted; the newest). Cached: the grant
        and the report ask for every node's once per burst of messages."""
        if node not in self._current:
            self._current[node] = facts.current_pod(self._by_node.get(node, {}).values())
        return self._current[node]

    def by_uid(self, node: str, uid: str) -> Obj | None:
        return self._by_node.get(node, {}).get(uid)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clearings:
    """Nodes whose pods are being evicted, each with the handle of its running coroutine
    (`Bridge.run`), so that it is cancelled at once when its node no longer needs it."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[int, Cancellable]] = {}
        self._serial = 0
        self.blocked: dict[str, str] = {}  # node -> why its evictions wait (status message)

    def running(self, node: str) -> bool:
        return node in self._running

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def started(self, node: str, serial: int, handle: Cancellable) -> None:
        self._running[node] = (serial, handle)

    def finished(self, node: str, serial: int) -> bool:
        """The clearing `serial` of `node` ended; False when it is not the current one (it was
        cancelled, and maybe replaced, before its end was told)."""
        if self._running.get(node, (0, None))[0] != serial:
            return False
        del self._running[node]
        return True

    def waits(self, node: str, why: str) -> None:
        """Evictions on `node` are refused (`why`), or accepted again ("")."""
        if why:
            self.blocked[node] = why
        else:
            self.blocked.pop(node, None)

    def cancel(self, node: str) -> None:
        """No eviction on `node` any more (it failed, left, or finished this step)."""
        self.blocked.pop(node, None)
        running = self._running.pop(node, None)
        if running is not None:
            running[1].cancel()

    def cancel_all(self) -> None:
        for node in list(self._running):
            self.cancel(node)
