"""`RegistryClient`: the HTTP side (see the package docstring for the behaviour)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp

from ooto.registry.credentials import RegistryAuth, RegistryCredential
from ooto.registry.reference import ImageReference, parse_image_reference

log = logging.getLogger("ooto.registry")

Outcome = Literal["present", "missing", "unauthorized", "error"]
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (lowercase) and its parameters (lowercase keys)."""

    scheme: str
    params: Mapping[str, str]


_CHALLENGE_TOKEN = re.compile(
    r'\s*(?:(?P<key>[!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"'
    r"|(?P<bare>[^\s,]*))|(?P<scheme>[!#$%&'*+.^_`|~0-9A-Za-z-]+))\s*,?"
)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse RFC 7235 challenges, several per header or several headers."""
    challenges: list[Challenge] = []
    for header in headers:
        scheme: str | None = None
        params: dict[str, str] = {}
        for match in _CHALLENGE_TOKEN.finditer(header):
            if match.group("scheme"):
                if scheme is not None:
                    challenges.append(Challenge(scheme, params))
                scheme, params = match.group("scheme").lower(), {}
            elif match.group("key") and scheme is not None:
                quoted = match.group("quoted")
                value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match["bare"]
                params[match.group("key").lower()] = value
        if scheme is not None:
            challenges.append(Challenge(scheme, params))
    return challenges


@dataclass(frozen=True)
class ImageCheck:
    outcome: Outcome
    message: str
    digest: str = ""
    """The manifest digest a "present" answer carried (Docker-Content-Digest), else ""."""


class ImageChecker(Protocol):
    async def image_exists(
        self, image: str, *, insecure: bool, auth: RegistryAuth | None, fresh: bool = False
    ) -> ImageCheck: ...


class _RefusedError(Exception):
    """Internal: the registry refused us; the message is safe to show."""


_CACHE_PRUNE_SIZE = 1024


@dataclass
class _Flight:
    task: asyncio.Task[ImageCheck]
    fresh: bool


class RegistryClient:
    """Shared, caching `ImageChecker`. Create one in the composition root; `await close()` it."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        cache_ttl: float = 30.0,
        missing_ttl: float = 0.0,
        error_ttl: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        # "missing" is what our own builds change: by default only concurrent askers share it.
        self._ttls = {"missing": missing_ttl, "error": error_ttl}
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[tuple[str, bool, str], tuple[float, ImageCheck]] = {}
        self._flights: dict[tuple[str, bool, str], _Flight] = {}
        self._tokens: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._plain_http: set[str] = set()
        self.lookups = 0
        """Lookups actually sent (cache and single-flight misses), for tests and metrics."""

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for flight in list(self._flights.values()):
            flight.task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def image_exists(
        self, image: str, *, insecure: bool, auth: RegistryAuth | None, fresh: bool = False
    ) -> ImageCheck:
        try:
            ref = parse_image_reference(image)
        except ValueError as error:
            return ImageCheck("error", str(error))
        credential = auth.for_image(ref) if auth is not None else None
        key = (str(ref), insecure, credential.fingerprint if credential else "")
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and not fresh and cached[0] > now:
            return cached[1]
        flight = self._flights.get(key)
        if flight is None or (fresh and not flight.fresh):
            task = asyncio.create_task(
                self._lookup(key, ref, insecure, credential), name=f"registry-lookup {ref}"
            )
            flight = self._flights[key] = _Flight(task, fresh)
        return await asyncio.shield(flight.task)

    async def image_labels(
        self, image: str, *, insecure: bool, auth: RegistryAuth | None
    ) -> Mapping[str, str]:
        """The labels in the image's config blob (linux/amd64 of an index, else its first
        image). Call after `image_exists` answered "present": it reuses that check's scheme and
        token. Raises ValueError (safe message) when the registry's answers cannot be read."""
        ref = parse_image_reference(image)
        credential = auth.for_image(ref) if auth is not None else None
        scheme = "http" if insecure and ref.api_host in self._plain_http else "https"
        base = f"{scheme}://{ref.api_host}/v2/{ref.repository}"
        scope = f"repository:{ref.repository}:pull"
        headers = {"Accept": MANIFEST_ACCEPT}
        token = self._cached_token(
            (ref.api_host, scope, credential.fingerprint if credential else "")
        )
        if token or (credential and credential.username):
            headers["Authorization"] = token or _basic(credential)  # type: ignore[arg-type]
        ssl_option: ssl.SSLContext | bool = False if insecure else self._ssl
        manifest = await self._get_json(
            f"{base}/manifests/{ref.manifest_reference}", headers, ssl_option
        )
        if "manifests" in manifest:  # an index: the amd64 image, as our nodes pull it
            entries = manifest["manifests"] or [{}]
            chosen = next(
                (m for m in entries if (m.get("platform") or {}).get("architecture") == "amd64"),
                entries[0],
            )
            manifest = await self._get_json(
                f"{base}/manifests/{chosen.get('digest')}", headers, ssl_option
            )
        digest = (manifest.get("config") or {}).get("digest")
        config = await self._get_json(f"{base}/blobs/{digest}", headers, ssl_option)
        labels = (config.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    async def _get_json(
        self, url: str, headers: Mapping[str, str], ssl_option: ssl.SSLContext | bool
    ) -> dict[str, Any]:
        session = self._session_for_use()
        async with asyncio.timeout(self._timeout):
            async with session.get(url, headers=headers, ssl=ssl_option) as response:
                if response.status != 200:
                    raise ValueError(f"{urlsplit(url).netloc} answered HTTP {response.status}")
                body = await response.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError(f"{urlsplit(url).netloc} answered something that is not JSON")
        return body

    async def _lookup(
        self,
        key: tuple[str, bool, str],
        ref: ImageReference,
        insecure: bool,
        credential: RegistryCredential | None,
    ) -> ImageCheck:
        self.lookups += 1
        try:
            check = await self._check_safely(ref, insecure, credential)
        finally:
            flight = self._flights.get(key)
            current = flight is not None and flight.task is asyncio.current_task()
            if current:
                del self._flights[key]
        if current:  # a fresh lookup that replaced this one owns the cache entry
            self._remember(key, check)
        log.info("registry lookup: image=%s outcome=%s", ref, check.outcome)
        return check

    def _remember(self, key: tuple[str, bool, str], check: ImageCheck) -> None:
        now = self._clock()
        if len(self._cache) >= _CACHE_PRUNE_SIZE:  # drop what expired, so the cache stays small
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        ttl = self._ttls.get(check.outcome, self._cache_ttl)
        if ttl > 0:
            self._cache[key] = (now + ttl, check)

    async def _check_safely(
        self, ref: ImageReference, insecure: bool, credential: RegistryCredential | None
    ) -> ImageCheck:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._check(ref, insecure, credential)
        except TimeoutError:
            message = f"registry {ref.api_host} did not answer within {self._timeout:g}s"
            return ImageCheck("error", f"{ref}: {message}")
        except _RefusedError as refused:
            return ImageCheck("unauthorized", f"{ref}: {refused}")
        except aiohttp.ClientError as error:
            return ImageCheck("error", f"{ref}: {_describe_client_error(ref.api_host, error)}")
        except (ValueError, OSError) as error:  # e.g. a token service answering non-JSON
            return ImageCheck("error", f"{ref}: {ref.api_host}: {type(error).__name__}")

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=True
            )
        return self._session

    async def _check(
        self, ref: ImageReference, insecure: bool, credential: RegistryCredential | None
    ) -> ImageCheck:
        if not insecure:
            return await self._check_at("https", ref, insecure, credential)
        if ref.api_host in self._plain_http:
            return await self._check_at("http", ref, insecure, credential)
        try:
            return await self._check_at("https", ref, insecure, credential)
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ):
            # As `--insecure-registry`: no TLS spoken there (or nothing on 443), so try plain HTTP.
            check = await self._check_at("http", ref, insecure, credential)
            self._plain_http.add(ref.api_host)
            return check

    async def _check_at(
        self,
        scheme: str,
        ref: ImageReference,
        insecure: bool,
        credential: RegistryCredential | None,
    ) -> ImageCheck:
        url = f"{scheme}://{ref.api_host}/v2/{ref.repository}/manifests/{ref.manifest_reference}"
        ssl_option: ssl.SSLContext | bool = False if insecure else self._ssl
        scope = f"repository:{ref.repository}:pull"
        token_key = (ref.api_host, scope, credential.fingerprint if credential else "")
        authorization = self._cached_token(token_key)
        status, headers = await self._manifest_request(url, ssl_option, authorization)
        if status == 401:
            challenges = parse_challenges(headers.getall("WWW-Authenticate", []))
            authorization = await self._answer(challenges, scope, token_key, ssl_option, credential)
            if authorization is None:
                raise _RefusedError(_refusal(ref, credential, "asks for credentials"))
            status, headers = await self._manifest_request(url, ssl_option, authorization)
            if status == 401:
                self._tokens.pop(token_key, None)
                raise _RefusedError(_refusal(ref, credential, "rejected the credentials"))
        return _interpret(ref, status, headers)

    async def _manifest_request(
        self, url: str, ssl_option: ssl.SSLContext | bool, authorization: str | None
    ) -> tuple[int, Any]:
        headers = {"Accept": MANIFEST_ACCEPT}
        if authorization:
            headers["Authorization"] = authorization
        session = self._session_for_use()
        async with session.head(url, headers=headers, ssl=ssl_option) as response:
            if response.status not in (405, 501):
                return response.status, response.headers
        # Some registries and proxies only serve GET on manifests.
        async with session.get(url, headers=headers, ssl=ssl_option) as response:
            response.release()
            return response.status, response.headers

    def _cached_token(self, token_key: tuple[str, str, str]) -> str | None:
        cached = self._tokens.get(token_key)
        if cached is None or cached[0] <= self._clock():
            return None
        return cached[1]

    async def _answer(
        self,
        challenges: list[Challenge],
        scope: str,
        token_key: tuple[str, str, str],
        ssl_option: ssl.SSLContext | bool,
        credential: RegistryCredential | None,
    ) -> str | None:
        """The Authorization header that answers a challenge, or None when we cannot."""
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                token, lifetime = await self._fetch_token(challenge, scope, ssl_option, credential)
                authorization = f"Bearer {token}"
                self._tokens[token_key] = (self._clock() + max(lifetime - 5, 1), authorization)
                return authorization
            if challenge.scheme == "basic" and credential and credential.username:
                return _basic(credential)
        return None

    async def _fetch_token(
        self,
        challenge: Challenge,
        scope: str,
        ssl_option: ssl.SSLContext | bool,
        credential: RegistryCredential | None,
    ) -> tuple[str, float]:
        """(token, lifetime in seconds) from the challenge's realm, for a pull `scope`."""
        realm = challenge.params["realm"]
        query = {"scope": scope}
        if service := challenge.params.get("service"):
            query["service"] = service
        session = self._session_for_use()
        if credential and credential.identity_token:
            # Docker's OAuth2 refresh-token grant, for `identitytoken` entries.
            form = {**query, "grant_type": "refresh_token", "client_id": "ooto",
                    "refresh_token": credential.identity_token}  # fmt: skip
            request = session.post(realm, data=form, ssl=ssl_option)
        else:
            headers = (
                {"Authorization": _basic(credential)} if credential and credential.username else {}
            )
            request = session.get(realm, params=query, headers=headers, ssl=ssl_option)
        async with request as response:
            return await _read_token(response, urlsplit(realm).netloc, credential)


async def _read_token(
    response: aiohttp.ClientResponse, service: str, credential: RegistryCredential | None
) -> tuple[str, float]:
    if response.status in (401, 403):
        who = f"the credentials of user {credential.username!r}" if credential else ""
        raise _RefusedError(
            f"token service {service} refused {who or 'anonymous access'} (HTTP {response.status})"
        )
    if response.status != 200:
        message = f"token service {service} answered HTTP {response.status}"
        raise aiohttp.ClientResponseError(
            response.request_info, (), status=response.status, message=message
        )
    body = await response.json(content_type=None)
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not token:
        raise _RefusedError(f"token service {service} returned no token")
    return str(token), float(body.get("expires_in") or 60)


def _basic(credential: RegistryCredential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return f"Basic {base64.b64encode(raw).decode()}"


def _refusal(ref: ImageReference, credential: RegistryCredential | None, what: str) -> str:
    if credential is None:
        return (
            f"registry {ref.api_host} {what} and the Module's registry secret has none for "
            f"{ref.registry} (or there is no secret)"
        )
    return (
        f"registry {ref.api_host} {what} for user {credential.username!r} "
        f"(repository {ref.repository})"
    )


def _interpret(ref: ImageReference, status: int, headers: Any) -> ImageCheck:
    if status == 200:
        digest = headers.get("Docker-Content-Digest", "")
        message = f"{ref} is present{f' ({digest})' if digest else ''}"
        return ImageCheck("present", message, digest if digest.startswith("sha256:") else "")
    if status == 404:
        return ImageCheck("missing", f"{ref} not found in registry {ref.api_host}")
    if status == 403:
        raise _RefusedError(f"registry {ref.api_host} forbids pulling {ref.repository} (HTTP 403)")
    if status == 429:
        return ImageCheck("error", f"{ref}: registry {ref.api_host} is rate limiting (HTTP 429)")
    if status >= 500:
        return ImageCheck("error", f"{ref}: registry {ref.api_host} failed with HTTP {status}")
    return ImageCheck("error", f"{ref}: registry {ref.api_host} answered HTTP {status}")


def _describe_client_error(host: str, error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {host} failed ({error.os_error})"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS certificate of {host} not trusted ({error.certificate_error}); "
            "set insecure for this registry if that is expected"
        )
    if isinstance(error, aiohttp.ClientSSLError):
        return (
            f"TLS handshake with {host} failed ({error.os_error}); if it serves plain HTTP, "
            "set insecure for this registry"
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {host} ({error.os_error})"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"{host}: {error.message}"
    return f"talking to {host} failed ({type(error).__name__}: {error})"
