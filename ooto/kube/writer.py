"""Writes with the operator's rules: a 409 on create means adopt, a 404 on delete means done,
a status update retries on conflict with fresh state."""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Callable, Sequence
from typing import Literal

from ooto.kube.client import JsonObj, KubeApi, PatchType
from ooto.kube.errors import AlreadyExists, Conflict, NotFound
from ooto.kube.resources import Resource

log = logging.getLogger(__name__)

StatusMutation = Callable[[JsonObj], JsonObj | None]
"""Gets a fresh copy of the object; changes it in place (returning None) or returns a new one."""


class Writer:
    """The write side of `KubeApi`, with idempotent create and conflict-retried status updates."""

    def __init__(self, api: KubeApi, *, conflict_retries: int = 5) -> None:
        self._api = api
        self._conflict_retries = conflict_retries

    async def create_or_adopt(self, res: Resource, obj: JsonObj) -> tuple[JsonObj, bool]:
        """Create `obj`; if its (deterministic) name exists already, return the existing one.

        Returns (object, created). The adopted object is returned as found: comparing it with
        the intent (spec-hash) is the caller's decision.
        """
        meta = obj.get("metadata") or {}
        for _ in range(3):
            try:
                return await self._api.create(res, obj), True
            except AlreadyExists:
                pass
            try:
                return await self._api.get(res, meta["name"], meta.get("namespace")), False
            except NotFound:
                continue  # deleted between our create and our get: create again
        raise Conflict(409, "Conflict", f"{res.kind} {meta.get('name')} keeps appearing/vanishing")

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: JsonObj | Sequence[JsonObj],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
    ) -> JsonObj:
        return await self._api.patch(res, name, patch, namespace, patch_type=patch_type)

    async def apply(self, res: Resource, obj: JsonObj, *, force: bool = True) -> JsonObj:
        """Server-side apply with fieldManager "ooto"."""
        return await self._api.apply(res, obj, force=force)

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete; True if this call deleted it, False if it was already gone."""
        try:
            await self._api.delete(
                res, name, namespace, propagation_policy=propagation_policy, uid=uid
            )
        except NotFound:
            return False
        return True

    async def update_status(
        self, res: Resource, namespace: str | None, name: str, mutate: StatusMutation
    ) -> JsonObj:
        """GET fresh, apply `mutate`, PUT the status subresource; on 409 start over, bounded.

        When `mutate` changes nothing, nothing is written and the fresh object is returned.
        """
        for attempt in range(self._conflict_retries + 1):
            fresh = await self._api.get(res, name, namespace)
            candidate = copy.deepcopy(fresh)
            changed = mutate(candidate)
            desired = candidate if changed is None else changed
            if desired.get("status") == fresh.get("status"):
                return fresh
            desired.setdefault("metadata", {})["resourceVersion"] = _resource_version(fresh)
            try:
                return await self._api.replace_status(res, desired)
            except Conflict:
                if attempt == self._conflict_retries:
                    raise
                log.debug("status of %s %s/%s: conflict, retrying", res.kind, namespace, name)
                await asyncio.sleep(random.uniform(0, 0.05 * (attempt + 1)))
        raise AssertionError("unreachable")


def _resource_version(obj: JsonObj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
