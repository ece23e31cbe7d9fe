"""Generic REST over kubernetes-asyncio's `ApiClient`, with plain JSON dicts for objects.

The `ApiClient` gives us configuration, authentication (token refresh included) and the TLS
session; we skip its generated models, which cost time and memory for no gain in an operator that
reads a few fields of each object. Every request goes through one semaphore (a bound on concurrent
calls) and is reported to a `RequestObserver` (metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, cast

import aiohttp
from kubernetes_asyncio.client import ApiClient

from ooto.kube.decode import (
    contains_too_deep,
    decode_json,
    decode_list_page,
    parse_watch_line,
    split_lines,
)
from ooto.kube.errors import TransientError, error_from_status
from ooto.kube.resources import Resource

JsonObj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]
Query = list[tuple[str, str]]
Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete"]
FIELD_MANAGER = "ooto"

_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class RequestObserver(Protocol):
    """Told about every API request once its answer (or failure, code 0) is known."""

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None: ...


class NullObserver:
    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        return None


class RawEvent(TypedDict):
    """One line of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK, and the object.

    `undecodable` (the reason) when the line could not be decoded: then `object` has what the
    shallow decode recovered (deep parts cut, see `ooto.kube.decode`), or is empty."""

    type: str
    object: JsonObj
    undecodable: NotRequired[str]


@dataclass(frozen=True, slots=True)
class ObjectList:
    """`undecodable`: objects too deeply nested to decode, with their deep parts cut (metadata
    intact); they are not in `items`."""

    items: list[JsonObj]
    resource_version: str
    undecodable: list[JsonObj] = field(default_factory=list)


class KubeApi:
    """JSON-dict REST calls to the API server. Objects in, objects out; errors as `ApiError`."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        concurrency: int = 32,
        observer: RequestObserver | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self._client = api_client
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = request_timeout
        self.observer: RequestObserver = observer or NullObserver()
        self.in_flight = 0  # requests holding a permit now (at most `concurrency`)

    async def close(self) -> None:
        await self._client.close()

    # -- reads ------------------------------------------------------------------------------

    async def get(
        self, res: Resource, name: str, namespace: str | None = None, *, subresource: str = ""
    ) -> JsonObj:
        path = res.path(namespace, name, subresource or None)
        return await self._json("GET", "get", _label(res, subresource), path)

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        first_page_only: bool = False,
    ) -> ObjectList:
        """All objects (paged with limit/continue) and the collection's resourceVersion; only
        the first `page_size` with `first_page_only`."""
        items: list[JsonObj] = []
        undecodable: list[JsonObj] = []
        query = [*_selectors(label_selector, field_selector), ("limit", str(page_size))]
        token = ""
        while True:
            page_query = [*query, ("continue", token)] if token else query
            data = await self._request("GET", "list", res.plural, res.path(namespace), page_query)
            page = decode_list_page(data)
            for item in page.get("items") or []:
                (undecodable if page.get("shallow") and contains_too_deep(item) else items).append(
                    item
                )
            meta = page.get("metadata") or {}
            token = "" if first_page_only else meta.get("continue") or ""
            if not token:
                return ObjectList(items, str(meta.get("resourceVersion") or ""), undecodable)

    # -- writes -----------------------------------------------------------------------------

    async def create(
        self, res: Resource, obj: JsonObj, namespace: str | None = None, *, dry_run: bool = False
    ) -> JsonObj:
        """POST; with `dry_run` the server validates and admits it but stores nothing."""
        ns = namespace or _namespace_of(res, obj)
        query: Query = [("dryRun", "All")] if dry_run else []
        return await self._json("POST", "create", res.plural, res.path(ns), query, body=obj)

    async def replace(self, res: Resource, obj: JsonObj, *, subresource: str = "") -> JsonObj:
        """PUT the whole object; its metadata.resourceVersion makes it an optimistic update."""
        meta = obj.get("metadata") or {}
        path = res.path(_namespace_of(res, obj), meta.get("name"), subresource or None)
        return await self._json("PUT", "update", _label(res, subresource), path, body=obj)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: JsonObj | Sequence[JsonObj],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
        force: bool = False,
    ) -> JsonObj:
        """PATCH with a merge, strategic-merge, JSON or server-side-apply patch."""
        query: Query = []
        if patch_type == "apply":
            query = [("fieldManager", FIELD_MANAGER)] + ([("force", "true")] if force else [])
        path = res.path(namespace, name, subresource or None)
        headers = {"Content-Type": _CONTENT_TYPES[patch_type]}
        return await self._json(
            "PATCH", "patch", _label(res, subresource), path, query, body=patch, headers=headers
        )

    async def create_subresource(
        self, res: Resource, name: str, subresource: str, obj: JsonObj, namespace: str
    ) -> JsonObj:
        """POST to a subresource, e.g. a Pod's `eviction`."""
        path = res.path(namespace, name, subresource)
        return await self._json("POST", "create", _label(res, subresource), path, body=obj)

    async def apply(self, res: Resource, obj: JsonObj, *, force: bool = True) -> JsonObj:
        """Server-side apply of a full intent with fieldManager "ooto"."""
        meta = obj.get("metadata") or {}
        ns = _namespace_of(res, obj)
        return await self.patch(res, meta["name"], obj, ns, patch_type="apply", force=force)

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> JsonObj:
        """DELETE, optionally only if uid/resourceVersion still match (preconditions)."""
        options: JsonObj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if any(preconditions.values()):
            options["preconditions"] = {k: v for k, v in preconditions.items() if v}
        path = res.path(namespace, name)
        return await self._json("DELETE", "delete", res.plural, path, body=options)

    # -- status subresource -----------------------------------------------------------------

    async def get_status(self, res: Resource, name: str, namespace: str | None = None) -> JsonObj:
        return await self.get(res, name, namespace, subresource="status")

    async def replace_status(self, res: Resource, obj: JsonObj) -> JsonObj:
        return await self.replace(res, obj, subresource="status")

    async def patch_status(
        self,
        res: Resource,
        name: str,
        patch: JsonObj | Sequence[JsonObj],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
    ) -> JsonObj:
        return await self.patch(
            res, name, patch, namespace, patch_type=patch_type, subresource="status"
        )

    # -- watch ------------------------------------------------------------------------------

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> AsyncGenerator[RawEvent, None]:
        """One watch stream: its events until the server ends it after `timeout_seconds`.

        Raises `Gone` when the resourceVersion is too old (as an HTTP 410 or an ERROR event),
        `TransientError` when the connection breaks or stays silent past the server timeout.
        """
        query = _selectors(label_selector, field_selector)
        query += [("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        # The server ends the stream by itself; silence beyond that means a dead connection.
        path = res.path(namespace)
        response = await self._open_stream("watch", res.plural, path, query, timeout_seconds + 30)
        try:
            async for event in _read_events(response):
                yield event
        except _TRANSPORT_ERRORS as exc:
            raise TransientError(f"watch {res.plural}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        verb: Verb,
        resource: str,
        path: str,
        query: Query | None = None,
        *,
        body: JsonObj | Sequence[JsonObj] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JsonObj:
        data = await self._request(method, verb, resource, path, query, body=body, headers=headers)
        return cast(JsonObj, decode_json(data)) if data else {}

    async def _request(
        self,
        method: str,
        verb: Verb,
        resource: str,
        path: str,
        query: Query | None = None,
        *,
        body: JsonObj | Sequence[JsonObj] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The body of a 2xx answer; an `ApiError` for any other."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with self._semaphore:
            started = time.perf_counter()
            code = 0
            self.in_flight += 1
            try:
                response = await self._send(
                    method, path, query, timeout, body=body, headers=headers
                )
                code = response.status
                data = await _read(response)
            except _TRANSPORT_ERRORS as exc:
                # No body in the message: it may be a Secret.
                raise TransientError(f"{verb} {resource}: {type(exc).__name__}: {exc}") from exc
            finally:
                self.observer.observe(verb, resource, code, time.perf_counter() - started)
                self.in_flight -= 1
        if code >= 300:
            raise error_from_status(code, data)
        return data

    async def _open_stream(
        self, verb: Verb, resource: str, path: str, query: Query, timeout: float
    ) -> aiohttp.ClientResponse:
        """Start a long-lived GET; the semaphore is held only until its headers arrive."""
        client_timeout = aiohttp.ClientTimeout(connect=self._timeout, sock_read=timeout)
        async with self._semaphore:
            started = time.perf_counter()
            code = 0
            self.in_flight += 1
            try:
                response = await self._send("GET", path, query, client_timeout)
                code = response.status
                if code >= 300:
                    data = await _read(response)
            except _TRANSPORT_ERRORS as exc:
                raise TransientError(f"{verb} {resource}: {type(exc).__name__}: {exc}") from exc
            finally:
                self.observer.observe(verb, resource, code, time.perf_counter() - started)
                self.in_flight -= 1
        if code >= 300:
            raise error_from_status(code, data)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        timeout: aiohttp.ClientTimeout,
        *,
        body: JsonObj | Sequence[JsonObj] | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        all_headers = {"Accept": "application/json", "Content-Type": "application/json"}
        all_headers.update(self._client.default_headers)
        all_headers.update(headers or {})
        await self._authorize(all_headers)
        response = await self._client.rest_client.request(
            method,
            f"{self._client.configuration.host}{path}",
            query_params=query or None,  # type: ignore[arg-type]  # urlencode takes pairs
            headers=all_headers,
            body=body,
            _preload_content=False,
            _request_timeout=timeout,
        )
        return cast(aiohttp.ClientResponse, response)

    async def _authorize(self, headers: dict[str, str]) -> None:
        """Add the bearer token (refreshed by the loaders' hook when it expires)."""
        settings = await self._client.configuration.auth_settings()
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]


async def _read_events(response: aiohttp.ClientResponse) -> AsyncIterator[RawEvent]:
    # Our own line splitter: aiohttp's stops the stream at a line over 128 KiB.
    async for line in split_lines(response.content.iter_any()):
        if line is not None and not line.strip():
            continue
        event = cast(RawEvent, parse_watch_line(line))
        if event.get("type") == "ERROR" and "undecodable" not in event:
            status = event.get("object") or {}
            raise error_from_status(int(status.get("code") or 500), status)
        yield event


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    finally:
        response.release()


def _selectors(label_selector: str | None, field_selector: str | None) -> Query:
    query: Query = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def _label(res: Resource, subresource: str) -> str:
    """`pods/log`, never `pods/log?tailLines=20`: a query in a metric label is a new series."""
    subresource = subresource.partition("?")[0]
    return f"{res.plural}/{subresource}" if subresource else res.plural


def _namespace_of(res: Resource, obj: JsonObj) -> str | None:
    if not res.namespaced:
        return None
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not namespace:
        raise ValueError(f"{res.kind} object needs metadata.namespace")
    return str(namespace)
