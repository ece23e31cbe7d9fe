"""Does an image exist? An OCI distribution API client on aiohttp.

The one question ooto asks a registry is whether `image` (tag or digest) has a manifest. Public API:

```python
ref = parse_image_reference("nginx:1.25")        # ImageReference(registry="docker.io", ...)
auth = auth_from_secret(secret_dict)              # or auth_from_dockerconfigjson(raw_bytes)
async with RegistryClient() as registry:          # one instance, shared by every caller
    check = await registry.image_exists(image, insecure=False, auth=auth)
    check.outcome   # "present" | "missing" | "unauthorized" | "error"
    check.message   # for a condition or an Event; never contains a credential
    await registry.image_exists(image, insecure=False, auth=auth, fresh=True)  # after a build
```

- A manifest is asked for with HEAD (GET when the registry does not allow HEAD) and the Accept
  headers of Docker v2 manifests and manifest lists and OCI manifests and indexes.
- Auth: HTTP basic, or the bearer-token challenge (`WWW-Authenticate: Bearer realm=...,service=...`)
  with pull scope. Credentials come from a `kubernetes.io/dockerconfigjson` Secret and are picked
  per registry host the way container runtimes do (`auths` keys with or without `https://`,
  paths, `*.` wildcards, docker.io aliases). They never appear in a message, log line, repr or
  exception raised here.
- `insecure=True` tries HTTPS without certificate verification, then plain HTTP, like Docker's
  `--insecure-registry`.
- "missing" means the registry answered 404 for the manifest. DNS, TLS, connection, timeout, 429
  and 5xx problems are "error", rejected or missing credentials are "unauthorized".
- Answers are cached for a short TTL and concurrent identical lookups share one request, so 500
  kernels that map to one image ask once. `fresh=True` ignores the cache (use it after a build).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

Outcome = Literal["present", "missing", "unauthorized", "error"]
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_DOMAIN_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)


# --- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. `registry` is canonical (`docker.io` for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        """Where the distribution API lives (Docker Hub's is not at docker.io)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_reference(self) -> str:
        """The digest when there is one (it wins over the tag, as in container runtimes)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"


def parse_image_reference(image: str) -> ImageReference:
    """Parse `[registry[:port]/]path[:tag][@digest]` with Docker's defaulting rules.

    The first path component is a registry when it has a `.` or `:` or is `localhost`; otherwise
    the image is on Docker Hub, and a single-component name gets `library/`. Raises ValueError.
    """
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError(f"invalid digest in image reference {image!r}")
    registry, path = _split_registry(rest)
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise ValueError(f"invalid tag in image reference {image!r}")
    if not _REPOSITORY_RE.fullmatch(path):
        raise ValueError(f"invalid repository in image reference {image!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.fullmatch(first):
            raise ValueError(f"invalid registry host in image reference {name!r}")
        host = first.lower()
        return (DOCKER_HUB if host in DOCKER_HUB_ALIASES else host), rest
    return DOCKER_HUB, name


# --- credentials ------------------------------------------------------------------------------


class RegistryAuthError(ValueError):
    """A dockerconfigjson that cannot be read. The message never quotes the document."""


@dataclass(frozen=True)
class RegistryCredential:
    """Login for one registry. Only `username` is ever shown."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def fingerprint(self) -> str:
        """Distinguishes credentials in cache keys without keeping them readable there."""
        raw = "\0".join((self.username, self.password, self.identity_token)).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, repr=False)
class RegistryAuth:
    """Credentials from a dockerconfigjson, keyed by `auths` entry (normalized)."""

    entries: tuple[tuple[str, RegistryCredential], ...] = ()

    def __repr__(self) -> str:
        return f"RegistryAuth(hosts={[key for key, _ in self.entries]!r}, credentials=<redacted>)"

    def for_image(self, ref: ImageReference) -> RegistryCredential | None:
        """The most specific entry matching the image's registry and repository (kubelet's rule)."""
        matches = [
            (len(key), credential)
            for key, credential in self.entries
            if _key_matches(key, ref.registry, ref.repository)
        ]
        return max(matches, key=lambda item: item[0])[1] if matches else None


def _normalize_auth_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `http://h:5000/p/` -> `h:5000/p`."""
    raw = key.strip()
    if "://" not in raw:
        raw = f"//{raw}"
    parts = urlsplit(raw)
    host = parts.netloc.lower()
    path = parts.path.strip("/")
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if path in ("v1", "v2"):
            path = ""
    return f"{host}/{path}" if path else host


def _key_matches(key: str, registry: str, repository: str) -> bool:
    key_host, _, key_path = key.partition("/")
    if not _host_matches(key_host, registry):
        return False
    if not key_path:
        return True
    return repository == key_path or repository.startswith(f"{key_path}/")


def _host_matches(pattern: str, host: str) -> bool:
    """Label-by-label match; `*` matches one label; ports must be equal (both absent counts)."""
    pattern_name, _, pattern_port = pattern.partition(":")
    host_name, _, host_port = host.partition(":")
    if pattern_port != host_port:
        return False
    pattern_labels, host_labels = pattern_name.split("."), host_name.split(".")
    if len(pattern_labels) != len(host_labels):
        return False
    return all(p in ("*", h) for p, h in zip(pattern_labels, host_labels, strict=True))


def auth_from_dockerconfigjson(raw: bytes) -> RegistryAuth:
    """Parse the content of a `.dockerconfigjson` (also accepts the legacy bare `.dockercfg` map).

    Each entry may give `auth` (base64 of `user:password`), `username`/`password`, or
    `identitytoken`. Raises RegistryAuthError with a message that quotes nothing from `raw`.
    """
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RegistryAuthError("registry secret is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryAuthError("registry secret is not a JSON object")
    auths = document.get("auths", document)
    if not isinstance(auths, dict):
        raise RegistryAuthError("registry secret: `auths` is not an object")
    entries = []
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise RegistryAuthError(f"registry secret: entry for {key!r} is not an object")
        entries.append((_normalize_auth_key(str(key)), _credential(str(key), entry)))
    return RegistryAuth(entries=tuple(entries))


def _credential(key: str, entry: Mapping[str, Any]) -> RegistryCredential:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, ValueError):
            raise RegistryAuthError(f"registry secret: `auth` of {key!r} is not base64") from None
        if ":" not in decoded:
            raise RegistryAuthError(f"registry secret: `auth` of {key!r} is not user:password")
        username, password = decoded.split(":", 1)
    token = str(entry.get("identitytoken") or "")
    return RegistryCredential(username=username, password=password, identity_token=token)


def auth_from_secret(secret: Mapping[str, Any]) -> RegistryAuth:
    """Read a Secret object as returned by the API server (`data` values are base64)."""
    data = secret.get("data") or {}
    for key in (".dockerconfigjson", ".dockercfg"):
        if key in data:
            try:
                raw = base64.b64decode(str(data[key]), validate=True)
            except (binascii.Error, ValueError):
                raise RegistryAuthError(f"registry secret: data[{key!r}] is not base64") from None
            return auth_from_dockerconfigjson(raw)
    raise RegistryAuthError("registry secret has no .dockerconfigjson key")


# --- challenges -------------------------------------------------------------------------------


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


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    outcome: Outcome
    message: str


class ImageChecker(Protocol):
    async def image_exists(
        self, image: str, *, insecure: bool, auth: RegistryAuth | None, fresh: bool = False
    ) -> ImageCheck: ...


class _RefusedError(Exception):
    """Internal: the registry refused us; the message is safe to show."""


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
        error_ttl: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._error_ttl = error_ttl
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
            ttl = self._error_ttl if check.outcome == "error" else self._cache_ttl
            self._cache[key] = (self._clock() + ttl, check)
        log.info("registry lookup: image=%s outcome=%s", ref, check.outcome)
        return check

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
        realm = challenge.params["realm"]
        query = {"scope": scope}
        if service := challenge.params.get("service"):
            query["service"] = service
        session = self._session_for_use()
        if credential and credential.identity_token:
            form = {
                **query,
                "grant_type": "refresh_token",
                "client_id": "ooto",
                "refresh_token": credential.identity_token,
            }
            request = session.post(realm, data=form, ssl=ssl_option)
        else:
            headers = {}
            if credential and credential.username:
                headers["Authorization"] = _basic(credential)
            request = session.get(realm, params=query, headers=headers, ssl=ssl_option)
        async with request as response:
            if response.status in (401, 403):
                who = f"the credentials of user {credential.username!r}" if credential else ""
                raise _RefusedError(
                    f"token service {urlsplit(realm).netloc} refused "
                    f"{who or 'anonymous access'} (HTTP {response.status})"
                )
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info,
                    (),
                    status=response.status,
                    message=f"token service answered HTTP {response.status}",
                )
            body = await response.json(content_type=None)
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise _RefusedError(f"token service {urlsplit(realm).netloc} returned no token")
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
        return ImageCheck("present", f"{ref} is present{f' ({digest})' if digest else ''}")
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
