"""API errors: the class follows the HTTP status and the server's reason; no request body leaks."""

import json

from ooto.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServerError,
    error_from_status,
)


def _status(code: int, reason: str, message: str = "m") -> bytes:
    return json.dumps(
        {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    ).encode()


def test_classes_by_status() -> None:
    assert type(error_from_status(404, _status(404, "NotFound"))) is NotFound
    assert type(error_from_status(403, _status(403, "Forbidden"))) is Forbidden
    assert type(error_from_status(410, _status(410, "Expired"))) is Gone
    assert type(error_from_status(422, _status(422, "Invalid"))) is Invalid
    assert type(error_from_status(503, b"upstream down")) is ServerError
    assert type(error_from_status(400, _status(400, "BadRequest"))) is ApiError


def test_409_on_create_is_already_exists_which_is_a_conflict() -> None:
    error = error_from_status(409, _status(409, "AlreadyExists"))
    assert isinstance(error, AlreadyExists)
    assert isinstance(error, Conflict)
    assert type(error_from_status(409, _status(409, "Conflict"))) is Conflict


def test_message_and_reason_come_from_the_status() -> None:
    error = error_from_status(404, _status(404, "NotFound", 'pods "x" not found'))
    assert (error.status, error.reason, error.message) == (404, "NotFound", 'pods "x" not found')
    assert 'pods "x" not found' in str(error)


def test_non_status_bodies_are_cut_short() -> None:
    error = error_from_status(502, b"x" * 10_000)
    assert len(error.message) <= 512
    assert error.reason == "InternalError"
    assert error.retryable


def test_decoded_watch_error_object() -> None:
    error = error_from_status(410, {"kind": "Status", "code": 410, "reason": "Expired"})
    assert isinstance(error, Gone)
    assert not error.retryable
