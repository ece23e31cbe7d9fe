"""Does a Module's image for a kernel exist? The registry client plus the Module's own credentials.

One implementation for everyone who asks (the operator's kernel actors, PreflightValidation
actors and `ooto preflight`), so they all read the same Secret (`spec.imageRepoSecret`, in the
Module's namespace, by `get` only) the same way and get the same answers.
"""

from __future__ import annotations

import time

from ooto.domain.api import Module
from ooto.domain.kernels import KernelPlan
from ooto.kube.client import KubeApi
from ooto.kube.errors import NotFound
from ooto.kube.resources import SECRETS
from ooto.registry import ImageCheck, ImageChecker, RegistryAuth, auth_from_secret

SECRET_TTL_SECONDS = 30.0


class ModuleImages:
    """`check(module, plan)`: the registry's answer for plan.image with the Module's Secret.

    Secrets are cached for SECRET_TTL_SECONDS, so 500 kernels of one Module read it once. A
    missing or malformed Secret raises (LookupError, RegistryAuthError) with a message safe for a
    condition: it names the Secret, never its content.
    """

    def __init__(self, api: KubeApi, registry: ImageChecker) -> None:
        self._api = api
        self._registry = registry
        self._secrets: dict[tuple[str, str], tuple[float, RegistryAuth | None]] = {}

    async def check(self, module: Module, plan: KernelPlan, *, fresh: bool = False) -> ImageCheck:
        auth = await self.registry_auth(module)
        insecure = plan.build.push_insecure if plan.build is not None else False
        return await self._registry.image_exists(
            plan.image, insecure=insecure, auth=auth, fresh=fresh
        )

    async def registry_auth(self, module: Module) -> RegistryAuth | None:
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
