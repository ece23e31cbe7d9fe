"""Reading objects as the API server stored them: ownership, spec-hash, rollout, pod images.

Pure functions over raw dicts (what informers cache), used by the actors to decide whether to
write. No I/O, no actor state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ooto.domain.render import LOAD_DIGEST_ANNOTATION, SPEC_HASH_ANNOTATION

Obj = Mapping[str, Any]


def owned_by(obj: Obj, uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def uid_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def parse_resource_version(value: object) -> int:
    """A resourceVersion as a number, 0 when it is not one. resourceVersions are opaque, but
    etcd-backed servers hand out increasing integers: comparing them keeps an informer event
    older than our own write from triggering the write again."""
    try:
        return int(str(value or 0))
    except ValueError:
        return 0


def resource_version(obj: Obj) -> int:
    return parse_resource_version((obj.get("metadata") or {}).get("resourceVersion"))


def stored_hash(obj: Obj | None) -> str | None:
    if obj is None:
        return None
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)


def daemonset_ready(obj: Obj | None, excused: int = 0) -> tuple[int, bool]:
    """(ready pods, fully rolled out) of a DaemonSet as its controller last reported it.

    `excused`: pods that may be missing (nodes NotReady or cordoned, where the DaemonSet still
    schedules a pod that cannot become ready or be replaced)."""
    if obj is None:
        return 0, False
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    desired = max(0, status.get("desiredNumberScheduled", 0) - excused)
    ready = status.get("numberReady", 0)
    current = status.get("observedGeneration", 0) >= generation
    # OnDelete (module loaders): pods on an older template are replaced by ooto's rollout, or
    # never when what they load is unchanged, so "updated" pods say nothing about readiness.
    on_delete = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type") == "OnDelete"
    updated = on_delete or status.get("updatedNumberScheduled", 0) >= desired
    rolled = current and updated and ready >= desired
    return ready, rolled


class Target(NamedTuple):
    """One DaemonSet this actor owns: where it lives, the spec-hash it must carry and the images
    its pods must run."""

    namespace: str
    name: str
    spec_hash: str
    images: tuple[tuple[str, str], ...] | None

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Target:
        meta = manifest["metadata"]
        annotations = meta["annotations"]
        return cls(
            meta["namespace"], meta["name"], annotations[SPEC_HASH_ANNOTATION], pod_images(manifest)
        )


def pod_images(daemonset: Obj) -> tuple[tuple[str, str], ...] | None:
    """(container name, image) of every container of a DaemonSet's pod template, in order; None
    when the object carries no template (a cache may keep only what it needs)."""
    template = (daemonset.get("spec") or {}).get("template")
    if not template:
        return None
    pod = template.get("spec") or {}
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    return tuple((str(c.get("name", "")), str(c.get("image", ""))) for c in containers)


def trim_daemonset(daemonset: dict[str, Any]) -> None:
    """Keep, in place, only what ooto reads of its own DaemonSets (an informer `trim`): all of the
    metadata, the selector and update strategy, the template's metadata (the spec-hash and load
    digest annotations), each container's name and image (`pod_images`), and the status. The
    rest of the template (load script, preStop hook, volumes, security context: most of the
    object) is ooto's own rendering, known by its spec hash; a replace takes only the
    resourceVersion and the owner from the cache. At 10 Modules x 500 kernels the cache holds
    5000 of them (docs/benchmarks.md, memory)."""
    spec = daemonset.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    kept: dict[str, Any] = {key: spec[key] for key in ("selector", "updateStrategy") if key in spec}
    kept["template"] = {
        "metadata": template.get("metadata") or {},
        "spec": {
            key: [{"name": c.get("name"), "image": c.get("image")} for c in pod[key]]
            for key in ("initContainers", "containers")
            if pod.get(key)
        },
    }
    daemonset["spec"] = kept


PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})


def pull_failures(pod: Obj) -> frozenset[str]:
    """Images the pod's containers wait for because the kubelet could not pull them."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return frozenset(
        str(status.get("image") or "")
        for status in statuses
        if ((status.get("state") or {}).get("waiting") or {}).get("reason") in PULL_FAILURES
    )


POD_META_KEPT = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",  # the informer resumes its watch from the last object's
        "labels",
        "creationTimestamp",
        "deletionTimestamp",
    }
)


def trim_pod(pod: dict[str, Any]) -> None:
    """Keep, in place, only what `pull_failures`, routing and the RolloutActor read of a loader pod
    (an informer `trim`): identity, the resourceVersion (the informer resumes its watch from
    the last object's), labels, the load-digest annotation, deletion and creation
    times, its node, its Ready condition, and of each container status what
    `ooto.domain.loader_health` reads (image, state, readiness, restarts, how it last exited)."""
    meta = pod.get("metadata") or {}
    trimmed = {k: meta[k] for k in POD_META_KEPT if k in meta}
    digest = (meta.get("annotations") or {}).get(LOAD_DIGEST_ANNOTATION)
    if digest is not None:
        trimmed["annotations"] = {LOAD_DIGEST_ANNOTATION: digest}
    pod["metadata"] = trimmed
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    kept = [_trim_container(s) for s in statuses]
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    pod["status"] = {"containerStatuses": kept, "conditions": ready}
    node = (pod.pop("spec", None) or {}).get("nodeName")
    if node:
        pod["spec"] = {"nodeName": node}


def _trim_container(status: Obj) -> dict[str, Any]:
    kept = {"image": status.get("image"), "state": status.get("state") or {}}
    for key in ("ready", "restartCount"):
        if key in status:
            kept[key] = status[key]
    last = (status.get("lastState") or {}).get("terminated")
    if last:
        exited = {k: last[k] for k in ("exitCode", "reason") if k in last}
        if last.get("message"):
            exited["message"] = str(last["message"])[:512]  # a termination log can be 4 KiB
        kept["lastState"] = {"terminated": exited}
    return kept
