"""Supervised tasks: any failure is logged, counted and followed by a restart after a backoff;
a task that keeps failing (or ended) is what liveness reports; stopping is not a failure."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ooto.kube.backoff import Backoff
from ooto.kube.tasks import SupervisedTask
from ooto.metrics import Metrics


def failures(metrics: Metrics, task: str) -> float:
    return metrics.task_failures.labels(task=task)._value.get()


async def test_a_task_that_raises_anything_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise KeyError("boom")  # not a KubeError: the kind of bug nothing used to catch
        healthy.set()
        await asyncio.Event().wait()

    metrics = Metrics()
    task = SupervisedTask("flaky", flaky, observer=metrics, backoff=Backoff(0.01, 0.02))
    task.start()
    await asyncio.wait_for(healthy.wait(), 5)
    assert runs == 3 and task.failures == 2 and failures(metrics, "flaky") == 2
    assert task.problem() is None  # two in a row is under the limit
    assert sum("task flaky failed; restarting it" in r.getMessage() for r in caplog.records) == 2
    assert all(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)
    await task.stop()
    assert task.problem() is None and failures(metrics, "flaky") == 2  # a stop is no failure


async def test_a_task_that_keeps_failing_is_a_problem_until_it_runs_steadily() -> None:
    fail = True
    ran = asyncio.Event()

    async def broken() -> None:
        ran.set()
        if fail:
            raise RuntimeError("still broken")
        await asyncio.Event().wait()

    task = SupervisedTask("broken", broken, backoff=Backoff(0.01, 0.01), failure_limit=3)
    task.start()
    try:
        while task.failures_in_a_row < 3:
            ran.clear()
            await asyncio.wait_for(ran.wait(), 5)
        problem = task.problem()
        assert problem is not None
        assert "broken failed 3 times in a row" in problem and "still broken" in problem
    finally:
        await task.stop()


async def test_a_forever_task_that_returns_is_restarted_too() -> None:
    calls = 0
    third = asyncio.Event()

    async def returns() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
            await asyncio.Event().wait()

    task = SupervisedTask("returns", returns, backoff=Backoff(0.01, 0.01))
    task.start()
    await asyncio.wait_for(third.wait(), 5)
    assert task.failures == 2 and task.last_error == "returned"
    await task.stop()


async def test_a_long_run_resets_the_count_of_failures_in_a_row() -> None:
    calls = 0
    done = asyncio.Event()

    async def fails_late() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            done.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0.05 if calls == 3 else 0)  # the third run lasts "long enough"
        raise RuntimeError("late")

    task = SupervisedTask(
        "late", fails_late, backoff=Backoff(0.01, 0.01), failure_limit=3, steady_after=0.04
    )
    task.start()
    await asyncio.wait_for(done.wait(), 5)
    assert task.failures == 3 and task.failures_in_a_row == 1 and task.problem() is None
    await task.stop()


async def test_a_supervisor_that_itself_dies_is_reported_as_ended() -> None:
    class BrokenObserver:
        def task_failed(self, task: str) -> None:
            raise RuntimeError("metrics broke")

    async def fails() -> None:
        raise ValueError("x")

    task = SupervisedTask("orphan", fails, observer=BrokenObserver())
    with pytest.raises(RuntimeError, match="metrics broke"):
        await task.start()
    assert task.problem() == "task orphan ended"
    await task.stop()
    assert task.problem() is None
