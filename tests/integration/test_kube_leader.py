"""Leader election between candidates on one Lease: exactly one leads; a standby takes over
when the leader stops renewing (within the lease duration) or at once when it releases; a leader
that sees another holder stops leading at once; a renewal that fails with anything ends
leadership before the supervisor starts the elector again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from ooto.kube import LEASES, KubeApi, LeaderElector, make_api_client
from ooto.kube.backoff import Backoff
from ooto.kube.tasks import SupervisedTask
from ooto.metrics import Metrics
from ooto.testing.cluster import LocalCluster

LEASE_DURATION = 3.0
RENEW_DEADLINE = 2.0
RETRY_PERIOD = 0.5


@pytest_asyncio.fixture(loop_scope="session")
async def kube(cluster: LocalCluster) -> AsyncIterator[KubeApi]:
    api = KubeApi(await make_api_client(str(cluster.admin_kubeconfig)))
    yield api
    await api.close()


class Candidate:
    """A LeaderElector plus a log of its callbacks with their times."""

    def __init__(self, api: KubeApi, namespace: str, identity: str) -> None:
        self.log: list[tuple[str, float]] = []
        self.changed = asyncio.Event()
        self.elector = LeaderElector(
            api,
            namespace,
            "ooto-leader",
            identity,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
            on_started_leading=lambda: self._note("started"),
            on_stopped_leading=lambda: self._note("stopped"),
        )

    def _note(self, what: str) -> None:
        self.log.append((what, time.monotonic()))
        self.changed.set()

    async def wait_for(self, what: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while not any(entry == what for entry, _ in self.log):
                self.changed.clear()
                await self.changed.wait()
        return next(at for entry, at in self.log if entry == what)


async def first_leader(a: Candidate, b: Candidate, timeout: float = 5.0) -> Candidate:
    waits = {asyncio.create_task(c.wait_for("started", timeout)): c for c in (a, b)}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    winner = done.pop()
    await winner  # raises TimeoutError if nobody started leading
    return waits[winner]


async def test_one_leads_and_a_standby_takes_over_when_the_leader_dies(
    kube: KubeApi, namespace: str
) -> None:
    a, b = Candidate(kube, namespace, "a"), Candidate(kube, namespace, "b")
    tasks = [a.elector.start(), b.elector.start()]
    try:
        leader = await first_leader(a, b)
        standby = b if leader is a else a
        await asyncio.sleep(LEASE_DURATION + 1)  # the standby keeps standing by
        assert leader.elector.is_leader and not standby.elector.is_leader
        assert standby.log == []

        # The leader's process dies: no release, renewals just stop.
        died_at = time.monotonic()
        (tasks[0] if leader is a else tasks[1]).cancel()
        took_over_at = await standby.wait_for("started", LEASE_DURATION + 3)
        takeover = took_over_at - died_at
        print(f"\ntakeover after the leader died: {takeover:.2f}s (lease {LEASE_DURATION}s)")
        assert takeover <= LEASE_DURATION + RETRY_PERIOD * 1.2 + 3.0  # slack for a loaded CI box
        lease = await kube.get(LEASES, "ooto-leader", namespace)
        assert lease["spec"]["holderIdentity"] == standby.elector.identity
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_clean_stop_releases_and_the_standby_takes_over_at_once(
    kube: KubeApi, namespace: str
) -> None:
    a, b = Candidate(kube, namespace, "a"), Candidate(kube, namespace, "b")
    a.elector.start()
    await a.wait_for("started", 5)
    b.elector.start()
    try:
        await asyncio.sleep(RETRY_PERIOD * 2)
        stopped_at = time.monotonic()
        await a.elector.stop()
        assert [entry for entry, _ in a.log] == ["started", "stopped"]
        took_over_at = await b.wait_for("started", LEASE_DURATION)
        print(f"\ntakeover after a release: {took_over_at - stopped_at:.2f}s")
        assert took_over_at - stopped_at < RETRY_PERIOD * 1.2 + 2.0  # slack for CI load
    finally:
        await a.elector.stop()
        await b.elector.stop()


async def test_a_leader_that_sees_another_holder_stops_at_once(
    kube: KubeApi, namespace: str
) -> None:
    a = Candidate(kube, namespace, "a")
    a.elector.start()
    try:
        await a.wait_for("started", 5)
        lease = await kube.get(LEASES, "ooto-leader", namespace)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 3600
        await kube.replace(LEASES, lease)
        taken_at = time.monotonic()
        stopped_at = await a.wait_for("stopped", RENEW_DEADLINE + 1)
        assert stopped_at - taken_at <= RETRY_PERIOD + 2.0  # slack for CI load
        assert not a.elector.is_leader
    finally:
        await a.elector.stop()
    lease = await kube.get(LEASES, "ooto-leader", namespace)
    assert lease["spec"]["holderIdentity"] == "intruder"  # stop() releases only its own lease


class FailsOneRenewal(KubeApi):
    """The real client, whose next Lease update raises a non-Kubernetes error once asked to."""

    armed = False

    async def replace(self, res: Any, obj: Any, *, subresource: str = "") -> Any:
        if self.armed:
            self.armed = False
            raise RuntimeError("a bug in a renewal")
        return await super().replace(res, obj, subresource=subresource)


async def test_a_renewal_that_raises_anything_ends_leadership_first_then_restarts(
    cluster: LocalCluster, namespace: str
) -> None:
    api = FailsOneRenewal(await make_api_client(str(cluster.admin_kubeconfig)))
    metrics = Metrics()
    leader = Candidate(api, namespace, "a")
    leader.elector.task = SupervisedTask(
        "leader-election:test", leader.elector.run, observer=metrics, backoff=Backoff(0.1, 0.1)
    )
    leader.elector.start()
    try:
        await leader.wait_for("started", 5)
        api.armed = True
        await leader.wait_for("stopped", 5)  # told before anything else runs: stop acting
        async with asyncio.timeout(10):
            while [entry for entry, _ in leader.log] != ["started", "stopped", "started"]:
                leader.changed.clear()
                await leader.changed.wait()
        assert metrics.task_failures.labels(task="leader-election:test")._value.get() == 1
    finally:
        await leader.elector.stop()
        await api.close()
