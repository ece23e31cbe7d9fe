"""The actors' window on the world: `actors.ports.OperatorIO` implemented with our adapters.

Every method that talks to a server returns a coroutine the Bridge runs on the loop; reads of
cluster state come from informer caches (no request). Nothing here decides anything: the
decisions are in actors/ and the pure modules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ooto.api import Module
from ooto.builds.buildah import sign_build
from ooto.builds.model import BuildBackend, BuildObservation, BuildStartError
from ooto.kernels import KernelPlan
from ooto.kube.client import KubeApi
from ooto.kube.errors import Conflict, NotFound
from ooto.kube.events import EventRecorder
from ooto.kube.informer import Informer
from ooto.kube.resources import DAEMONSETS, MODULES, NODES, SECRETS
from ooto.kube.writer import Writer
from ooto.registry import ImageCheck, RegistryAuth, RegistryClient, auth_from_secret
from ooto.signing import (
    SIGNED_BY_LABEL,
    CertificateError,
    SignPlan,
    fingerprint,
    private_key_problem,
)
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
        signer_image: str = "",
        sign_secret_ttl: float = 60.0,
    ) -> None:
        self._api = api
        self._writer = Writer(api)
        self.daemonsets = daemonsets
        self.builds = builds
        self._recorder = recorder
        self._registry = registry
        self._backend = backend
        self._secrets: dict[tuple[str, str], tuple[float, RegistryAuth | None]] = {}
        self._signer_image = signer_image
        self._sign_secret_ttl = sign_secret_ttl
        self._sign_secrets: dict[tuple[str, str, str], tuple[float, bytes]] = {}

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

    # --- signing -------------------------------------------------------------------------------

    async def current_fingerprint(self, module: Module, plan: KernelPlan) -> str:
        """`sha256:<hex>` of the certificate the plan signs with (its Secret read at most once
        per `sign_secret_ttl` for all kernels). CertificateError when it is missing or garbled."""
        sign = _sign_of(plan)
        cert = await self._sign_secret(module, sign.cert_secret, sign.cert_key, "certSecret")
        return fingerprint(cert)

    async def check_signature(
        self, module: Module, plan: KernelPlan, *, fresh: bool = False
    ) -> SignatureCheck:
        """ "present" only when the signed image exists AND carries the current certificate's
        fingerprint in its signed-by label; "missing" (with why) otherwise."""
        wanted = await self.current_fingerprint(module, plan)
        auth = await self._registry_auth(module)
        insecure = _sign_of(plan).push_insecure
        check = await self._registry.image_exists(
            plan.image, insecure=insecure, auth=auth, fresh=fresh
        )
        if check.outcome != "present":
            return SignatureCheck(check.outcome, check.message, "", check.digest)
        try:
            labels = await self._registry.image_labels(plan.image, insecure=insecure, auth=auth)
        except (ValueError, OSError, TimeoutError) as error:
            message = f"cannot read the config of {plan.image}: {error}"
            return SignatureCheck("error", message, "", check.digest)
        signed_by = labels.get(SIGNED_BY_LABEL, "")
        if signed_by == wanted:
            message = f"{plan.image} is signed by {wanted}"
            return SignatureCheck("present", message, signed_by, check.digest)
        was = f"signed by {signed_by}" if signed_by else "not signed by ooto"
        message = f"{plan.image} is {was}, not by {wanted}"
        return SignatureCheck("missing", message, signed_by, check.digest)

    async def check_unsigned(self, module: Module, plan: KernelPlan, *, fresh: bool) -> ImageCheck:
        sign = _sign_of(plan)
        auth = await self._registry_auth(module)
        return await self._registry.image_exists(
            sign.unsigned_image, insecure=sign.pull_insecure, auth=auth, fresh=fresh
        )

    async def start_sign(self, module: Module, plan: KernelPlan) -> str:
        """Start (or adopt) the sign Job of plan.image, after checking both Secrets."""
        sign = _sign_of(plan)
        key = await self._sign_secret(module, sign.key_secret, sign.key_key, "keySecret", True)
        problem = private_key_problem(key)
        if problem is not None:
            where = f"Secret {sign.key_secret} key {sign.key_key!r} (sign.keySecret)"
            raise CertificateError(f"{where} {problem}")
        signed_by = await self.current_fingerprint(module, plan)
        if not self._signer_image:
            raise BuildStartError("no signer image: set --signer-image (OOTO_SIGNER_IMAGE)")
        if not hasattr(self._backend, "signs"):
            raise BuildStartError("signing needs the buildah build backend (--build-backend)")
        ref = await self._backend.start(module, sign_build(plan, self._signer_image, signed_by))
        return ref.name

    async def _sign_secret(
        self, module: Module, name: str, key: str, field: str, fresh: bool = False
    ) -> bytes:
        cache_key = (module.metadata.namespace, name, key)
        cached = self._sign_secrets.get(cache_key)
        if (
            cached is not None
            and not fresh
            and time.monotonic() - cached[0] < self._sign_secret_ttl
        ):
            return cached[1]
        try:
            secret = await self._api.get(SECRETS, name, module.metadata.namespace)
        except NotFound:
            raise CertificateError(f"Secret {name} (sign.{field}) not found") from None
        encoded = (secret.get("data") or {}).get(key)
        try:
            value = base64.b64decode(encoded or "", validate=True)
        except (binascii.Error, ValueError):
            value = b""
        if not value:
            raise CertificateError(f"Secret {name} (sign.{field}) has no data key {key!r}")
        if not fresh:
            self._sign_secrets[cache_key] = (time.monotonic(), value)
        return value


@dataclass(frozen=True)
class SignatureCheck:
    outcome: Literal["present", "missing", "unauthorized", "error"]
    message: str
    signed_by: str
    digest: str = ""


def _sign_of(plan: KernelPlan) -> SignPlan:
    if plan.sign is None:
        raise ValueError(f"kernel {plan.kernel}: its mapping does not sign")
    return plan.sign
