"""Clearing a node before its module is unloaded: evict the pods that use it, wait until the
pods that must leave are gone.

Evictions go through the Eviction API, so PodDisruptionBudgets are respected: a refused eviction
(429) is retried every `retry_seconds` (as `kubectl drain` does; the API has no way to be told
when a budget allows it) and reported through `on_blocked` ("" once accepted again). Between
retries the node's pods are watched (field selector on the node), never polled. It runs until done
or cancelled (the RolloutActor cancels it through its `Bridge.run` handle the moment the node no
longer needs it; the watch stream is closed then, not left to the garbage collector). Each pod is
evicted at most once per uid: a pod already terminating is waited for, not evicted again (this is
what keeps a restarted operator from evicting twice).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ooto.kube.client import KubeApi
from ooto.kube.errors import ApiError, Gone, NotFound, TransientError
from ooto.kube.resources import PODS

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
EVICTION_VERSION = "policy/v1beta1"  # policy/v1 Eviction needs Kubernetes 1.22
CHECK_SECONDS = 300.0
"""How long one watch of the node's pods lasts when no eviction waits (then it lists again)."""


class Departing(Protocol):
    @property
    def evict(self) -> tuple[Obj, ...]: ...

    @property
    def waiting(self) -> int: ...

    @property
    def held(self) -> tuple[str, ...]: ...


async def clear_node(
    api: KubeApi,
    node: str,
    departures_of: Callable[[list[Obj]], Departing],
    on_blocked: Callable[[str], None],
    retry_seconds: float = 5.0,
) -> int:
    """Evict and wait until `departures_of(pods on node).waiting` is 0; returns evictions made."""
    field = f"spec.nodeName={node}"
    evicted: set[str] = set()
    refused = False
    while True:
        listed = await api.list(PODS, field_selector=field)
        pods: dict[str, Obj] = {_uid(p): p for p in listed.items}
        found = departures_of(list(pods.values()))
        if found.waiting == 0:
            return len(evicted)
        blocked = [await _evict(api, pod, evicted) for pod in found.evict]
        refused_now = [f"eviction refused: {reason}" for reason in blocked if reason]
        refusals = refused_now + [f"not evicted: {reason}" for reason in found.held]
        if refusals:
            on_blocked(refusals[0])
        elif refused:
            on_blocked("")  # accepted now: the pods are on their way out
        refused = bool(refusals)
        timeout = retry_seconds if refusals else CHECK_SECONDS
        tried = {_uid(pod) for pod in found.evict}
        try:
            if await _watch_until_gone(
                api, field, listed.resource_version, pods, departures_of, timeout, tried
            ):
                return len(evicted)
        except (Gone, TransientError) as error:
            log.info("node %s: pod watch ended (%s); listing again", node, error)


async def _evict(api: KubeApi, pod: Obj, evicted: set[str]) -> str:
    """Evict `pod` once; "" when done (or gone), else why the API server refused."""
    meta = pod.get("metadata") or {}
    if _uid(pod) in evicted:
        return ""
    body = {
        "apiVersion": EVICTION_VERSION,
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "deleteOptions": {"preconditions": {"uid": meta["uid"]}},
    }
    try:
        await api.create_subresource(PODS, meta["name"], "eviction", body, meta["namespace"])
    except NotFound:
        return ""
    except ApiError as error:
        if error.status == 409:  # the uid precondition: a new pod of that name, not ours
            return ""
        if error.status != 429:
            raise
        return f"{meta['namespace']}/{meta['name']}: {error.message or error.reason}"
    evicted.add(_uid(pod))
    log.info("evicted pod %s/%s", meta["namespace"], meta["name"])
    return ""


async def _watch_until_gone(
    api: KubeApi,
    field: str,
    version: str,
    pods: dict[str, Obj],
    departures_of: Callable[[list[Obj]], Departing],
    timeout: float,
    tried: set[str],
) -> bool:
    """Follow the node's pods until none must leave (True), or the watch times out, or a pod to
    evict that this round has not tried lands on the node (False: list and evict again; it may
    land at any time: DaemonSet-like tolerations, an admin's uncordon)."""
    stream = api.watch(
        PODS, resource_version=version, field_selector=field, timeout_seconds=max(1, int(timeout))
    )
    async with contextlib.aclosing(stream):
        async for event in stream:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "DELETED":
                pods.pop(_uid(obj), None)
            elif kind in ("ADDED", "MODIFIED"):
                pods[_uid(obj)] = obj
            else:
                continue
            found = departures_of(list(pods.values()))
            if found.waiting == 0:
                return True
            if any(_uid(pod) not in tried for pod in found.evict):
                return False
    return False


def _uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")
