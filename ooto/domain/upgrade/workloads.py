"""Which pods must leave a node before its module-loader pod is replaced.

Two kinds: pods ooto evicts (those `podDeletion` names, and with `drain` every pod but DaemonSet
pods) and pods the DaemonSet controller removes by itself once the ready label is off, which ooto
waits for and never evicts: the Module's own device-plugin pods, and DaemonSet pods `podDeletion`
names (evicted, such a pod would be recreated on the cordoned node at once: DaemonSet pods
tolerate the cordon). A DaemonSet pod that does not select on the ready label never leaves: it
holds the node, with a status message saying so, until the node fails at its timeout.
Module-loader pods and mirror (static) pods are never evicted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ooto.domain.api.module import Module
from ooto.domain.upgrade.keys import ready_label_key
from ooto.domain.upgrade.selector import matches, parse_selector

Obj = Mapping[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_LABEL_MODULE, _LABEL_ROLE = "ooto.sigs.k8s.io/module", "ooto.sigs.k8s.io/role"


@dataclass(frozen=True)
class Departures:
    evict: tuple[Obj, ...]
    """Pods to evict (not yet terminating)."""
    waiting: int
    """Pods that must still leave (evicted or not, device plugin included)."""
    held: tuple[str, ...] = ()
    """Why some pods are not evicted though they must leave (a drain that may not delete
    emptyDir data): the node fails at its timeout unless someone moves them."""


def must_evict(module: Module) -> bool:
    """Does the policy evict anything (then ooto cordons the node first)?"""
    policy = module.spec.upgrade_policy
    return policy.pod_deletion is not None or (policy.drain is not None and policy.drain.enable)


def departures(module: Module, module_label: str, pods: list[Obj]) -> Departures:
    """The pods of one node that must leave, and which of them ooto still has to evict."""
    evict, waiting, held = [], 0, []
    for pod in pods:
        if _finished(pod):
            continue
        ours = _is_device_plugin(pod, module, module_label)
        if not (ours or _evictable(module, pod)):
            continue
        waiting += 1
        meta = pod.get("metadata") or {}
        if ours or meta.get("deletionTimestamp"):
            continue
        if _daemonset_pod(meta):
            label = ready_label_key(module.metadata.namespace, module.metadata.name)
            if not _follows(pod, label):
                held.append(
                    f"{meta.get('namespace')}/{meta.get('name')} is a DaemonSet pod that "
                    f"podDeletion names: its DaemonSet must select on {label}=true to leave"
                )
        elif _keeps_empty_dir(module, pod):
            held.append(
                f"{meta.get('namespace')}/{meta.get('name')} has emptyDir data and "
                "drain.deleteEmptyDir is false"
            )
        else:
            evict.append(pod)
    return Departures(tuple(evict), waiting, tuple(held))


def _keeps_empty_dir(module: Module, pod: Obj) -> bool:
    """Only a drain protects emptyDir data: podDeletion names pods that must go whatever."""
    policy = module.spec.upgrade_policy
    deletion, drain = policy.pod_deletion, policy.drain
    if drain is None or not drain.enable or drain.delete_empty_dir:
        return False
    if deletion is not None and _uses_module(pod, deletion.pod_selector, deletion.resource_names):
        return False
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any("emptyDir" in volume for volume in volumes)


def _evictable(module: Module, pod: Obj) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(_LABEL_ROLE) == "module-loader" or MIRROR_ANNOTATION in (
        meta.get("annotations") or {}
    ):
        return False
    policy = module.spec.upgrade_policy
    deletion, drain = policy.pod_deletion, policy.drain
    if deletion is not None and _uses_module(pod, deletion.pod_selector, deletion.resource_names):
        return True
    if drain is not None and drain.enable and not _daemonset_pod(meta):
        return matches(parse_selector(drain.pod_selector), labels)
    return False


def _uses_module(pod: Obj, selector: str, resources: list[str]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if selector and matches(parse_selector(selector), labels):
        return True
    wanted = set(resources)
    for container in (pod.get("spec") or {}).get("containers") or []:
        requested = (container.get("resources") or {}).get("requests") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        if wanted & (set(requested) | set(limits)):
            return True
    return False


def _is_device_plugin(pod: Obj, module: Module, module_label: str) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (
        meta.get("namespace") == module.metadata.namespace
        and labels.get(_LABEL_MODULE) == module_label
        and labels.get(_LABEL_ROLE) == "device-plugin"
    )


def _follows(pod: Obj, label: str) -> bool:
    """Does the pod run only where the ready label is (nodeSelector, or a required node affinity
    on the key), so that its DaemonSet controller removes it once the label is off?"""
    spec = pod.get("spec") or {}
    if (spec.get("nodeSelector") or {}).get(label) == "true":
        return True
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = affinity.get("nodeSelectorTerms") or []
    return bool(terms) and all(
        any(e.get("key") == label for e in term.get("matchExpressions") or []) for term in terms
    )


def _daemonset_pod(meta: Obj) -> bool:
    return any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or [])


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
