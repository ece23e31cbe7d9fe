"""A thin JSON REST client for the harness itself (simulated kubelet, fixtures, demo).

It is deliberately separate from `ooto.kube`: the harness must be able to check the operator's
adapters against the API server without depending on them.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class RestError(Exception):
    """An HTTP error status from the API server, with its Status body."""

    def __init__(self, status: int, method: str, path: str, body: Any) -> None:
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"{method} {path}: HTTP {status} {message}")
        self.status = status
        self.body = body


class WatchGoneError(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class KubeRest:
    """JSON over HTTPS with a bearer token; `concurrency` bounds requests in flight."""

    def __init__(self, server: str, token: str, ca_file: Path, concurrency: int = 16) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeRest:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            self._limit,
            self._http().request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers=headers,
                timeout=timeout,
            ) as response,
        ):
            text = await response.text()
            parsed: Any = json.loads(text) if text.startswith("{") else text
            if response.status >= 400:
                raise RestError(response.status, method, path, parsed)
            return parsed

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        result: JSON = await self.request("GET", path, params=params)
        return result

    async def post(self, path: str, body: JSON) -> JSON:
        result: JSON = await self.request("POST", path, body)
        return result

    async def patch(self, path: str, body: JSON, content_type: str = MERGE_PATCH) -> JSON:
        result: JSON = await self.request("PATCH", path, body, content_type=content_type)
        return result

    async def delete(self, path: str, body: JSON | None = None) -> Any:
        return await self.request("DELETE", path, body)

    async def send_text(self, method: str, path: str, text: str, content_type: str) -> int:
        """Send `text` as the body; the HTTP status, the reply unread as JSON (for objects nested
        deeper than Python's json module goes, which the API server stores)."""
        headers = {"Content-Type": content_type}
        async with (
            self._limit,
            self._http().request(method, self.server + path, data=text, headers=headers) as reply,
        ):
            await reply.read()
            return reply.status

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[JSON]:
        """Events of one watch request, until the server ends it; raises WatchGoneError on 410."""
        query = {**params, "watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "290"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=320)
        async with self._http().get(self.server + path, params=query, timeout=timeout) as response:
            if response.status >= 400:
                raise RestError(response.status, "WATCH", path, await response.text())
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event: JSON = json.loads(line)
                        _raise_if_gone(event)
                        yield event


def _raise_if_gone(event: JSON) -> None:
    if event.get("type") == "ERROR":
        status = event.get("object", {})
        if status.get("code") == 410:
            raise WatchGoneError(status.get("message", "gone"))
        raise RestError(int(status.get("code", 500)), "WATCH", "", status)
