"""The actors' window on the world: `actors.ports.OperatorIO` implemented with our adapters.

Every method that talks to a server returns a coroutine the Bridge runs on the loop; reads of
cluster state come from informer caches (no request). Nothing here decides anything: the
decisions are in actors/ and the pure modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ooto.builds.model import BuildBackend, BuildObservation
from ooto.domain.api import Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.stored import owned_by
from ooto.kube.client import KubeApi
from ooto.kube.errors import Conflict
from ooto.kube.events import EventRecorder
from ooto.kube.evictions import Departing, clear_node
from ooto.kube.informer import Informer
from ooto.kube.resources import DAEMONSETS, MODULES, NODES, PODS, PREFLIGHTVALIDATIONS
from ooto.kube.writer import Writer
from ooto.module_images import ModuleImages
from ooto.registry import ImageCheck, RegistryClient
from ooto.signing_io import ModuleSignatures, SignatureCheck

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]


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
        modules: Informer,
        nodes: Informer,
        loader_pods: Informer,
        signer_image: str = "",
        sign_secret_ttl: float = 60.0,
    ) -> None:
        self._api = api
        self._writer = Writer(api)
        self.daemonsets = daemonsets
        self.builds = builds
        self.modules = modules
        self.nodes = nodes
        self.loader_pods = loader_pods
        self._recorder = recorder
        self._images = ModuleImages(api, registry)
        self._backend = backend
        self._signatures = ModuleSignatures(
            api, registry, self._images, backend, signer_image, sign_secret_ttl
        )

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
        if kind != "pod":
            await self._writer.delete(DAEMONSETS, name, namespace, uid=uid)
            return
        # A 409 is the uid precondition: that pod is gone, a new one has its name.
        with contextlib.suppress(Conflict):
            await self._writer.delete(PODS, name, namespace, uid=uid)

    async def patch_module_status(self, namespace: str, name: str, status: dict[str, Any]) -> Obj:
        return await self._api.patch_status(MODULES, name, {"status": status}, namespace)

    async def patch_node_kernel(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> Obj:
        patch = {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}}
        stored: Obj = await self._api.patch(NODES, name, patch)
        return stored

    async def patch_node(
        self,
        name: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        unschedulable: bool | None = None,
        resource_version: str = "",
    ) -> Obj:
        patch: dict[str, Any] = {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)}
        }
        if resource_version:  # optimistic: 409 if anything wrote the Node since it was judged
            patch["metadata"]["resourceVersion"] = resource_version
        if unschedulable is not None:
            # null, not false, on uncordon: the field reads back absent, as kubectl leaves it.
            patch["spec"] = {"unschedulable": True if unschedulable else None}
        return await self._api.patch(NODES, name, patch)

    async def clear_node(
        self,
        node: str,
        departures_of: Callable[[list[Obj]], Departing],
        on_blocked: Callable[[str], None],
    ) -> int:
        return await clear_node(self._api, node, departures_of, on_blocked)

    async def check_image(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> ImageCheck:
        return await self._images.check(module, plan, fresh=fresh)

    async def start_build(self, module: Module, plan: KernelPlan, owner: Obj | None = None) -> str:
        ref = await self._backend.start(module, plan, owner=owner)
        return ref.name

    async def check_signature(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> SignatureCheck:
        return await self._signatures.check_signature(module, plan, fresh=fresh)

    async def check_unsigned(self, module: Module, plan: KernelPlan, *, fresh: bool) -> ImageCheck:
        return await self._signatures.check_unsigned(module, plan, fresh=fresh)

    async def current_fingerprint(self, module: Module, plan: KernelPlan) -> str:
        return await self._signatures.current_fingerprint(module, plan)

    async def start_sign(self, module: Module, plan: KernelPlan) -> str:
        return await self._signatures.start_sign(module, plan)

    async def patch_preflight_status(self, name: str, status: dict[str, Any]) -> Obj:
        return await self._api.patch_status(PREFLIGHTVALIDATIONS, name, {"status": status})

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
