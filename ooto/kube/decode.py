"""JSON from the API server: fast decoding, and a fallback that recovers what it can.

orjson refuses documents nested deeper than 1024 levels, and the API server stores such objects
(a free-form field of a custom resource can nest as deep as the user likes). One such object must
not make a whole list or watch stream unreadable, and its identity (kind, namespace, name, uid)
is what lets the operator report it. `decode_shallow` decodes a document with every value nested
deeper than `SHALLOW_DEPTH` replaced by the string `TOO_DEEP`, so the metadata of every object in
it survives; `contains_too_deep` tells which objects lost a part.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

TOO_DEEP = "\x00ooto: nested too deeply to decode"
SHALLOW_DEPTH = 512
"""Below orjson's 1024 and above anything a sane object needs; Python code walking an object
recursively (pydantic validation) runs out of stack long before it."""

_TOO_DEEP_JSON = orjson.dumps(TOO_DEEP)
# A JSON string (unrolled loop: fast on long strings) or one bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def decode_json(data: bytes) -> Any:
    """orjson, 3-4x faster than `json` on the API server's replies and watch events, which were a
    third of the operator's time while converging. It is exact for every number the API server
    sends (it decodes free-form JSON to int64 or float64 itself); errors are ValueErrors."""
    return orjson.loads(data)


def decode_shallow(data: bytes, max_depth: int = SHALLOW_DEPTH) -> Any:
    """`data` decoded with each value nested deeper than `max_depth` replaced by `TOO_DEEP`.

    Raises ValueError when `data` is not JSON for another reason (truncated, not UTF-8).
    """
    pieces: list[bytes] = []
    depth = 0
    kept_until = 0  # data[:kept_until] is in `pieces`
    cut_from = -1  # where the too-deep value being skipped began
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token[0] == 0x22:  # a string: brackets inside it are text
            continue
        if token in (b"{", b"["):
            depth += 1
            if depth == max_depth + 1:
                cut_from = match.start()
        else:
            depth -= 1
            if depth == max_depth and cut_from >= 0:
                pieces += (data[kept_until:cut_from], _TOO_DEEP_JSON)
                kept_until, cut_from = match.end(), -1
    pieces.append(data[kept_until:])
    return orjson.loads(b"".join(pieces))


def decode_list_page(data: bytes) -> dict[str, Any]:
    """A list page; with `"shallow": True` when an item was too deep to decode (cut items then
    hold `TOO_DEEP`: `contains_too_deep` finds them)."""
    try:
        return dict(decode_json(data))
    except ValueError:
        page = dict(decode_shallow(data))
        page["shallow"] = True
        return page


def contains_too_deep(value: Any) -> bool:
    """Whether `decode_shallow` cut a part of `value` (iterative: the depth may be ~500)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item == TOO_DEEP:
            return True
    return False


# -- watch streams ----------------------------------------------------------------------------

MAX_LINE_BYTES = 64 * 1024 * 1024
"""A watch line longer than this is skipped. etcd stores objects up to 1.5 MiB by default, so
only a misconfigured server gets near it; aiohttp's own line reader stops at 128 KiB, which a
Module with a large annotation passes."""


async def split_lines(
    chunks: AsyncIterable[bytes], limit: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes | None]:
    """The newline-separated lines of a stream of chunks; None for a line over `limit` bytes
    (skipped, the stream goes on)."""
    buffer = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if skipping:
                skipping = False
            else:
                buffer += chunk[start:end]
                yield bytes(buffer)
            buffer.clear()
            start = end + 1
        if not skipping:
            buffer += chunk[start:]
            if len(buffer) > limit:
                buffer.clear()
                skipping = True
                yield None
    if buffer:
        yield bytes(buffer)


def parse_watch_line(line: bytes | None) -> dict[str, Any]:
    """One watch event. When the line cannot be decoded, the event carries `undecodable` (the
    reason) and, if the shallow decode recovered it, the object with its deep parts cut."""
    if line is None:
        return {
            "type": "",
            "object": {},
            "undecodable": f"a watch line over {MAX_LINE_BYTES} bytes",
        }
    try:
        return dict(decode_json(line))
    except ValueError as error:
        reason = str(error)  # orjson's: where and why, never the document itself
    try:
        event = dict(decode_shallow(line))
    except ValueError:
        return {"type": "", "object": {}, "undecodable": reason}
    event["undecodable"] = reason
    return event
