"""Registry credentials from a `kubernetes.io/dockerconfigjson` Secret, and which of them serves an
image: host matching as the kubelet's keyring does it (`auths` keys with or without a scheme, a
path prefix, `*.` wildcard labels, equal ports, the docker.io aliases; the longest key wins).

Nothing here ever puts a password or token in a message, a repr or an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ooto.registry.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, ImageReference


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
