"""Admission decisions: AdmissionReview v1 in, the answer out (uid echoed, field paths named)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ooto.domain.admission import ReviewError, review_response, undecodable_response
from ooto.domain.validation import ModulePolicy

SAFE = ModulePolicy()


def module(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "mod", "namespace": "ns"},
        "spec": {
            "moduleLoader": {"image": "x"},
            "kernelMappings": [{"regexp": "^5", "containerImage": "q.io/m:v1"}],
        },
    }
    body["spec"].update(spec)
    return body


def review(obj: Any, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    request = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "ooto.sigs.k8s.io", "version": "v1alpha1", "kind": "Module"},
        "resource": {"group": "ooto.sigs.k8s.io", "version": "v1alpha1", "resource": "modules"},
        "name": "mod",
        "namespace": "ns",
        "operation": operation,
        "object": obj,
        "oldObject": old,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def answer(body: dict[str, Any], policy: ModulePolicy = SAFE) -> dict[str, Any]:
    out = review_response(body, policy)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    assert out["response"]["uid"] == body["request"]["uid"]
    response: dict[str, Any] = out["response"]
    return response


def test_a_valid_module_is_allowed() -> None:
    assert answer(review(module())) == {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "allowed": True,
    }


def test_an_invalid_module_is_denied_naming_each_field() -> None:
    bad = module(
        tolerations=[{"key": "k", "operator": "Exists", "value": "v"}],
        kernelMappings=[{"regexp": "(", "containerImage": "q.io/m:v1"}],
    )
    response = answer(review(bad))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith("Module ns/mod is invalid: ")
    assert "spec.kernelMappings[0].regexp: invalid RE2 regexp" in status["message"]
    assert "spec.tolerations[0].value: must be empty when operator is Exists" in status["message"]
    fields = [cause["field"] for cause in status["details"]["causes"]]
    assert fields == ["spec.kernelMappings[0].regexp", "spec.tolerations[0].value"]


def test_the_policy_decides_both_ways() -> None:
    host = module(additionalVolumes=[{"name": "h", "hostPath": {"path": "/"}}])
    assert answer(review(host))["allowed"] is False
    assert answer(review(host), ModulePolicy(allow_host_path_volumes=True))["allowed"] is True


def test_an_update_to_an_invalid_spec_is_denied() -> None:
    bad = module(serviceAccountName="root-ish")
    assert answer(review(bad, "UPDATE", old=module()))["allowed"] is False


def test_an_update_that_keeps_an_invalid_spec_is_allowed_with_warnings() -> None:
    """A policy tightened later must not block relabelling or finalizer removal."""
    old = module(serviceAccountName="root-ish")
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    response = answer(review(new, "UPDATE", old=old))
    assert response["allowed"] is True
    assert any("spec.serviceAccountName" in warning for warning in response["warnings"])


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed(operation: str) -> None:
    assert answer(review(None, operation, old=module()))["allowed"] is True


def test_a_review_of_something_else_is_allowed_with_a_warning() -> None:
    body = review({"kind": "ConfigMap"})
    body["request"]["kind"] = {"group": "", "version": "v1", "kind": "ConfigMap"}
    response = answer(body)
    assert response["allowed"] is True and "only Modules" in response["warnings"][0]


@pytest.mark.parametrize(
    "body", [None, [], {"request": None}, {"request": {"operation": "CREATE"}}]
)
def test_a_body_without_request_uid_is_a_review_error(body: Any) -> None:
    with pytest.raises(ReviewError):
        review_response(body, SAFE)


def test_an_undecodable_body_is_denied_with_its_uid_echoed() -> None:
    head = json.dumps(review(module()))[:-2]  # cut the closing braces: not JSON any more
    out = undecodable_response(head.encode())
    assert out["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert out["response"]["allowed"] is False
    assert "cannot be decoded" in out["response"]["status"]["message"]
    with pytest.raises(ReviewError):
        undecodable_response(b"{{{")


def test_the_request_namespace_counts_when_the_object_has_none() -> None:
    """`NAMESPACE/NAME` entries of allowedServiceAccounts match the namespace of the request."""
    body = module(serviceAccountName="loader")
    del body["metadata"]["namespace"]
    policy = ModulePolicy(allowed_service_accounts=frozenset({"ns/loader"}))
    assert answer(review(body), policy)["allowed"] is True
    elsewhere = review(body)
    elsewhere["request"]["namespace"] = "other"
    assert answer(elsewhere, policy)["allowed"] is False
