"""The actors' window on the world: `actors.ports.OperatorIO` implemented with our adapters.

Every method that talks to a server returns a coroutine the Bridge runs on the loop; reads of
cluster state come from informer caches (no request). Nothing here decides anything: the
decisions are in actors/ and the pure modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from ooto.api import Module
from ooto.builds.model import BuildBackend, BuildObservation
from ooto.kernels import KernelPlan
from ooto.kube.client import KubeApi
from ooto.kube.errors import Conflict, NotFound
from ooto.kube.events import EventRecorder
from ooto.kube.informer import Informer
from ooto.kube.resources import DAEMONSETS, MODULES, NODES, SECRETS
from ooto.kube.writer import Writer
from ooto.registry import ImageCheck, RegistryAuth, RegistryClient, auth_from_secret
from ooto.stored import owned_by

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
SECRET_TTL_SECONDS = 30.0


class ForeignObject(Exception):  # noqa: N818 (a refusal, read as a sentence)
    """An object with the name we need exists and belongs to someone else."""


def _controller_uid(desired: Mapping[str, Any]) -> str:
    refs = (desired.get("metadata") or {}).get("ownerReferences") or []
    return next((str(r.get("uid")) for r in refs if r.get("controller")), "")


class KubeOperatorIO:
    def __init__(
        self,
        api: KubeApi,
        daemonsets: Informer,
        builds: Informer,
        recorder: EventRecorder,
        registry: RegistryClient,
        backend: BuildBackend,
    ) -> None:
        self._api = api
        self._writer = Writer(api)
        self.daemonsets = daemonsets
        self.builds = builds
        self._recorder = recorder
        self._registry = registry
        self._backend = backend
        self._secrets: dict[tuple[str, str], tuple[float, RegistryAuth | None]] = {}

    async def apply_daemonset(self, desired: dict[str, Any], current: Obj | None) -> Obj:
        if current is None:
            stored, created = await self._writer.create_or_adopt(DAEMONSETS, desired)
            if created:
                return stored
            current = stored
        owner = _controller_uid(desired)
        for _ in range(5):
            if not owned_by(current, owner):
                # Not in our cache (no ooto label) yet under our name: never overwrite it.
                raise ForeignObject(
                    f"DaemonSet {desired['metadata']['name']} exists and is not ours"
                    " (not controlled by this Module); rename or delete it"
                )
            body = {
                **desired,
                "metadata": {
                    **desired["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            try:
                return await self._api.replace(DAEMONSETS, body)
            except Conflict:
                meta = desired["metadata"]
                current = await self._api.get(DAEMONSETS, meta["name"], meta["namespace"])
        raise Conflict(409, "Conflict", f"DaemonSet {desired['metadata']['name']} keeps changing")

    async def delete_object(self, kind: str, namespace: str, name: str, uid: str) -> None:
        if kind == "build":
            await self._backend.delete(namespace, name)
            return
        await self._writer.delete(DAEMONSETS, name, namespace, uid=uid)

    async def patch_module_status(self, namespace: str, name: str, status: dict[str, Any]) -> Obj:
        return await self._api.patch_status(MODULES, name, {"status": status}, namespace)

    async def patch_node_kernel(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> None:
        patch = {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}}
        await self._api.patch(NODES, name, patch)

    async def check_image(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> ImageCheck:
        auth = await self._registry_auth(module)
        insecure = plan.build.push_insecure if plan.build is not None else False
        return await self._registry.image_exists(
            plan.image, insecure=insecure, auth=auth, fresh=fresh
        )

    async def _registry_auth(self, module: Module) -> RegistryAuth | None:
        secret_ref = module.spec.image_repo_secret
        if secret_ref is None:
            return None
        key = (module.metadata.namespace, secret_ref.name)
        cached = self._secrets.get(key)
        if cached is not None and time.monotonic() - cached[0] < SECRET_TTL_SECONDS:
            return cached[1]
        try:
            secret = await self._api.get(SECRETS, secret_ref.name, module.metadata.namespace)
        except NotFound as error:
            raise LookupError(
                f"Secret {secret_ref.name} (spec.imageRepoSecret) not found"
            ) from error
        auth = auth_from_secret(secret)
        self._secrets[key] = (time.monotonic(), auth)
        return auth

    async def start_build(self, module: Module, plan: KernelPlan) -> str:
        ref = await self._backend.start(module, plan)
        return ref.name

    def build_observation(self, build: Obj) -> BuildObservation:
        return self._backend.observe(build)

    async def build_failure_detail(self, namespace: str, build_name: str) -> str:
        try:
            return await asyncio.wait_for(self._backend.log_tail(namespace, build_name), 10)
        except Exception as error:  # the log is a courtesy: its absence must not fail anything
            return f"(build log unavailable: {type(error).__name__})"

    def record_event(
        self, involved: Obj, kind: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        self._recorder.record(dict(involved), kind, reason, message)
