"""What every ooto actor shares: typed dispatch, a crash guard, timers and backoff."""

from __future__ import annotations

import _thread
import logging
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka

from actors.bridge import Bridge, Stamped
from actors.messages import Tick

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with jitter: initial, 2x, 4x ... up to `maximum`; `reset` on success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self._maximum, self._initial * (2.0**self.failures))
        self.failures += 1
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.failures = 0


class OotoActor(pykka.ThreadingActor):
    """Routes each told message to `on_<MessageClass>` and keeps the actor alive on handler bugs.

    pykka stops an actor whose told message or `on_start` raised; one bad object must never take a
    Module down, so start-up work (`on_started`, never `on_start`) and every handler run inside one
    crash guard: the failure is logged with its context, counted, and `on_crash` decides how to
    recover. Should the actor die all the same (`on_crash` itself failed), `on_death` tells
    whoever must replace it or report it: an actor never dies silently.
    """

    use_daemon_thread = True

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self.bridge = bridge
        self._timers: dict[str, int] = {}
        self._timer_seq = 0

    def _start_actor_loop(self) -> None:
        # pykka starts a `threading.Thread`, whose `start()` waits until the new thread runs: a GIL
        # hand-off to it and back per actor, which paced a supervisor spawning 500 kernel actors
        # (~3 ms each under load). The inbox and ref exist before the loop runs, so nothing needs
        # that wait; the thread is a daemon either way (`use_daemon_thread`), and `stop` and
        # `ActorRegistry.stop_all` wait on `actor_stopped`, not on the thread.
        _thread.start_new_thread(self._actor_loop, ())

    def on_start(self) -> None:
        try:
            self._guarded("start", self.on_started)
        except Exception as error:  # on_crash failed too: pykka stops us without on_failure
            self._announce_death(error)
            raise

    def on_started(self) -> None:
        """Start-up work, inside the crash guard (pykka's `on_start` is not)."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Stamped):
            self.bridge.message_received(type(self).__name__, message)
            message = message.message
        handler = getattr(self, f"on_{type(message).__name__}", None)
        if handler is None:
            log.warning("%s ignored unexpected %r", self.describe(), message)
            return None
        return self._guarded(type(message).__name__, lambda: handler(message))

    def _guarded(self, what: str, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except Exception as error:
            log.exception("%s failed handling %s", self.describe(), what)
            self.bridge.actor_failed(type(self).__name__, died=False)
            self.on_crash(error)
            return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # pykka logged the traceback on its own logger and stops us after this returns.
        self._announce_death(exception_value)

    def _announce_death(self, error: BaseException | None) -> None:
        log.error("%s died: %r", self.describe(), error, extra={"reason": "ActorDied"})
        self.bridge.actor_failed(type(self).__name__, died=True)
        try:
            self.on_death(error)
        except Exception:
            log.exception("%s could not report its own death", self.describe())

    def on_crash(self, error: Exception) -> None:
        """Recover after a handler bug; the default drops the message and carries on."""

    def on_death(self, error: BaseException | None) -> None:
        """This actor is stopping because of `error`: tell the parent that replaces it."""

    def describe(self) -> str:
        return type(self).__name__

    def send(self, to: pykka.ActorRef[Any], message: object) -> None:
        """Tell another actor; one that stopped meanwhile (retired, shut down) is not an error."""
        try:
            to.tell(message)
        except pykka.ActorDeadError:
            log.debug(
                "%s: %s dropped, its receiver stopped", self.describe(), type(message).__name__
            )

    # Timers: only the latest `set_timer(name)` fires; earlier ones arrive stale and are dropped.
    def set_timer(self, name: str, delay: float) -> None:
        self._timer_seq += 1
        self._timers[name] = self._timer_seq
        self.bridge.call_later(delay, self.actor_ref, Tick(name, self._timer_seq))

    def cancel_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def timer_pending(self, name: str) -> bool:
        return name in self._timers

    def on_Tick(self, tick: Tick) -> None:
        if self._timers.get(tick.name) != tick.generation:
            return
        del self._timers[tick.name]
        self.on_timer(tick.name)

    def on_timer(self, name: str) -> None:
        """A timer set with `set_timer` fired."""
