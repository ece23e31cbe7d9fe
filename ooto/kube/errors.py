"""The exceptions of the Kubernetes adapter, one class per HTTP status class the callers act on.

Messages come from the API server's `Status` response, never from the request body: Secrets travel
through this client and must not end up in logs or conditions.
"""

from __future__ import annotations

import json
from typing import Any

_MAX_MESSAGE = 512


class KubeError(Exception):
    """Base of everything `ooto.kube` raises about talking to the API server."""


class TransientError(KubeError):
    """The request did not get an HTTP answer (connection refused or reset, timeout, TLS)."""


class ApiError(KubeError):
    """The API server answered with a non-2xx status."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # The server's `Status` object (the response, never the request).
        self.body: dict[str, Any] = body or {}

    @property
    def retryable(self) -> bool:
        """Worth retrying the same request later: throttled or a server-side failure."""
        return self.status == 429 or self.status >= 500


class NotFound(ApiError):  # noqa: N818 (named like the HTTP status)
    """404."""


class Conflict(ApiError):  # noqa: N818 (named like the HTTP status)
    """409 on an update: the resourceVersion we sent is stale."""


class AlreadyExists(Conflict):
    """409 on create: an object with that name exists."""


class Forbidden(ApiError):  # noqa: N818 (named like the HTTP status)
    """403: RBAC does not grant the verb."""


class Gone(ApiError):  # noqa: N818 (named like the HTTP status)
    """410: the resourceVersion is too old (compacted); list again."""


class Invalid(ApiError):  # noqa: N818 (named like the HTTP status)
    """422: the object fails validation."""


class ServerError(ApiError):
    """5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def error_from_status(status: int, payload: bytes | dict[str, Any]) -> ApiError:
    """Build the right `ApiError` from an HTTP status and the response (raw bytes or decoded)."""
    body = _decode_status(payload)
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")[:_MAX_MESSAGE]
    if not body and isinstance(payload, bytes):
        message = payload[:_MAX_MESSAGE].decode("utf-8", "replace")
    cls: type[ApiError]
    if status == 409 and reason == "AlreadyExists":
        cls = AlreadyExists
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason or _default_reason(status), message, body)


def _decode_status(payload: bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        decoded = json.loads(payload)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) and decoded.get("kind") == "Status" else {}


def _default_reason(status: int) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        422: "Invalid",
        429: "TooManyRequests",
    }.get(status, "InternalError" if status >= 500 else "Unknown")
