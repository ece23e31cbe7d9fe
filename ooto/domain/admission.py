"""Admission decisions for Modules: an AdmissionReview (admission.k8s.io/v1) in, its answer out.

Pure: no I/O. The webhook server (`ooto.webhook`) only decodes the body and sends back what
`review_response` returns. The decision is `validate_module` under the operator's policy, the
same function the operator and `ooto render` use, so the webhook refuses up front exactly what
the operator would otherwise report as InvalidSpec after the fact.

An UPDATE that leaves the spec as it was is allowed even when the spec is invalid (its problems
come back as warnings): a policy tightened after a Module was created must not block removing a
finalizer, relabelling it or letting it be deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ooto.domain.api.module import GROUP, KIND, PLURAL
from ooto.domain.validation import (
    MAX_DEPTH,
    MAX_REPORTED,
    FieldError,
    ModulePolicy,
    summary,
    validate_module,
)

API_VERSION = "admission.k8s.io/v1"
REVIEW_KIND = "AdmissionReview"
MAX_WARNINGS = 10
# Enough to echo the uid of a review whose body cannot be decoded (nested beyond the decoder):
# the API server writes the request's uid first, before the object and its metadata.uid.
_UID = re.compile(rb'"uid"\s*:\s*"([0-9A-Za-z-]{1,64})"')


class ReviewError(ValueError):
    """Not an AdmissionReview we can answer (no request or no uid): answered with HTTP 400."""


def review_response(review: Any, policy: ModulePolicy) -> dict[str, Any]:
    """The AdmissionReview answering `review` (a decoded request body)."""
    request = review.get("request") if isinstance(review, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise ReviewError("expected an admission.k8s.io/v1 AdmissionReview with a request uid")
    errors, warnings = judge(request, policy)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": not errors}
    if errors:
        response["status"] = denial_status(request, errors)
    if warnings:
        response["warnings"] = warnings
    return _review(response)


def undecodable_response(body: bytes) -> dict[str, Any]:
    """A denial for a body the JSON decoder refused (nested too deep, not JSON)."""
    found = _UID.search(body)
    if found is None:
        raise ReviewError("the request body is not JSON and carries no uid")
    message = f"the object cannot be decoded (not JSON, or nested deeper than {MAX_DEPTH} levels)"
    status = {"code": 422, "reason": "Invalid", "message": message}
    return _review({"uid": found.group(1).decode(), "allowed": False, "status": status})


def judge(request: Mapping[str, Any], policy: ModulePolicy) -> tuple[list[FieldError], list[str]]:
    """(errors that deny the request, warnings that go with an allowed one)."""
    kind = request.get("kind") or {}
    if kind.get("group") != GROUP or kind.get("kind") != KIND:
        return [], [f"ooto's webhook judges only {KIND}s, not {kind.get('kind')!r}"]
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return [], []
    new = request.get("object")
    if not isinstance(new, dict):
        return [FieldError("(object)", "missing")], []
    errors = validate_module(_in_namespace(new, request.get("namespace")), policy)
    old = request.get("oldObject")
    if errors and isinstance(old, dict) and old.get("spec") == new.get("spec"):
        return [], [_warning(error) for error in errors[:MAX_WARNINGS]]
    return errors, []


def _in_namespace(obj: dict[str, Any], namespace: Any) -> dict[str, Any]:
    """The object with the request's namespace in its metadata, which the policy reads."""
    meta = obj.get("metadata")
    if not isinstance(namespace, str) or not isinstance(meta, dict) or meta.get("namespace"):
        return obj
    return {**obj, "metadata": {**meta, "namespace": namespace}}


def denial_status(request: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """A metav1.Status like the API server's own 422 Invalid, one cause per field."""
    meta = (request.get("object") or {}).get("metadata") or {}
    name = meta.get("name") or request.get("name") or ""
    namespace = meta.get("namespace") or request.get("namespace") or ""
    return {
        "code": 422,
        "reason": "Invalid",
        "message": f"{KIND} {namespace}/{name} is invalid: {summary(errors)}",
        "details": {
            "name": name,
            "group": GROUP,
            "kind": PLURAL,
            "causes": [
                {"reason": "FieldValueInvalid", "field": e.path, "message": e.message}
                for e in errors[:MAX_REPORTED]
            ],
        },
    }


def _warning(error: FieldError) -> str:
    text = f"unchanged spec is invalid under this operator's policy: {error}"
    return text if len(text) <= 256 else text[:253] + "..."


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": REVIEW_KIND, "response": response}


def encode(review: Mapping[str, Any]) -> bytes:
    return json.dumps(review, separators=(",", ":")).encode()
