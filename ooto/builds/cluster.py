"""Two reads that `KubeApi` (JSON objects only) does not cover: a pod's log (plain text) and API
discovery (which resources a group/version serves). Both go through kubernetes-asyncio's
generated API on the same `ApiClient`, so they share its configuration, auth and TLS session.
"""

from __future__ import annotations

from typing import Protocol

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException


class ClusterReadError(Exception):
    """A log or discovery read failed; the message is safe to show."""


class ClusterReads(Protocol):
    async def pod_log(self, namespace: str, pod: str, *, tail_lines: int) -> str: ...

    async def served_resources(self, group: str, version: str) -> frozenset[str] | None:
        """Resource names (with subresources such as `buildconfigs/instantiate`); None if the
        group/version is not served at all."""
        ...


class ApiClientReads:
    """`ClusterReads` over a kubernetes-asyncio `ApiClient` (from `ooto.kube.make_api_client`)."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client

    async def pod_log(self, namespace: str, pod: str, *, tail_lines: int) -> str:
        try:
            text = await CoreV1Api(self._client).read_namespaced_pod_log(
                pod, namespace, tail_lines=tail_lines
            )
        except ApiException as error:
            raise ClusterReadError(f"log of pod {namespace}/{pod}: {_describe(error)}") from None
        return str(text or "")

    async def served_resources(self, group: str, version: str) -> frozenset[str] | None:
        try:
            listing = await CustomObjectsApi(self._client).get_api_resources(group, version)
        except ApiException as error:
            if error.status == 404:
                return None
            raise ClusterReadError(f"discovery of {group}/{version}: {_describe(error)}") from None
        return frozenset(str(resource.name) for resource in listing.resources or [])


def _describe(error: ApiException) -> str:
    # The body is a Status from the API server (or the kubelet's complaint); keep it short.
    body = str(error.body or "").strip().replace("\n", " ")
    return f"HTTP {error.status} {error.reason}" + (f": {body[:300]}" if body else "")
