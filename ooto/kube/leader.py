"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Expiry is judged by the local monotonic clock from the moment *we* last saw the Lease change, not
by the timestamps in it, so clock skew between replicas does not matter. Every write carries the
resourceVersion we read (optimistic concurrency): two candidates never both win.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from ooto.kube.client import JsonObj, KubeApi
from ooto.kube.errors import AlreadyExists, Conflict, KubeError, NotFound
from ooto.kube.resources import LEASES
from ooto.kube.tasks import SupervisedTask, TaskObserver

log = logging.getLogger(__name__)


class _Attempt(enum.Enum):
    HELD = "held"  # we hold the lease now
    TAKEN = "taken"  # someone else holds an unexpired lease
    FAILED = "failed"  # error or lost race; try again


def micro_time(moment: datetime.datetime | None = None) -> str:
    """The API's MicroTime format."""
    moment = moment or datetime.datetime.now(tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, renew and release one Lease; call back when leadership starts and stops."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        observer: TaskObserver | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._leading = False
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0
        self.task = SupervisedTask(f"leader-election:{name}", self.run, observer=observer)

    @property
    def is_leader(self) -> bool:
        return self._leading

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in a supervised task (restarted after a failure)."""
        return self.task.start()

    async def stop(self) -> None:
        """Clean shutdown: stop renewing and hand the Lease over at once (release)."""
        await self.task.stop()
        await self.release()

    async def run(self) -> None:
        """Forever: wait to acquire, lead while renewals succeed, then stand by again.

        However a run ends (a failure, or `stop`), leadership ends with it: the callback is told
        before anything else can run, so the operator never acts on a Lease nobody renews."""
        try:
            while True:
                await self._acquire()
                log.info("leader election %s: %s is the leader", self.name, self.identity)
                self._set_leading(True)
                await self._renew_until_lost()
                log.warning("leader election %s: %s lost the lease", self.name, self.identity)
                self._set_leading(False)
        finally:
            if self._leading:
                self._set_leading(False)

    async def release(self) -> None:
        """Give the Lease up if we hold it, so a standby need not wait for it to expire."""
        try:
            lease = await self._api.get(LEASES, self.name, self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time()
            lease["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
            }
            await self._api.replace(LEASES, lease)
        except KubeError as exc:
            log.warning("leader election %s: release failed: %s", self.name, exc)

    # -- the two phases ---------------------------------------------------------------------

    async def _acquire(self) -> None:
        while True:
            if await self._attempt_quietly() is _Attempt.HELD:
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() / 5))

    async def _renew_until_lost(self) -> None:
        """Return once renewing failed for `renew_deadline` or someone else took the Lease."""
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                remaining = last_renewal + self.renew_deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    outcome = await asyncio.wait_for(self._attempt_quietly(), remaining)
                except TimeoutError:
                    return
                if outcome is _Attempt.HELD:
                    last_renewal = time.monotonic()
                    break
                if outcome is _Attempt.TAKEN:
                    return
                await asyncio.sleep(min(self.retry_period, max(remaining, 0)) / 2)

    # -- one try ----------------------------------------------------------------------------

    async def _attempt_quietly(self) -> _Attempt:
        try:
            return await self._attempt()
        except KubeError as exc:
            log.info("leader election %s: attempt failed: %s", self.name, exc)
            return _Attempt.FAILED

    async def _attempt(self) -> _Attempt:
        """client-go's tryAcquireOrRenew: one GET and at most one write."""
        try:
            lease = await self._api.get(LEASES, self.name, self.namespace)
        except NotFound:
            return await self._create()
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return _Attempt.TAKEN
        lease["spec"] = self._spec(spec if holder == self.identity else None, spec)
        try:
            updated = await self._api.replace(LEASES, lease)
        except Conflict:
            return _Attempt.FAILED
        self._observe(updated.get("spec") or {})
        return _Attempt.HELD

    async def _create(self) -> _Attempt:
        body: JsonObj = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(None, {}),
        }
        try:
            created = await self._api.create(LEASES, body)
        except AlreadyExists:
            return _Attempt.FAILED
        self._observe(created.get("spec") or {})
        return _Attempt.HELD

    def _spec(self, ours: dict[str, Any] | None, previous: dict[str, Any]) -> dict[str, Any]:
        """The spec we write: a renewal of our own lease, or a takeover (`ours` is None)."""
        now = micro_time()
        transitions = int(previous.get("leaseTransitions") or 0)
        if ours is None and previous:
            transitions += 1
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_duration),
            "acquireTime": (ours or {}).get("acquireTime") or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed_spec:
            self._observed_spec = dict(spec)
            self._observed_at = time.monotonic()

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        callback = self._on_started if leading else self._on_stopped
        try:
            callback()
        except Exception:
            log.exception("leader election %s: callback failed", self.name)
