"""Reading the local API server's audit log: which (verb, group, resource) a user asked for.

`LocalCluster(audit_users=[...])` makes the API server log those users' requests at Metadata
level (`cluster.audit_log`). A test takes a `mark()` before it starts the operator and reads
`requests(user, since=mark, until=end)` afterwards: the log is shared by every test of the
session (and the harness itself may act as that user, e.g. to see its rights revoked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORE = "core"
"""How the core API group ("") is written in a `Grant`'s text, as in `kubectl api-resources`."""


@dataclass(frozen=True, order=True)
class Grant:
    """One RBAC (verb, group, resource[/subresource]); `str()` is `verb group/resource`."""

    verb: str
    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.verb} {self.group or CORE}/{self.resource}"

    @classmethod
    def parse(cls, text: str) -> Grant:
        """The inverse of `str()`: `update ooto.sigs.k8s.io/modules/finalizers`."""
        verb, _, rest = text.strip().partition(" ")
        group, _, resource = rest.strip().partition("/")
        if not (verb and group and resource):
            raise ValueError(f"not `VERB GROUP/RESOURCE` (core group: {CORE}): {text!r}")
        return cls(verb, "" if group == CORE else group, resource)


@dataclass(frozen=True)
class AuditedRequest:
    grant: Grant
    code: int
    namespace: str


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """Where the log ends now; later reads start there."""
        return self.path.stat().st_size if self.path.exists() else 0

    def requests(
        self, user: str, *, since: int = 0, until: int | None = None
    ) -> list[AuditedRequest]:
        """Each resource request of `user` logged between two marks, once (a watch logs its
        start and its end)."""
        seen: set[str] = set()
        found = []
        for event in self._events(since, until):
            if event.get("user", {}).get("username") != user or event.get("auditID") in seen:
                continue
            seen.add(event.get("auditID", ""))
            request = _audited(event)
            if request is not None:
                found.append(request)
        return found

    def _events(self, since: int, until: int | None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(since)
            lines = log.read(-1 if until is None else until - since).splitlines()
        events = []
        for number, line in enumerate(lines):
            try:
                events.append(json.loads(line))
            except ValueError:
                if number < len(lines) - 1:
                    raise
                # The last line may be half written while the API server is still running.
        return events


def _audited(event: dict[str, Any]) -> AuditedRequest | None:
    ref = event.get("objectRef")
    if not ref or not ref.get("resource"):
        return None  # a non-resource URL (discovery, /version): not an RBAC resource grant
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    code = int((event.get("responseStatus") or {}).get("code") or 0)
    grant = Grant(str(event.get("verb")), str(ref.get("apiGroup") or ""), resource)
    return AuditedRequest(grant, code, str(ref.get("namespace") or ""))
