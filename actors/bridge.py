"""The one seam between actors (threads) and the asyncio loop that does all I/O.

An actor never blocks on I/O: it hands a coroutine to `Bridge.run`, keeps going, and later receives
`IoDone(tag, result | error)` in its mailbox. The done-callback only `tell`s; an actor that died
meanwhile is simply not told (its work is done or abandoned, never retried by the bridge).
Timers run on the loop (`call_later`) and come back as messages, so an actor has no thread of
its own
besides its mailbox, and no polling anywhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import pykka

from actors.messages import IoDone

log = logging.getLogger(__name__)


class MessageLatencyObserver(Protocol):
    def observe_message_latency(self, actor_kind: str, seconds: float) -> None: ...


class Bridge:
    """Runs coroutines and timers on `loop` on behalf of actors."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(
        self, reply_to: pykka.ActorRef[Any], tag: tuple[Any, ...], coro: Coroutine[Any, Any, Any]
    ) -> None:
        """Run `coro` on the loop; tell `reply_to` IoDone(tag, ...) when it ends."""
        if self._closed:
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(lambda done: _deliver(reply_to, tag, done))

    def call_later(self, delay: float, reply_to: pykka.ActorRef[Any], message: object) -> None:
        """Tell `reply_to` `message` after `delay` seconds (drop stale ones by generation)."""
        if self._closed:
            return
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, _tell, reply_to, message)

    def call_soon(self, func: Callable[..., object], *args: Any) -> None:
        """Run a non-blocking `func(*args)` on the loop thread (e.g. queue an Event)."""
        if self._closed:
            return
        self._loop.call_soon_threadsafe(func, *args)

    def close(self) -> None:
        """Stop accepting work: used at shutdown so late actor requests are dropped quietly."""
        self._closed = True


def _deliver(
    reply_to: pykka.ActorRef[Any], tag: tuple[Any, ...], done: concurrent.futures.Future[Any]
) -> None:
    if done.cancelled():
        _tell(reply_to, IoDone(tag, error=asyncio.CancelledError()))
        return
    error = done.exception()
    _tell(reply_to, IoDone(tag, error=error) if error is not None else IoDone(tag, done.result()))


def _tell(reply_to: pykka.ActorRef[Any], message: object) -> None:
    try:
        reply_to.tell(message)
    except pykka.ActorDeadError:
        log.debug("dropped %s for a stopped actor", type(message).__name__)
