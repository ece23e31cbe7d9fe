"""Waiting on a noisy machine: poll with a deadline, never sleep a fixed time and hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> T:
    """Await `probe()` until it returns something other than None (or False); return that.

    On timeout, the AssertionError names `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            )
        await asyncio.sleep(interval)
