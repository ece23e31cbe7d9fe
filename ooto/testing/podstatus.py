"""What a kubelet would write into a Pod's or a Node's status, as pure functions.

Outcomes a simulated pod can reach:
- `Ready`: Running, every container running and ready.
- `CrashLoop`: Running, containers waiting in CrashLoopBackOff, not ready, their last run
  terminated with exit code 1 (and the pod's `crash_message` as termination message).
- `ErrImagePull`: Pending, containers waiting in ErrImagePull with the container runtime's error
  (what a missing image does first) ...
- `ImagePullBackOff`: ... then waiting in ImagePullBackOff ("Back-off pulling image ...").
- `Failed` / `Succeeded`: terminal, containers terminated with exit code 1 / 0.
- `Pending`: leave the pod alone.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

PodOutcome = Literal[
    "Ready", "CrashLoop", "ErrImagePull", "ImagePullBackOff", "Failed", "Succeeded", "Pending"
]
JobOutcome = Literal["Succeeded", "Failed", "Running"]
JSON = dict[str, Any]

_PHASE: dict[PodOutcome, str] = {
    "Ready": "Running",
    "CrashLoop": "Running",
    "ErrImagePull": "Pending",
    "ImagePullBackOff": "Pending",
    "Failed": "Failed",
    "Succeeded": "Succeeded",
    "Pending": "Pending",
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_ip(name: str, prefix: str) -> str:
    """A stable IPv4 address in the /16 `prefix` (e.g. "10.244") for `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"{prefix}.{digest[0]}.{digest[1] % 254 + 1}"


def is_ready(pod: JSON) -> bool:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def has_outcome(pod: JSON, outcome: PodOutcome) -> bool:
    """Whether the pod's status already shows `outcome` (so nothing needs writing)."""
    status = pod.get("status", {})
    if status.get("phase") != _PHASE[outcome]:
        return False
    if outcome in ("Ready", "Failed", "Succeeded"):
        return is_ready(pod) == (outcome == "Ready")
    waiting = [
        cs.get("state", {}).get("waiting", {}).get("reason")
        for cs in status.get("containerStatuses") or []
    ]
    return bool(waiting) and all(reason == _waiting_reason(outcome) for reason in waiting)


def _waiting_reason(outcome: PodOutcome) -> str:
    return "CrashLoopBackOff" if outcome == "CrashLoop" else outcome


def pull_error(image: str) -> str:
    """What containerd says of an image tag the registry does not have."""
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found'
    )


def _waiting_message(outcome: PodOutcome, pod: JSON, container: JSON) -> str:
    image = container.get("image", "")
    if outcome == "ErrImagePull":
        return pull_error(image)
    if outcome == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    meta = pod["metadata"]
    where = f"{meta['name']}_{meta.get('namespace', '')}({meta.get('uid', '')})"
    return f"back-off 10s restarting failed container={container['name']} pod={where}"


def _container_state(outcome: PodOutcome, at: str) -> JSON:
    if outcome == "Ready":
        return {"running": {"startedAt": at}}
    if outcome in ("Failed", "Succeeded"):
        code = 0 if outcome == "Succeeded" else 1
        reason = "Completed" if code == 0 else "Error"
        return {
            "terminated": {"exitCode": code, "reason": reason, "startedAt": at, "finishedAt": at}
        }
    return {"waiting": {"reason": _waiting_reason(outcome)}}


def _condition(kind: str, true: bool, at: str, reason: str = "") -> JSON:
    condition: JSON = {
        "type": kind,
        "status": "True" if true else "False",
        "lastTransitionTime": at,
    }
    if reason:
        condition["reason"] = reason
    return condition


def pod_status(pod: JSON, outcome: PodOutcome, host_ip: str, crash_message: str = "") -> JSON:
    """The status a kubelet reports for `pod` once it reached `outcome`."""
    at = now()
    ready = outcome == "Ready"
    if ready:
        reason = ""
    elif outcome in ("Succeeded", "Failed"):
        reason = "PodCompleted"
    else:
        reason = "ContainersNotReady"
    spec, uid = pod.get("spec", {}), pod["metadata"].get("uid", "")
    status: JSON = {
        "phase": _PHASE[outcome],
        "hostIP": host_ip,
        "podIP": fake_ip(uid or pod["metadata"]["name"], "10.244"),
        "startTime": pod.get("status", {}).get("startTime") or at,
        "conditions": [
            _condition("PodScheduled", True, at),
            _condition("Initialized", True, at),
            _condition("ContainersReady", ready, at, reason),
            _condition("Ready", ready, at, reason),
        ],
        "containerStatuses": [
            _container_status(pod, container, outcome, at, crash_message)
            for container in spec["containers"]
        ],
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            _container_status(pod, container, "Succeeded", at)
            for container in spec["initContainers"]
        ]
    return {"status": status}


def _container_status(
    pod: JSON, container: JSON, outcome: PodOutcome, at: str, crash_message: str = ""
) -> JSON:
    image, uid = container.get("image", ""), pod["metadata"].get("uid", "")
    status = {
        "name": container["name"],
        "image": image,
        "imageID": f"simulated://{image}",
        "containerID": f"simulated://{uid[:8]}-{container['name']}",
        "ready": outcome == "Ready",
        "started": outcome in ("Ready", "CrashLoop"),
        "restartCount": 1 if outcome == "CrashLoop" else 0,
        "state": _container_state(outcome, at),
    }
    waiting = status["state"].get("waiting")
    if waiting is not None:
        waiting["message"] = _waiting_message(outcome, pod, container)
    if outcome == "CrashLoop":
        exited = {"exitCode": 1, "reason": "Error", "startedAt": at, "finishedAt": at}
        if crash_message:
            exited["message"] = crash_message
        status["lastState"] = {"terminated": exited}
    return status


def node_status(name: str, kernel: str) -> JSON:
    """A Ready node's status as a kubelet registers it."""
    at = now()
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    boot = hashlib.sha256(f"{name}/{kernel}".encode()).hexdigest()
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status",
                "lastHeartbeatTime": at,
                "lastTransitionTime": at,
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": fake_ip(name, "172.16")},
            {"type": "Hostname", "address": name},
        ],
        "nodeInfo": node_info(name, kernel, boot),
    }


def node_info(name: str, kernel: str, boot_id: str) -> JSON:
    machine = hashlib.sha256(name.encode()).hexdigest()[:32]
    return {
        "kernelVersion": kernel,
        "bootID": boot_id,
        "machineID": machine,
        "systemUUID": machine,
        "osImage": "ooto simulated node",
        "containerRuntimeVersion": "simulated://1.0",
        "kubeletVersion": "v1.20.2",
        "kubeProxyVersion": "v1.20.2",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


def executed_pod_status(pod: JSON, runs: list[Any], host_ip: str) -> JSON:
    """The status of a pod whose containers really ran (`ooto.testing.podrun.ContainerRun`s):
    Succeeded when every container exited 0, else Failed; each run container terminated with its
    exit code and termination message; containers that never started (after a failed init
    container) wait in PodInitializing."""
    failed = any(run.exit_code != 0 for run in runs)
    outcome: PodOutcome = "Failed" if failed else "Succeeded"
    body = pod_status(pod, outcome, host_ip)
    status = body["status"]
    by_name = {run.name: run for run in runs}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container_status in status.get(key) or []:
            run = by_name.get(container_status["name"])
            if run is None:
                container_status["state"] = {"waiting": {"reason": "PodInitializing"}}
                continue
            terminated = container_status["state"]["terminated"]
            terminated["exitCode"] = run.exit_code
            terminated["reason"] = "Completed" if run.exit_code == 0 else "Error"
            if run.message:
                terminated["message"] = run.message
    return body
