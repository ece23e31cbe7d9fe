"""The `BuildBackend`s on the API server (chosen by `ooto.builds.select.select_backend`).

```python
backend = await select_backend(api, settings)          # ooto.builds.select
ref = await backend.start(module, plan)                # BuildRef; adopts a running build
backend.resource, BUILD_SELECTOR                       # what the build informer watches
backend.observe(obj)                                   # BuildObservation, pure
await backend.log_tail(namespace, ref.name)            # last lines of the build pod's log
await backend.delete(namespace, ref.name)
```

One build per (namespace, image): `start` first looks for a running build object carrying the
image's hash label (whichever Module or kernel started it, whichever operator process) and adopts
it. Concurrent `start`s for one image in this process share one attempt (500 kernels mapping to
one image cost one list and one create). A finished build object of the same name is deleted
and replaced: `start` is only called when the image is still missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from ooto.builds.buildah import DEFAULT_BUILDAH, BuildahOptions, render_buildah_job
from ooto.builds.buildconfig import (
    BUILD_CONFIG_LABEL,
    BUILD_NAME_LABEL,
    DEFAULT_DEADLINE_SECONDS,
    build_number,
    observe_build,
    render_build,
    render_build_request,
    render_buildconfig,
)
from ooto.builds.cluster import ClusterReadError, ClusterReads
from ooto.builds.kaniko import (
    DEFAULT_KANIKO,
    KanikoOptions,
    observe_job,
    render_dockerfile_configmap,
    render_kaniko_job,
)
from ooto.builds.model import (
    IMAGE_ANNOTATION,
    LABEL_IMAGE_HASH,
    BuildObservation,
    BuildRef,
    BuildStartError,
    last_lines,
    owned_by_other,
    plan_build,
    termination_message,
)
from ooto.domain.api.module import Module
from ooto.domain.kernels import KernelPlan, kernel_hash
from ooto.domain.render import SPEC_HASH_ANNOTATION
from ooto.kube.client import JsonObj, KubeApi
from ooto.kube.errors import AlreadyExists, ApiError, NotFound
from ooto.kube.resources import BUILDCONFIGS, BUILDS, CONFIGMAPS, JOBS, PODS, Resource

log = logging.getLogger(__name__)

_CREATE_ATTEMPTS = 10
_DELETE_WAIT_SECONDS = 0.3


class _Backend:
    """What both backends share: adoption by image label, logs, deletion."""

    resource: Resource
    _pod_label: str

    def __init__(
        self,
        api: KubeApi,
        reads: ClusterReads,
        observe: Callable[[Mapping[str, Any]], BuildObservation],
    ) -> None:
        self._api = api
        self._reads = reads
        self._observe = observe
        self._starts: dict[tuple[str, str], asyncio.Task[BuildRef]] = {}

    def observe(self, obj: Mapping[str, Any]) -> BuildObservation:
        return self._observe(obj)

    async def start(
        self, module: Module, plan: KernelPlan, *, owner: Mapping[str, Any] | None = None
    ) -> BuildRef:
        """Adopt the running build of the plan's image, or start one. Concurrent calls for one
        (namespace, image) share a single attempt; all but the first see `adopted=True`."""
        image, namespace = plan_build(plan).image, module.metadata.namespace
        key = (namespace, image)
        flight = self._starts.get(key)
        if flight is not None:
            return dataclasses.replace(await asyncio.shield(flight), adopted=True)
        flight = asyncio.create_task(
            self._start(module, plan, image, owner), name=f"build-start {namespace} {image}"
        )
        self._starts[key] = flight
        flight.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(flight)

    def _forget(self, key: tuple[str, str], done: asyncio.Task[BuildRef]) -> None:
        if self._starts.get(key) is done:
            del self._starts[key]

    async def _start(
        self, module: Module, plan: KernelPlan, image: str, owner: Mapping[str, Any] | None
    ) -> BuildRef:
        running = await self._running_build(module.metadata.namespace, image)
        if running is not None:
            name = running["metadata"]["name"]
            log.info("build of %s: adopting running %s %s", image, self.resource.kind, name)
            return self._ref(running, image, adopted=True)
        stored, created = await self._create(module, plan, owner)
        verb = "started" if created else "adopted"
        name = stored["metadata"]["name"]
        log.info("build of %s: %s %s %s", image, verb, self.resource.kind, name)
        return self._ref(stored, image, adopted=not created)

    async def _create(
        self, module: Module, plan: KernelPlan, owner: Mapping[str, Any] | None
    ) -> tuple[JsonObj, bool]:
        """Create this backend's build object: (stored object, created) or adopted on a race."""
        raise NotImplementedError

    async def _running_build(self, namespace: str, image: str) -> JsonObj | None:
        """A running build object of `image` in `namespace`, from any Module."""
        selector = f"{LABEL_IMAGE_HASH}={kernel_hash(image)}"
        found = await self._api.list(self.resource, namespace, label_selector=selector)
        for obj in sorted(found.items, key=lambda o: str(o["metadata"].get("name"))):
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            same_image = (meta.get("annotations") or {}).get(IMAGE_ANNOTATION, image) == image
            if same_image and not self._observe(obj).finished:
                return obj
        return None

    def _ref(self, obj: Mapping[str, Any], image: str, adopted: bool) -> BuildRef:
        meta = obj["metadata"]
        return BuildRef(self.resource, meta["namespace"], meta["name"], image, adopted)

    async def log_tail(self, namespace: str, name: str, lines: int = 20) -> str:
        """The last `lines` of the build pod's log, or a sentence saying why there is none: the
        failed container's termination message when it has one (a kubelet writes the end of the
        log there under `FallbackToLogsOnError`), else the `pods/log` endpoint."""
        try:
            pods = await self._api.list(PODS, namespace, label_selector=f"{self._pod_label}={name}")
        except ApiError as error:
            return f"(build pods of {name} unreadable: {error.status} {error.reason})"
        if not pods.items:
            return f"(no pod left for build {name})"
        pod = max(pods.items, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        pod_name = pod["metadata"]["name"]
        terminated = termination_message(pod)
        if terminated:
            return last_lines(terminated, lines)
        try:
            text = await self._reads.pod_log(namespace, pod_name, tail_lines=lines)
        except ClusterReadError as error:
            return f"(build log unavailable: {error})"
        return last_lines(text, lines) or f"(pod {pod_name} logged nothing)"

    async def _delete_quietly(self, res: Resource, namespace: str, name: str) -> None:
        with suppress(NotFound):
            await self._api.delete(res, name, namespace, propagation_policy="Background")


class _JobBackend(_Backend):
    """Builds with a batch/v1 Job (plus a ConfigMap for an inline Dockerfile)."""

    resource = JOBS
    _pod_label = "job-name"

    def __init__(self, api: KubeApi, reads: ClusterReads) -> None:
        super().__init__(api, reads, observe_job)

    def _render_job(self, module: Module, plan: KernelPlan) -> JsonObj:
        raise NotImplementedError

    async def _create(
        self, module: Module, plan: KernelPlan, owner: Mapping[str, Any] | None
    ) -> tuple[JsonObj, bool]:
        configmap = render_dockerfile_configmap(module, plan)
        if configmap is not None:
            await self._ensure_configmap(owned_by_other(configmap, owner))
        job = owned_by_other(self._render_job(module, plan), owner)
        return await self._create_replacing_finished(job)

    async def _ensure_configmap(self, configmap: JsonObj) -> None:
        meta = configmap["metadata"]
        try:
            await self._api.create(CONFIGMAPS, configmap)
            return
        except AlreadyExists:
            current = await self._api.get(CONFIGMAPS, meta["name"], meta["namespace"])
        if current.get("data") != configmap["data"]:  # the Module's Dockerfile changed
            resource_version = current["metadata"]["resourceVersion"]
            body = {**configmap, "metadata": {**meta, "resourceVersion": resource_version}}
            await self._api.replace(CONFIGMAPS, body)

    async def _create_replacing_finished(self, job: JsonObj) -> tuple[JsonObj, bool]:
        """Create the Job; a finished one of that name goes first. Adopt one that is running."""
        meta = job["metadata"]
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return await self._api.create(JOBS, job), True
            except AlreadyExists:
                pass
            try:
                current = await self._api.get(JOBS, meta["name"], meta["namespace"])
            except NotFound:
                continue
            if not current["metadata"].get("deletionTimestamp"):
                if not observe_job(current).finished:
                    return current, False
                await self._delete_quietly(JOBS, meta["namespace"], meta["name"])
            await asyncio.sleep(_DELETE_WAIT_SECONDS)
        raise BuildStartError(f"Job {meta['name']} is still being deleted; will retry")

    async def delete(self, namespace: str, name: str) -> None:
        """The Job (its pods follow), and the Dockerfile ConfigMap of the same name if any."""
        await self._delete_quietly(JOBS, namespace, name)
        await self._delete_quietly(CONFIGMAPS, namespace, name)


class KanikoJobBackend(_JobBackend):
    """Builds with a Kaniko executor Job (Kaniko is archived upstream; kept selectable). Sign
    builds get the signing Secrets mounted into the executor (Kaniko has no build secrets)."""

    sign_secrets = "mounted"

    def __init__(
        self, api: KubeApi, reads: ClusterReads, options: KanikoOptions | None = None
    ) -> None:
        super().__init__(api, reads)
        self._options = options or DEFAULT_KANIKO

    def _render_job(self, module: Module, plan: KernelPlan) -> JsonObj:
        return render_kaniko_job(module, plan, self._options)


class BuildahJobBackend(_JobBackend):
    """Builds with the upstream Buildah image in a Job (upstream Kubernetes' default). Sign
    builds hand the signing Secrets to `RUN --mount=type=secret` (build secrets)."""

    sign_secrets = "build-secrets"

    def __init__(
        self, api: KubeApi, reads: ClusterReads, options: BuildahOptions | None = None
    ) -> None:
        super().__init__(api, reads)
        self._options = options or DEFAULT_BUILDAH

    def _render_job(self, module: Module, plan: KernelPlan) -> JsonObj:
        return render_buildah_job(module, plan, self._options)


class BuildConfigBackend(_Backend):
    """Builds with an OpenShift BuildConfig (Docker strategy) and its Builds. Sign builds get
    the signing Secrets as build volumes."""

    sign_secrets = "mounted"

    resource = BUILDS
    _pod_label = BUILD_NAME_LABEL

    def __init__(
        self,
        api: KubeApi,
        reads: ClusterReads,
        *,
        instantiate: bool | None = None,
        deadline_seconds: int = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        """`instantiate`: is `buildconfigs/instantiate` served (None: ask discovery when needed)."""
        super().__init__(api, reads, observe_build)
        self._instantiate = instantiate
        self._deadline_seconds = deadline_seconds

    @property
    def uses_instantiate(self) -> bool | None:
        """Whether builds start through `instantiate` (None: not known until the first build)."""
        return self._instantiate

    async def _create(
        self, module: Module, plan: KernelPlan, owner: Mapping[str, Any] | None
    ) -> tuple[JsonObj, bool]:
        desired = owned_by_other(render_buildconfig(module, plan, self._deadline_seconds), owner)
        config = await self._ensure_buildconfig(desired)
        return await self._start_build(config, plan.kernel), True

    async def _ensure_buildconfig(self, desired: JsonObj) -> JsonObj:
        """Create the BuildConfig, or replace one whose spec-hash differs (the Module changed).

        Replacing is delete + create: the chart grants no update on BuildConfigs, and the old
        one's Builds are all finished (a running one would have been adopted).
        """
        meta = desired["metadata"]
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return await self._api.create(BUILDCONFIGS, desired)
            except AlreadyExists:
                pass
            try:
                current = await self._api.get(BUILDCONFIGS, meta["name"], meta["namespace"])
            except NotFound:
                continue
            current_meta = current["metadata"]
            if not current_meta.get("deletionTimestamp"):
                wanted = meta["annotations"][SPEC_HASH_ANNOTATION]
                if (current_meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == wanted:
                    return current
                await self._delete_quietly(BUILDCONFIGS, meta["namespace"], meta["name"])
            await asyncio.sleep(_DELETE_WAIT_SECONDS)
        raise BuildStartError(f"BuildConfig {meta['name']} is still being deleted; will retry")

    async def _start_build(self, config: JsonObj, kernel: str) -> JsonObj:
        meta = config["metadata"]
        if self._instantiate is None:
            served = await self._reads.served_resources(BUILDCONFIGS.group, BUILDCONFIGS.version)
            self._instantiate = f"{BUILDCONFIGS.plural}/instantiate" in (served or ())
        if self._instantiate:
            # KubeApi has no "create on a subresource": a Resource whose plural is the path works.
            instantiate = Resource(
                BUILDCONFIGS.group,
                BUILDCONFIGS.version,
                f"{BUILDCONFIGS.plural}/{meta['name']}/instantiate",
                "BuildRequest",
                namespaced=True,
            )
            body = render_build_request(meta["name"], kernel)
            return await self._api.create(instantiate, body, meta["namespace"])
        return await self._create_build(config, kernel)

    async def _create_build(self, config: JsonObj, kernel: str) -> JsonObj:
        """What OpenShift's instantiate does, for API servers that serve Builds as CRDs only."""
        meta = config["metadata"]
        selector = f"{BUILD_CONFIG_LABEL}={meta['name']}"
        existing = await self._api.list(BUILDS, meta["namespace"], label_selector=selector)
        number = max((build_number(b) for b in existing.items), default=0) + 1
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return await self._api.create(BUILDS, render_build(config, number, kernel))
            except AlreadyExists:
                number += 1
        raise BuildStartError(f"BuildConfig {meta['name']}: no free build number; will retry")

    async def delete(self, namespace: str, name: str) -> None:
        """One Build (its pod follows). The BuildConfig stays for the next build."""
        await self._delete_quietly(BUILDS, namespace, name)
