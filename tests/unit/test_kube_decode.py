"""Replies and watch events decode with orjson, exactly as `json` would for what the API server
sends (its free-form numbers are int64 or float64); what orjson refuses (over 1024 levels) still
gives up its identity, and watch lines of any length are read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from ooto.kube.decode import (
    TOO_DEEP,
    contains_too_deep,
    decode_json,
    decode_shallow,
    parse_watch_line,
    split_lines,
)


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


def deep_text(depth: int) -> str:
    return '{"a": ' * (depth - 1) + '{"leaf": 1}' + "}" * (depth - 1)


def test_orjson_refuses_1100_levels_and_the_shallow_decode_keeps_the_identity() -> None:
    line = deep_text(1100).encode()
    with pytest.raises(ValueError):
        decode_json(line)
    cut = decode_shallow(line, max_depth=3)
    assert cut == {"a": {"a": {"a": TOO_DEEP}}}
    assert contains_too_deep(cut)


def test_a_watch_line_too_deep_to_decode_is_an_event_that_says_so() -> None:
    obj = {"metadata": {"name": "deep"}, "spec": {"volume": {"leaf": 1}}}
    line = json.dumps({"type": "MODIFIED", "object": obj}).encode()
    line = line.replace(b'{"leaf": 1}', deep_text(1100).encode())
    event = parse_watch_line(line)
    assert event["type"] == "MODIFIED"
    assert event["object"]["metadata"] == {"name": "deep"}
    assert "undecodable" in event and contains_too_deep(event["object"])
    assert "undecodable" not in parse_watch_line(
        json.dumps({"type": "ADDED", "object": obj}).encode()
    )


def test_a_shallow_document_decodes_unchanged_and_strings_with_brackets_do_not_count() -> None:
    raw = json.dumps({"a": [{"b": '}}]]{{\\"['}], "c": {"d": []}}).encode()
    assert decode_shallow(raw, max_depth=3) == json.loads(raw)
    assert not contains_too_deep(json.loads(raw))


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_lines_are_split_across_chunks_and_an_overlong_line_is_skipped() -> None:
    stream = b"one\n" + b"x" * 50 + b"\ntwo\n\nthree"
    got = [line async for line in split_lines(chunks_of(stream, 7), limit=20)]
    assert got == [b"one", None, b"two", b"", b"three"]
    # aiohttp's own reader stops at 128 KiB; ours reads a 1 MiB line whole.
    big = b"y" * (1 << 20)
    assert [line async for line in split_lines(chunks_of(big + b"\nz\n", 65536))] == [big, b"z"]
