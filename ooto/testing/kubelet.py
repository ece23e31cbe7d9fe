"""A simulated kubelet for many nodes: what real kubelets would write, written through the API.

One watch over bound pods feeds a small work queue (each pod key is queued at most once, and never
handled by two workers at a time, as in client-go's workqueue); a fixed number of workers write
statuses, so 500 nodes and thousands of pods cost one watch and bounded concurrency.

What each pod becomes is decided per pod: build Job pods (label `job-name`) by `job_outcome`
(default: `job_outcomes[job name]`, else `default_job_outcome`), other pods by `pod_outcome`
(default: `ImagePullBackOff` for `fail_images`, `CrashLoop` for pods carrying all `fail_labels`,
else `Ready`). Pods being deleted (a delete, an eviction) are finished (grace period 0, uid
precondition): at once, or, for pods `graceful` matches, after their own grace period as a real
kubelet would let a workload shut down (`graceful_cap` bounds the wait).

With `execute_jobs` set, a Job pod decided `Succeeded` whose containers name host programs by
absolute path (Buildah Jobs do, Kaniko's do not) really runs (`ooto.testing.podrun`), and its exit
codes decide its phase: the build pushes a real image. `Running` and `Failed` stay simulated.
A pull failure shows as a kubelet shows it: `ErrImagePull` with the runtime's error, then
(`PULL_BACKOFF_SECONDS` later) `ImagePullBackOff`. With `pull_retry_seconds` set, a pod left in
ImagePullBackOff is decided again after that long, as a kubelet retries a pull (and, failing
again, shows ErrImagePull again). A crash-looping pod's last run exited 1 with `crash_message`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp

from ooto.testing.podrun import PodRunner, runnable
from ooto.testing.podstatus import (
    JobOutcome,
    PodOutcome,
    executed_pod_status,
    fake_ip,
    has_outcome,
    node_info,
    node_status,
    pod_status,
)
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, STRATEGIC_PATCH, KubeRest, RestError, WatchGoneError

log = logging.getLogger("ooto.testing.kubelet")

PULL_BACKOFF_SECONDS = 0.2
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
JOB_NAME_LABEL = "job-name"
PodDecision = Callable[[JSON], PodOutcome | Awaitable[PodOutcome | None] | None]
JobDecision = Callable[[JSON], JobOutcome | Awaitable[JobOutcome]]
PodMatch = Callable[[JSON], bool]


class SimulatedKubelet:
    """Kubelets for the nodes it added; `run()` is the pod loop (run it as a task)."""

    def __init__(self, rest: KubeRest, workers: int = 16) -> None:
        self.rest = rest
        self.nodes: dict[str, str] = {}  # node name -> kernel
        self.synced = asyncio.Event()
        self._workers = workers
        self._pods: dict[str, JSON] = {}  # "ns/name" -> last seen pod bound to one of our nodes
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._pull_due: set[str] = set()  # pod keys whose next pull step (back-off, retry) is due
        self.runner = PodRunner(rest)
        self.reset()

    def reset(self) -> None:
        """Back to defaults: every pod Ready, every build Job Succeeded."""
        self.fail_images: set[str] = set()
        self.fail_labels: dict[str, str] = {}
        self.pod_outcome: PodDecision | None = None
        self.job_outcomes: dict[str, JobOutcome] = {}
        self.default_job_outcome: JobOutcome = "Succeeded"
        self.job_outcome: JobDecision | None = None
        self.execute_jobs = False
        self.pull_retry_seconds: float | None = None
        self.crash_message = ""
        self.graceful: PodMatch | None = None
        self.graceful_cap: float = 5.0

    # -- nodes -----------------------------------------------------------------------------

    async def add_node(
        self, name: str, kernel: str, labels: Mapping[str, str] | None = None
    ) -> JSON:
        """Register a Ready node running `kernel`, without the not-ready taint."""
        self.nodes[name] = kernel
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {**_default_labels(name), **(labels or {})}},
            "spec": {},
            "status": node_status(name, kernel),  # nodes accept status on create
        }
        created = await self.rest.post("/api/v1/nodes", body)
        return await self._untaint(created)

    async def add_nodes(self, nodes: Iterable[tuple[str, str, Mapping[str, str] | None]]) -> None:
        """Many `(name, kernel, labels)` at once; the client's concurrency bounds the writes."""
        await asyncio.gather(*(self.add_node(*node) for node in nodes))

    async def _untaint(self, node: JSON) -> JSON:
        taints = node.get("spec", {}).get("taints") or []
        kept = [taint for taint in taints if taint.get("key") not in NOT_READY_TAINTS]
        if len(kept) == len(taints):
            return node
        name = node["metadata"]["name"]
        return await self.rest.patch(f"/api/v1/nodes/{name}", {"spec": {"taints": kept or None}})

    async def set_kernel(self, name: str, kernel: str) -> JSON:
        """The node rebooted into `kernel` (new bootID, same Ready condition)."""
        self.nodes[name] = kernel
        info = node_info(name, kernel, boot_id=f"{name}-{kernel}")
        return await self.rest.patch(f"/api/v1/nodes/{name}/status", {"status": {"nodeInfo": info}})

    async def set_labels(self, name: str, labels: Mapping[str, str | None]) -> JSON:
        """Merge `labels` into the node's labels; a None value removes that label."""
        return await self.rest.patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": labels}})

    async def remove_node(self, name: str) -> None:
        """Delete the node and force-delete its pods (what pod GC would do)."""
        await self.remove_nodes([name])

    async def remove_all_nodes(self) -> None:
        await self.remove_nodes(list(self.nodes))

    async def remove_nodes(self, names: Iterable[str]) -> None:
        gone = set(names)
        for name in gone:
            self.nodes.pop(name, None)
        await asyncio.gather(
            *(_ignore_missing(self.rest.delete(f"/api/v1/nodes/{n}")) for n in gone)
        )
        # resourceVersion=0: served from the API server's watch cache, not a full read of etcd.
        bound = await self.rest.get(
            "/api/v1/pods", {"fieldSelector": "spec.nodeName!=", "resourceVersion": "0"}
        )
        orphans = [pod for pod in bound.get("items", []) if pod["spec"].get("nodeName") in gone]
        await asyncio.gather(*(self._force_delete(pod) for pod in orphans))

    def set_job_outcome(self, job_name: str, outcome: JobOutcome) -> None:
        """Decide a build Job's fate now (e.g. release a job held in `Running`)."""
        self.job_outcomes[job_name] = outcome
        for key, pod in self._pods.items():
            if pod["metadata"].get("labels", {}).get(JOB_NAME_LABEL) == job_name:
                self._enqueue(key)

    # -- the pod loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch bound pods forever; relist after errors or 410 Gone."""
        workers = [
            asyncio.create_task(self._work(), name=f"kubelet-worker-{i}")
            for i in range(self._workers)
        ]
        version: str | None = None
        try:
            while True:
                try:
                    if version is None:
                        version = await self._relist()
                    version = await self._watch(version)
                except WatchGoneError:
                    version = None
                except (aiohttp.ClientError, RestError, TimeoutError, OSError) as error:
                    log.info("pod watch failed (%s); relisting in 1s", error)
                    version = None
                    await asyncio.sleep(1.0)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _relist(self) -> str:
        listed = await self.rest.get("/api/v1/pods", {"fieldSelector": "spec.nodeName!="})
        seen = set()
        for pod in listed.get("items", []):
            seen.add(self._observe(pod))
        for key in set(self._pods) - seen:
            self._pods.pop(key, None)
        self.synced.set()
        version: str = listed["metadata"]["resourceVersion"]
        return version

    async def _watch(self, version: str) -> str:
        params = {"resourceVersion": version, "fieldSelector": "spec.nodeName!="}
        async for event in self.rest.watch("/api/v1/pods", params):
            pod = event["object"]
            version = pod["metadata"].get("resourceVersion", version)
            if event["type"] == "DELETED":
                self._pods.pop(_key(pod), None)
                self._pull_due.discard(_key(pod))
            elif event["type"] in ("ADDED", "MODIFIED"):
                self._observe(pod)
        return version

    def _observe(self, pod: JSON) -> str:
        key = _key(pod)
        if pod.get("spec", {}).get("nodeName") in self.nodes:
            self._pods[key] = pod
            self._enqueue(key)
        return key

    def _enqueue(self, key: str) -> None:
        if key not in self._queued and key not in self._busy:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._busy.add(key)
            pod = self._pods.get(key)
            try:
                if pod is not None:
                    await self._handle(pod)
            except (aiohttp.ClientError, RestError, TimeoutError, OSError) as error:
                log.warning("pod %s: %s; retrying in 1s", key, error)
                asyncio.get_running_loop().call_later(1.0, self._enqueue, key)
            except Exception:
                log.exception("pod %s: unexpected error", key)
            finally:
                self._busy.discard(key)
            if key in self._pods and (self._pods[key] is not pod or key in self._pull_due):
                self._enqueue(key)  # it changed, or its next pull step fell due, meanwhile

    async def _handle(self, pod: JSON) -> None:
        meta, node = pod["metadata"], pod["spec"].get("nodeName", "")
        if node not in self.nodes:
            # Its node was removed: nothing runs it any more. Forget it, else a pull step that
            # fell due would requeue it for ever without the worker ever yielding to the loop.
            self._pods.pop(_key(pod), None)
            self._pull_due.discard(_key(pod))
            return
        if meta.get("deletionTimestamp"):
            await self._terminate(pod)
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        outcome = await self._decide(pod)
        if outcome == "ImagePullBackOff":
            outcome = self._pull_step(pod)
        if outcome == "Pending" or has_outcome(pod, outcome):
            return
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        if outcome == "Succeeded" and self._executes(pod):
            runs = await self.runner.run(pod)
            body = executed_pod_status(pod, runs, fake_ip(node, "172.16"))
        else:
            body = pod_status(pod, outcome, fake_ip(node, "172.16"), self.crash_message)
        body["metadata"] = {"uid": meta["uid"]}  # never write a recreated pod of the same name
        try:
            await _ignore_missing(self.rest.patch(path, body, STRATEGIC_PATCH))
        except RestError as error:
            if error.status != 422 or "metadata.uid" not in str(error):
                raise  # a uid mismatch is a new pod of that name: its own event follows

    def _pull_step(self, pod: JSON) -> PodOutcome:
        """The next state of a pod whose image cannot be pulled: ErrImagePull, then back-off,
        then (with `pull_retry_seconds`) another attempt. "Pending": nothing is due yet."""
        key = _key(pod)
        due = key in self._pull_due
        self._pull_due.discard(key)
        shown = {
            ((s.get("state") or {}).get("waiting") or {}).get("reason")
            for s in (pod.get("status") or {}).get("containerStatuses") or []
        }
        loop = asyncio.get_running_loop()
        if shown & {"ErrImagePull", "ImagePullBackOff"} and not due:
            return "Pending"
        if "ErrImagePull" in shown:
            if self.pull_retry_seconds is not None:
                loop.call_later(self.pull_retry_seconds, self._due, key)
            return "ImagePullBackOff"
        loop.call_later(PULL_BACKOFF_SECONDS, self._due, key)
        return "ErrImagePull"

    def _due(self, key: str) -> None:
        self._pull_due.add(key)
        self._enqueue(key)

    def _executes(self, pod: JSON) -> bool:
        labels = pod["metadata"].get("labels") or {}
        return self.execute_jobs and JOB_NAME_LABEL in labels and runnable(pod)

    async def _decide(self, pod: JSON) -> PodOutcome:
        labels = pod["metadata"].get("labels") or {}
        job_name = labels.get(JOB_NAME_LABEL)
        if job_name is not None:
            return _job_pod_outcome(await self._decide_job(job_name, pod))
        if self.pod_outcome is not None:
            decision = self.pod_outcome(pod)
            decided = await decision if inspect.isawaitable(decision) else decision
            if decided is not None:
                return decided
        images = {c.get("image") for c in pod["spec"].get("containers", [])}
        if images & self.fail_images:
            return "ImagePullBackOff"
        if self.fail_labels and all(labels.get(k) == v for k, v in self.fail_labels.items()):
            return "CrashLoop"
        return "Ready"

    async def _decide_job(self, job_name: str, pod: JSON) -> JobOutcome:
        if self.job_outcome is not None:
            decided = self.job_outcome(pod)
            return await decided if inspect.isawaitable(decided) else decided
        return self.job_outcomes.get(job_name, self.default_job_outcome)

    async def _terminate(self, pod: JSON) -> None:
        """A pod being deleted or evicted: it stops within its grace period, then is gone."""
        if self.graceful is not None and self.graceful(pod):
            grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
            await asyncio.sleep(min(float(grace), self.graceful_cap))
        await self._force_delete(pod)

    async def _force_delete(self, pod: JSON) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        await _ignore_missing(self.rest.delete(path, body))


def build_destinations(pod: JSON) -> list[str]:
    """Images a build pod pushes: Kaniko's `--destination` arguments, Buildah's `docker://`
    push destination."""
    found = []
    for container in pod.get("spec", {}).get("containers", []):
        args = [*container.get("command", []), *container.get("args", [])]
        for index, arg in enumerate(args):
            if arg.startswith("--destination="):
                found.append(arg.split("=", 1)[1])
            elif arg == "--destination" and index + 1 < len(args):
                found.append(args[index + 1])
            elif arg.startswith("docker://"):
                found.append(arg.removeprefix("docker://"))
    return found


def pushing_builds(registry: RegistryServer, outcome: JobOutcome = "Succeeded") -> JobDecision:
    """A `job_outcome` hook: push every destination image that lives on `registry`, as a real
    build would, then report `outcome`. Other destinations are left alone."""

    async def decide(pod: JSON) -> JobOutcome:
        if outcome == "Succeeded":
            for image in build_destinations(pod):
                host, _, rest = image.partition("/")
                if host == registry.host:
                    repo, _, tag = rest.rpartition(":")
                    await registry.push_manifest(repo, tag)
        return outcome

    return decide


def _job_pod_outcome(outcome: JobOutcome) -> PodOutcome:
    return "Ready" if outcome == "Running" else outcome


def _key(pod: JSON) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def _default_labels(name: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }


async def _ignore_missing(call: Awaitable[Any]) -> None:
    """404 (gone already) and 409 (uid precondition: a different pod now) mean nothing to do."""
    try:
        await call
    except RestError as error:
        if error.status not in (404, 409):
            raise
