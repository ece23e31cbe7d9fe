"""NodeTracker: labels every Node with its kernel and tells supervisors which kernels they cover.

It keeps, for each subscribed supervisor, an index kernel -> selected node names, updated per
Node event in O(subscribers); the full map a supervisor receives is built only once per batch of
events (a `Flush` the tracker tells itself lands behind the events already queued).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.base import Backoff, OotoActor
from actors.bridge import Bridge
from actors.messages import (
    Flush,
    IoDone,
    NodeObserved,
    NodesChanged,
    Subscribe,
    Unsubscribe,
)
from actors.ports import OperatorIO
from ooto.domain.kernels import valid_kernel
from ooto.domain.reasons import EventReason
from ooto.domain.render import NODE_KERNEL_ANNOTATION, NODE_KERNEL_LABEL, node_kernel_labels
from ooto.domain.stored import resource_version

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeView:
    labels: Mapping[str, str]
    kernel: str | None
    """The kernel to place modules for: None when the node reports none, or one we refuse."""
    annotation: str | None
    refused: str | None = None
    """A kernel string `valid_kernel` refuses (what a compromised node may write)."""
    available: bool = True
    """Ready and schedulable: a node that is not is counted apart and not waited for."""


@dataclass
class Subscription:
    selector: Mapping[str, str]
    subscriber: Any
    kernels: dict[str, set[str]] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)  # selected, placed, not available
    refused: set[str] = field(default_factory=set)  # selected, with a refused kernel string


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    raw = str((status.get("nodeInfo") or {}).get("kernelVersion") or "").strip()
    annotations = meta.get("annotations") or {}
    ok = valid_kernel(raw)
    return NodeView(
        labels=meta.get("labels") or {},
        kernel=raw if ok else None,
        annotation=annotations.get(NODE_KERNEL_ANNOTATION),
        refused=raw if raw and not ok else None,
        available=node_available(node),
    )


def node_available(node: Mapping[str, Any]) -> bool:
    """Not cordoned and not reported NotReady (a node without a Ready condition yet counts as
    available: its kubelet has not said otherwise)."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for condition in (node.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def kernel_patch(view: NodeView) -> tuple[dict[str, str | None], dict[str, str | None]] | None:
    """The label/annotation change a node needs (None values delete), or None when it is right."""
    if view.kernel is None:
        # No kernel reported (or one we refuse): a stale label would pin a module here: drop ours.
        if NODE_KERNEL_LABEL in view.labels or view.annotation is not None:
            return {NODE_KERNEL_LABEL: None}, {NODE_KERNEL_ANNOTATION: None}
        return None
    labels, annotations = node_kernel_labels(view.kernel)
    want_label = labels[NODE_KERNEL_LABEL]
    want_annotation = annotations.get(NODE_KERNEL_ANNOTATION)
    if view.labels.get(NODE_KERNEL_LABEL) == want_label and view.annotation == want_annotation:
        return None
    return {NODE_KERNEL_LABEL: want_label}, {NODE_KERNEL_ANNOTATION: want_annotation}


class NodeTracker(OotoActor):
    def __init__(self, bridge: Bridge, io: OperatorIO, backoff: Backoff) -> None:
        super().__init__(bridge)
        self._io = io
        self._nodes: dict[str, NodeView] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._dirty: set[str] = set()
        self._flush_queued = False
        self._patching: dict[str, tuple[Any, Any]] = {}
        self._written: dict[str, int] = {}  # node -> resourceVersion our last label write made
        self._warned: dict[str, str] = {}  # node -> the refused kernel string we reported
        self._backoff = backoff

    def on_NodeObserved(self, event: NodeObserved) -> None:
        name = (event.node.get("metadata") or {}).get("name", "")
        old = self._nodes.get(name)
        new = None if event.type == "DELETED" else node_view(event.node)
        if new is None:
            self._nodes.pop(name, None)
            self._written.pop(name, None)
        else:
            self._nodes[name] = new
            if new.kernel is None and new.refused is None and (old is None or old.kernel):
                log.warning(
                    "node %s reports no kernel version: no module is placed there",
                    name,
                    extra={"node": name, "reason": "NoKernelVersion"},
                )
            self._refuse(event.node, new)
            if resource_version(event.node) >= self._written.get(name, 0):
                # An event older than our own write (a relist listed before it landed, an event
                # queued behind its reply) would have the label written a second time.
                self._label(name, new)
        for key, sub in self._subscriptions.items():
            if _reindex(sub, name, old, new):
                self._dirty.add(key)
        self._queue_flush()

    def _refuse(self, node: Mapping[str, Any], view: NodeView) -> None:
        """Say once per (node, kernel string) that the node's kernel string is refused."""
        name = (node.get("metadata") or {}).get("name", "")
        if view.refused is None:
            self._warned.pop(name, None)
            return
        if self._warned.get(name) == view.refused:
            return
        self._warned[name] = view.refused
        shown = repr(view.refused[:200])
        message = (
            f"kernel version {shown} is not a kernel release string (allowed: "
            "[A-Za-z0-9._+~-], 1 to 128 characters): no kernel module is placed on this node"
        )
        log.warning(
            "node %s: %s", name, message, extra={"node": name, "reason": EventReason.INVALID_KERNEL}
        )
        self._io.record_event(node, "Warning", EventReason.INVALID_KERNEL, message)

    def on_Subscribe(self, message: Subscribe) -> None:
        sub = Subscription(message.selector, message.subscriber)
        for name, view in self._nodes.items():
            _reindex(sub, name, None, view)
        self._subscriptions[message.key] = sub
        self._dirty.add(message.key)
        self._queue_flush()

    def on_Unsubscribe(self, message: Unsubscribe) -> None:
        self._subscriptions.pop(message.key, None)
        self._dirty.discard(message.key)

    def on_Flush(self, _: Flush) -> None:
        self._flush_queued = False
        for key in sorted(self._dirty):
            sub = self._subscriptions.get(key)
            if sub is not None:
                kernels = {kernel: frozenset(nodes) for kernel, nodes in sub.kernels.items()}
                changed = NodesChanged(kernels, frozenset(sub.unavailable), frozenset(sub.refused))
                self.send(sub.subscriber, changed)
        self._dirty.clear()

    def _queue_flush(self) -> None:
        if not self._flush_queued and self._dirty:
            self._flush_queued = True
            self.send(self.actor_ref, Flush())

    def _label(self, name: str, view: NodeView) -> None:
        patch = kernel_patch(view)
        if patch is None or self._patching.get(name) == patch:
            return
        self._patching[name] = patch
        log.info("labelling node %s with kernel %r", name, view.kernel, extra={"node": name})
        self.bridge.run(self.actor_ref, ("label", name), self._io.patch_node_kernel(name, *patch))

    def on_IoDone(self, done: IoDone) -> None:
        name = str(done.tag[1])
        self._patching.pop(name, None)
        if done.ok:
            self._backoff.reset()
            if isinstance(done.result, Mapping):
                self._written[name] = resource_version(done.result)
            return
        log.warning("could not label node %s: %s", name, done.error, extra={"node": name})
        self.set_timer(f"relabel:{name}", self._backoff.next_delay())

    def on_timer(self, name: str) -> None:
        node = name.partition(":")[2]
        view = self._nodes.get(node)
        if view is not None:
            self._label(node, view)


def _reindex(sub: Subscription, name: str, old: NodeView | None, new: NodeView | None) -> bool:
    """Move `name` within `sub`'s kernel index and flag sets; True when any of them changed."""
    flags = _reflag(sub, name, new)
    return _rekernel(sub, name, old, new) or flags


def _reflag(sub: Subscription, name: str, new: NodeView | None) -> bool:
    selected = new is not None and selects(sub.selector, new.labels)
    changed = False
    for members, member in (
        (sub.unavailable, selected and new is not None and new.kernel and not new.available),
        (sub.refused, selected and new is not None and new.refused is not None),
    ):
        if bool(member) != (name in members):
            changed = True
            if member:
                members.add(name)
            else:
                members.discard(name)
    return changed


def _rekernel(sub: Subscription, name: str, old: NodeView | None, new: NodeView | None) -> bool:
    before = (
        old.kernel if old is not None and old.kernel and selects(sub.selector, old.labels) else None
    )
    after = (
        new.kernel if new is not None and new.kernel and selects(sub.selector, new.labels) else None
    )
    if before == after:
        return False
    if before is not None:
        nodes = sub.kernels.get(before)
        if nodes is not None:
            nodes.discard(name)
            if not nodes:
                del sub.kernels[before]
    if after is not None:
        sub.kernels.setdefault(after, set()).add(name)
    return True
