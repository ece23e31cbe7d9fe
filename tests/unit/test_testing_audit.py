"""Reading the API server's audit log (ooto/testing/audit.py), which the RBAC test relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ooto.testing.audit import AuditLog, Grant
from ooto.testing.cluster import audit_policy


def event(audit_id: str, user: str, verb: str, ref: dict[str, str] | None, code: int = 200) -> str:
    body: dict[str, Any] = {
        "kind": "Event",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "user": {"username": user},
        "verb": verb,
        "responseStatus": {"code": code},
    }
    if ref is not None:
        body["objectRef"] = ref
    return json.dumps(body) + "\n"


@pytest.mark.parametrize(
    ("text", "grant"),
    [
        (
            "update ooto.sigs.k8s.io/modules/finalizers",
            Grant("update", "ooto.sigs.k8s.io", "modules/finalizers"),
        ),
        ("get core/pods/log", Grant("get", "", "pods/log")),
        ("list apps/daemonsets", Grant("list", "apps", "daemonsets")),
    ],
)
def test_grants_read_and_print_the_same(text: str, grant: Grant) -> None:
    assert Grant.parse(text) == grant
    assert str(grant) == text


@pytest.mark.parametrize("text", ["get", "get pods", "get /pods", " core/pods"])
def test_a_grant_without_verb_group_or_resource_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="VERB GROUP/RESOURCE"):
        Grant.parse(text)


def test_requests_of_one_user_between_marks_once_each(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    assert log.mark() == 0 and log.requests("op") == []
    pods = {"resource": "pods", "namespace": "ns"}
    (tmp_path / "audit.log").write_text(event("0", "op", "list", pods))
    start = log.mark()
    with (tmp_path / "audit.log").open("a") as out:
        out.write(event("1", "op", "watch", {"resource": "nodes"}))
        out.write(event("1", "op", "watch", {"resource": "nodes"}))  # ResponseStarted + Complete
        out.write(event("2", "admin", "delete", pods))
        out.write(event("3", "op", "get", {"resource": "pods", "subresource": "log"}, 500))
        out.write(event("4", "op", "get", None))  # /version: no RBAC resource
        out.write(
            event(
                "5",
                "op",
                "patch",
                {"resource": "modules", "subresource": "status", "apiGroup": "ooto.sigs.k8s.io"},
            )
        )
    end = log.mark()
    with (tmp_path / "audit.log").open("a") as out:
        out.write(event("6", "op", "list", {"resource": "nodes"}, 403))
        out.write('{"kind": "Event", "user": {"username": "op"}')  # being written
    found = log.requests("op", since=start, until=end)
    assert [(str(r.grant), r.code) for r in found] == [
        ("watch core/nodes", 200),
        ("get core/pods/log", 500),
        ("patch ooto.sigs.k8s.io/modules/status", 200),
    ]
    assert [str(r.grant) for r in log.requests("op", since=end)] == ["list core/nodes"]


def test_the_policy_logs_metadata_of_the_named_users_and_nothing_else() -> None:
    policy = audit_policy(["ooto-operator"])
    assert policy["rules"] == [
        {"level": "Metadata", "users": ["ooto-operator"]},
        {"level": "None"},
    ]
