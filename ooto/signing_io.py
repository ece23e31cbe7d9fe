"""Signing's I/O for the kernel actors: the signing Secrets (by `get`, the certificate cached for
a recheck interval, the key never kept), the signed image's signed-by label, and the sign Job.

`ModuleSignatures` is what `KubeOperatorIO` delegates its signing methods to; the decisions
(what a label means, when to sign) are in `ooto.domain.signing` and `actors/kernel_signing.py`.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Literal

from ooto.builds.buildah import sign_build
from ooto.builds.model import BuildBackend, BuildStartError
from ooto.domain.api import Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.signing import (
    SIGNED_BY_LABEL,
    SIGNED_FOR_LABEL,
    CertificateError,
    SignPlan,
    fingerprint,
    private_key_problem,
)
from ooto.kube.client import KubeApi
from ooto.kube.errors import NotFound
from ooto.kube.resources import SECRETS
from ooto.module_images import ModuleImages
from ooto.registry import ImageCheck, RegistryClient


@dataclass(frozen=True)
class SignatureCheck:
    outcome: Literal["present", "missing", "unauthorized", "error"]
    message: str
    signed_by: str
    digest: str = ""
    signed_for: str = ""  # the signed-for label: the Module the image was signed for


class ModuleSignatures:
    def __init__(
        self,
        api: KubeApi,
        registry: RegistryClient,
        images: ModuleImages,
        backend: BuildBackend,
        signer_image: str,
        secret_ttl: float,
    ) -> None:
        self._api, self._registry, self._images = api, registry, images
        self._backend = backend
        self._signer_image = signer_image
        self._secret_ttl = secret_ttl
        self._certificates: dict[tuple[str, str, str], tuple[float, bytes]] = {}

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
        auth = await self._images.registry_auth(module)
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
        signed_by, signed_for = labels.get(SIGNED_BY_LABEL, ""), labels.get(SIGNED_FOR_LABEL, "")
        if signed_by == wanted:
            message = f"{plan.image} is signed by {wanted}"
            return SignatureCheck("present", message, signed_by, check.digest)
        was = f"signed by {signed_by}" if signed_by else "not signed by ooto"
        if signed_for:
            was += f" for Module {signed_for}"
        message = f"{plan.image} is {was}, not by {wanted}"
        return SignatureCheck("missing", message, signed_by, check.digest, signed_for)

    async def check_unsigned(self, module: Module, plan: KernelPlan, *, fresh: bool) -> ImageCheck:
        sign = _sign_of(plan)
        auth = await self._images.registry_auth(module)
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
        style = getattr(self._backend, "sign_secrets", None)
        if style is None:
            raise BuildStartError("this build backend cannot sign (--build-backend)")
        mounted = style == "mounted"
        signing = sign_build(plan, self._signer_image, signed_by, mounted, module.key)
        ref = await self._backend.start(module, signing)
        return ref.name

    async def _sign_secret(
        self, module: Module, name: str, key: str, field: str, fresh: bool = False
    ) -> bytes:
        cache_key = (module.metadata.namespace, name, key)
        cached = self._certificates.get(cache_key)
        if cached is not None and not fresh and time.monotonic() - cached[0] < self._secret_ttl:
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
            self._certificates[cache_key] = (time.monotonic(), value)
        return value


def _sign_of(plan: KernelPlan) -> SignPlan:
    if plan.sign is None:
        raise ValueError(f"kernel {plan.kernel}: its mapping does not sign")
    return plan.sign
