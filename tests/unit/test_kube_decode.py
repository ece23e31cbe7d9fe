"""Replies and watch events decode with orjson, exactly as `json` would for what the API server
sends (its free-form numbers are int64 or float64)."""

from __future__ import annotations

import json

import pytest

from ooto.kube.client import decode_json


def test_a_kubernetes_object_decodes_as_with_json() -> None:
    raw = json.dumps({"kind": "Node", "metadata": {"name": "n", "labels": {"a": "ü"}}}).encode()
    assert decode_json(raw) == json.loads(raw)


def test_int64_and_float64_numbers_are_exact() -> None:
    raw = b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 0.1, "d": 1e308}'
    decoded = decode_json(raw)
    assert decoded == json.loads(raw)
    assert isinstance(decoded["a"], int) and decoded["a"] == 2**63 - 1


def test_invalid_json_still_raises() -> None:
    with pytest.raises(ValueError):
        decode_json(b'{"truncated": ')
