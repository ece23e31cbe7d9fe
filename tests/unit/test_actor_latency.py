"""Actor message latency: what the bridge tells is stamped, the receiving actor reports the wait."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from actors.base import OotoActor
from actors.bridge import Bridge
from actors.messages import IoDone


class Latencies:
    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str, float]] = queue.Queue()

    def observe_message_latency(self, actor_kind: str, seconds: float) -> None:
        self.seen.put((actor_kind, seconds))


class Sink(OotoActor):
    def __init__(self, bridge: Bridge, got: queue.Queue[Any]) -> None:
        super().__init__(bridge)
        self.got = got

    def on_str(self, message: str) -> None:
        self.got.put(message)

    def on_IoDone(self, done: IoDone) -> None:
        self.got.put(done)

    def on_timer(self, name: str) -> None:
        self.got.put(("timer", name))


async def three() -> int:
    return 3


def test_told_results_and_timers_arrive_unwrapped_and_their_wait_is_reported(
    loop: asyncio.AbstractEventLoop,
) -> None:
    latencies = Latencies()
    bridge = Bridge(loop, latency=latencies)
    got: queue.Queue[Any] = queue.Queue()
    ref = Sink.start(bridge, got)
    try:
        bridge.tell(ref, "hello")
        assert got.get(timeout=5) == "hello"
        bridge.run(ref, ("x",), three())
        assert got.get(timeout=5).result == 3
        ref.proxy().set_timer("t", 0.01).get(timeout=5)
        assert got.get(timeout=5) == ("timer", "t")
        kinds = [latencies.seen.get(timeout=5) for _ in range(3)]
        assert [kind for kind, _ in kinds] == ["Sink"] * 3
        assert all(0 <= seconds < 5 for _, seconds in kinds)
    finally:
        ref.stop()


def test_without_an_observer_messages_are_told_as_they_are(
    loop: asyncio.AbstractEventLoop,
) -> None:
    bridge = Bridge(loop)
    got: queue.Queue[Any] = queue.Queue()
    ref = Sink.start(bridge, got)
    try:
        bridge.tell(ref, "plain")
        assert got.get(timeout=5) == "plain"
    finally:
        ref.stop()
