"""Readable building blocks for the operator scenarios: Modules, and questions to the cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ooto.testing.rest import KubeRest, RestError

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


GROUP_PATH = "/apis/ooto.sigs.k8s.io/v1alpha1"


def module_manifest(
    name: str,
    mappings: list[dict[str, Any]],
    selector: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": name},
        "spec": {
            "selector": selector if selector is not None else {"ooto-test/gpu": "true"},
            "moduleLoader": {
                "name": "ignored",
                "image": "ignored",
                "lifecycle": {"preStop": {"exec": {"command": ["modprobe", "-r", "mod"]}}},
            },
            "kernelMappings": mappings,
            **spec,
        },
    }


def literal(kernel: str, image: str) -> dict[str, Any]:
    return {"literal": kernel, "containerImage": image}


async def apply_module(rest: KubeRest, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    path = f"{GROUP_PATH}/namespaces/{namespace}/modules"
    return await rest.post(path, manifest)


async def patch_module(
    rest: KubeRest, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    return await rest.patch(f"{GROUP_PATH}/namespaces/{namespace}/modules/{name}", patch)


async def get_module(rest: KubeRest, namespace: str, name: str) -> dict[str, Any]:
    return await rest.get(f"{GROUP_PATH}/namespaces/{namespace}/modules/{name}")


async def delete_module(rest: KubeRest, namespace: str, name: str) -> None:
    await rest.delete(f"{GROUP_PATH}/namespaces/{namespace}/modules/{name}")


async def daemonsets(
    rest: KubeRest, namespace: str, module: str | None = None
) -> list[dict[str, Any]]:
    params = {"labelSelector": f"ooto.sigs.k8s.io/module={module}"} if module else None
    found = await rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets", params)
    return list(found.get("items", []))


async def pods_on(rest: KubeRest, namespace: str) -> dict[str, str]:
    """node name -> pod image, for the running pods of the namespace."""
    found = await rest.get(f"/api/v1/namespaces/{namespace}/pods")
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"]
        for p in found.get("items", [])
        if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
    }


async def events(rest: KubeRest, namespace: str, reason: str) -> list[dict[str, Any]]:
    found = await rest.get(f"/api/v1/namespaces/{namespace}/events")
    return [e for e in found.get("items", []) if e.get("reason") == reason]


def condition(module: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (module.get("status") or {}).get("conditions", []):
        if item["type"] == type_:
            return dict(item)
    return {}


def kernel_status(module: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["kernel"]: k for k in (module.get("status") or {}).get("kernels", [])}


def node_selector_kernel(ds: dict[str, Any]) -> str:
    return str(
        ds["spec"]["template"]["spec"]["nodeSelector"]["ooto.sigs.k8s.io/kernel-version.full"]
    )


async def exists(rest: KubeRest, path: str) -> bool:
    try:
        await rest.get(path)
    except RestError as error:
        if error.status == 404:
            return False
        raise
    return True


async def ready_module(rest: KubeRest, namespace: str, name: str) -> dict[str, Any] | None:
    """The Module once it is Ready for its current generation (a stale Ready proves nothing)."""
    module = await get_module(rest, namespace, name)
    ready = condition(module, "Ready")
    current = (module.get("status") or {}).get("observedGeneration") == module["metadata"].get(
        "generation"
    )
    return module if ready.get("status") == "True" and current else None
