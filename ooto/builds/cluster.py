"""Two reads beyond `KubeApi`'s JSON objects: a pod's log (plain text) and API discovery (which
resources a group/version serves).

`ApiClientReads` uses kubernetes-asyncio's generated API on the operator's `ApiClient` (same
configuration, auth and TLS session). `KubeApiReads` needs only a `KubeApi`: discovery is a JSON
GET of `/apis/<group>/<version>/`, and the log comes back through KubeApi's JSON decoding (the
text is recovered from the decode error) until KubeApi grows a plain-text read.
"""

from __future__ import annotations

import json
from typing import Protocol, cast

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from ooto.kube.client import KubeApi
from ooto.kube.errors import ApiError, KubeError, NotFound
from ooto.kube.resources import PODS, Resource


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
            # Raw JSON: the generated V1APIResource model rejects entries without singularName,
            # which older and aggregated API servers omit.
            raw = await CustomObjectsApi(self._client).get_api_resources(
                group, version, _preload_content=False
            )
            response = cast(aiohttp.ClientResponse, raw)
            body = await response.read()
        except ApiException as error:
            if error.status == 404:
                return None
            raise ClusterReadError(f"discovery of {group}/{version}: {_describe(error)}") from None
        if response.status == 404:
            return None
        if response.status >= 300:
            raise ClusterReadError(f"discovery of {group}/{version}: HTTP {response.status}")
        try:
            listing = json.loads(body)
        except ValueError:
            raise ClusterReadError(f"discovery of {group}/{version}: not JSON") from None
        return frozenset(str(item.get("name")) for item in listing.get("resources") or [])


class KubeApiReads:
    """`ClusterReads` over `KubeApi` alone."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    async def pod_log(self, namespace: str, pod: str, *, tail_lines: int) -> str:
        try:
            # The subresource string goes into the path verbatim, query included.
            logged = await self._api.get(
                PODS, pod, namespace, subresource=f"log?tailLines={tail_lines}"
            )
        except json.JSONDecodeError as plain_text:
            return plain_text.doc
        except ApiError as error:
            raise ClusterReadError(f"log of pod {namespace}/{pod}: {error}") from None
        except KubeError as error:
            raise ClusterReadError(
                f"log of pod {namespace}/{pod}: {type(error).__name__}"
            ) from None
        return json.dumps(logged)  # a log that happens to be one JSON document

    async def served_resources(self, group: str, version: str) -> frozenset[str] | None:
        discovery = Resource(group, version, "", "APIResourceList", namespaced=False)
        try:
            listing = await self._api.get(discovery, "")
        except NotFound:
            return None
        except KubeError as error:
            raise ClusterReadError(f"discovery of {group}/{version}: {error}") from None
        return frozenset(str(item.get("name")) for item in listing.get("resources") or [])


def _describe(error: ApiException) -> str:
    """`HTTP <code> <reason>: <the Status message>` (the body is a Status, or plain text)."""
    body = str(error.body or "").strip()
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("message"):
        body = str(decoded["message"])
    detail = body.replace("\n", " ")[:300]
    return f"HTTP {error.status} {error.reason}" + (f": {detail}" if detail else "")
