"""The bridge between actor threads and the asyncio loop: results, errors, timers, shutdown."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import pytest

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.messages import IoDone, Tick


class Recorder(OotoActor):
    """Records what reaches it; `boom` messages make its handler fail."""

    def __init__(self, bridge: Bridge, seen: queue.Queue[Any]) -> None:
        super().__init__(bridge)
        self.seen = seen

    def on_IoDone(self, done: IoDone) -> None:
        self.seen.put(done)

    def on_timer(self, name: str) -> None:
        self.seen.put(("timer", name))

    def on_str(self, message: str) -> None:
        if message == "boom":
            raise RuntimeError("handler bug")
        if message.startswith("set:"):
            _, name, delay = message.split(":")
            self.set_timer(name, float(delay))
        elif message.startswith("cancel:"):
            self.cancel_timer(message.split(":")[1])
        self.seen.put(message)


async def answer(value: int) -> int:
    await asyncio.sleep(0.01)
    return value


async def fail() -> None:
    raise LookupError("not there")


def start(loop: asyncio.AbstractEventLoop) -> tuple[Any, queue.Queue[Any], Bridge]:
    seen: queue.Queue[Any] = queue.Queue()
    bridge = Bridge(loop)
    return Recorder.start(bridge, seen), seen, bridge


def test_results_carry_value_or_error(loop: asyncio.AbstractEventLoop) -> None:
    ref, seen, bridge = start(loop)
    bridge.run(ref, ("ok",), answer(7))
    done = seen.get(timeout=5)
    assert done.ok and done.result == 7
    bridge.run(ref, ("bad",), fail())
    done = seen.get(timeout=5)
    assert not done.ok and isinstance(done.error, LookupError)
    ref.stop()


def test_a_handler_bug_does_not_kill_the_actor(loop: asyncio.AbstractEventLoop) -> None:
    ref, seen, _ = start(loop)
    ref.tell("boom")
    ref.tell("still alive")
    assert seen.get(timeout=5) == "still alive"
    ref.stop()


def test_only_the_latest_timer_of_a_name_fires(loop: asyncio.AbstractEventLoop) -> None:
    ref, seen, _ = start(loop)
    ref.tell("set:t:0.2")
    ref.tell("set:t:0.05")
    ref.tell("set:gone:0.05")
    ref.tell("cancel:gone")
    fired = [seen.get(timeout=5) for _ in range(4)] + [seen.get(timeout=5)]
    assert fired.count(("timer", "t")) == 1 and ("timer", "gone") not in fired
    with pytest.raises(queue.Empty):
        seen.get(timeout=0.4)
    ref.stop()


def test_a_closed_bridge_drops_new_work_and_a_dead_actor_is_not_an_error(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ref, _, bridge = start(loop)
    ref.stop()
    bridge.run(ref, ("late",), answer(1))  # reply to a dead actor: dropped quietly
    bridge.close()
    coro = answer(2)
    bridge.run(ref, ("closed",), coro)
    assert coro.cr_frame is None  # closed without running
    ref2, seen2, _ = start(loop)
    ref2.tell(Tick("never-set", 99))  # a stale tick is ignored
    ref2.tell("after")
    assert seen2.get(timeout=5) == "after"
    ref2.stop()


async def forever(ended: queue.Queue[str], started: queue.Queue[str] | None = None) -> None:
    if started is not None:
        started.put("started")
    try:
        await asyncio.Event().wait()
    finally:
        ended.put("finally ran")


def test_a_cancelled_handle_ends_its_coroutine_at_its_next_await(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ref, seen, bridge = start(loop)
    ended: queue.Queue[str] = queue.Queue()
    started: queue.Queue[str] = queue.Queue()
    handle = bridge.run(ref, ("forever",), forever(ended, started))
    assert started.get(timeout=5) == "started"
    handle.cancel()
    assert ended.get(timeout=5) == "finally ran"
    done = seen.get(timeout=5)
    assert done.tag == ("forever",) and isinstance(done.error, asyncio.CancelledError)
    # Cancelled at once (maybe before the loop started it): its end is told all the same.
    bridge.run(ref, ("soon",), forever(ended, started)).cancel()
    done = seen.get(timeout=5)
    assert done.tag == ("soon",) and isinstance(done.error, asyncio.CancelledError)


def test_drain_cancels_and_awaits_everything_still_running(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ref, _, bridge = start(loop)
    ended: queue.Queue[str] = queue.Queue()
    for n in range(3):
        bridge.run(ref, ("forever", n), forever(ended))
    count = asyncio.run_coroutine_threadsafe(bridge.drain(timeout=5), loop).result(10)
    assert count == 3
    assert [ended.get_nowait() for _ in range(3)] == ["finally ran"] * 3  # before drain returned
    late: queue.Queue[str] = queue.Queue()
    bridge.run(ref, ("late",), forever(late))  # a closed bridge starts nothing
    assert asyncio.run_coroutine_threadsafe(bridge.drain(timeout=5), loop).result(10) == 0
