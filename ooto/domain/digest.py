"""The load digest: a hash of what decides what runs in the kernel on a node.

Pure: no I/O. Its inputs are the image, the module-loader container's command, args, env,
volumeMounts, securityContext and lifecycle as ooto renders them (so the scripts ooto writes for
`spec.modprobe` count), the modprobe spec itself, and the Module's additionalVolumes. Nothing
else: labels, annotations, ownerReferences, tolerations, priority class, the update strategy or
the device plugin change the DaemonSets but not what is loaded, so they do not change it.

Loader pods carry it (`LOAD_DIGEST_ANNOTATION`, set by render); the day-2 rollout replaces a
node's loader pod only when its digest differs from the desired one (docs/upgrades.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ooto.domain.api.module import Module
from ooto.domain.kernels import KernelPlan
from ooto.domain.render import (
    DEFAULT_OPTIONS,
    LOAD_DIGEST_ANNOTATION,
    RenderOptions,
    module_loader_container,
    with_host_mounts,
)

LOADER_FIELDS = ("command", "args", "env", "volumeMounts", "securityContext", "lifecycle")


def load_inputs(
    module: Module,
    plan: KernelPlan,
    options: RenderOptions = DEFAULT_OPTIONS,
    *,
    image: str | None = None,
) -> dict[str, Any]:
    """Exactly what the digest covers. `image`: the image by digest once the registry said it
    (default: the plan's reference)."""
    container, dirs = module_loader_container(module, plan, options)
    loader = with_host_mounts(container, dirs)
    modprobe = module.spec.modprobe
    return {
        "image": image or plan.image,
        "loader": {field: loader.get(field) for field in LOADER_FIELDS},
        "modprobe": modprobe.model_dump(mode="json", by_alias=True) if modprobe else None,
        "additionalVolumes": module.spec.additional_volumes,
    }


def load_digest(
    module: Module,
    plan: KernelPlan,
    options: RenderOptions = DEFAULT_OPTIONS,
    *,
    image: str | None = None,
) -> str:
    """`sha256:<hex>` of the canonical JSON of `load_inputs`: same inputs, same digest anywhere."""
    canonical = json.dumps(
        load_inputs(module, plan, options, image=image),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["LOADER_FIELDS", "LOAD_DIGEST_ANNOTATION", "load_digest", "load_inputs"]
