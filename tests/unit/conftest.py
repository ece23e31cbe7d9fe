"""Fixtures for unit tests of the actor side: an asyncio loop running on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop on a background thread, as in the operator: actors hand it coroutines and timers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _cancel_others() -> None:
    """Work a test left running (e.g. for an actor that stopped) ends with the loop, quietly."""
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
