"""Waiting until the operator has seen a change, instead of sleeping and hoping it has.

A fixed sleep before "assert nothing was written" proves nothing on a loaded machine: the operator
may not even have received the change yet. A test that asserts silence makes a change (or takes
the resourceVersion of the state it wants judged), then waits here until

1. the operator's informer of that resource has delivered every change up to that
   resourceVersion (`ooto_informer_resource_version{resource}`, set after delivery), and
2. its actors have handled what they were told: every mailbox empty and no API request in flight,
   seen continuously for longer than the status debounce (a debounced status write is due at
   most that long after the message that asked for it).

Only then is "no write" evidence: the operator saw the change and answered it with nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pykka

from tests.integration.conftest import RunningOperator
from tests.integration.scenario_support import eventually


def version_of(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def observed(running: RunningOperator, resource: str) -> int:
    gauge = running.metrics.observed_version.labels(resource=resource)
    return int(gauge._value.get())


async def has_seen(
    running: RunningOperator, resource: str, resource_version: int, timeout: float = 30.0
) -> None:
    """Return once the operator has seen `resource` up to `resource_version` and acted on it."""

    async def reached() -> bool:
        return observed(running, resource) >= resource_version

    await eventually(reached, timeout=timeout, interval=0.02)
    await idle(running, timeout)


def _busy(running: RunningOperator) -> bool:
    inboxes = (ref.actor_inbox for ref in pykka.ActorRegistry.get_all())
    return running.api.in_flight > 0 or not all(inbox.empty() for inbox in inboxes)


async def idle(running: RunningOperator, timeout: float = 30.0) -> None:
    """Return once no actor has a message waiting and no request is in flight, for longer than
    the operator's status debounce (2x, at least 0.2 s)."""
    hold = max(2 * running.operator.settings.status_debounce_seconds, 0.2)
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < hold:
        if time.monotonic() > deadline:
            raise AssertionError(f"the operator stayed busy for {timeout}s")
        await asyncio.sleep(0.01)
        if _busy(running):
            quiet_since = time.monotonic()
