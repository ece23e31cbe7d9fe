"""Event aggregation: which records fold into one Event, the bounds on what waits, and a
writer that survives an unexpected error."""

import asyncio
from typing import Any

from ooto.kube.backoff import Backoff
from ooto.kube.events import MAX_MESSAGE, EventRecorder, aggregation_key, event_timestamp
from ooto.kube.leader import micro_time
from ooto.metrics import Metrics


def subject(name: str = "m", uid: str = "u1", ns: str = "ns") -> dict[str, Any]:
    return {"kind": "Module", "metadata": {"name": name, "namespace": ns, "uid": uid}}


def test_same_object_type_reason_and_message_fold() -> None:
    key = aggregation_key(subject(), "Warning", "NoMapping", "kernel 6.1")
    assert key == aggregation_key(subject(), "Warning", "NoMapping", "kernel 6.1")


def test_any_difference_makes_a_separate_event() -> None:
    base = aggregation_key(subject(), "Warning", "NoMapping", "kernel 6.1")
    assert base != aggregation_key(subject(), "Warning", "NoMapping", "kernel 6.2")
    assert base != aggregation_key(subject(), "Warning", "Other", "kernel 6.1")
    assert base != aggregation_key(subject(), "Normal", "NoMapping", "kernel 6.1")
    assert base != aggregation_key(subject(name="n"), "Warning", "NoMapping", "kernel 6.1")
    assert base != aggregation_key(subject(ns="o"), "Warning", "NoMapping", "kernel 6.1")
    # Same name, recreated object: a new uid is a new subject.
    assert base != aggregation_key(subject(uid="u2"), "Warning", "NoMapping", "kernel 6.1")


def test_messages_differing_only_past_the_cut_fold() -> None:
    long_a = "x" * MAX_MESSAGE + "a"
    long_b = "x" * MAX_MESSAGE + "b"
    assert aggregation_key(subject(), "Normal", "R", long_a) == aggregation_key(
        subject(), "Normal", "R", long_b
    )


def test_waiting_repeats_take_no_extra_room_and_overflow_is_dropped() -> None:
    recorder = EventRecorder(api=None, max_pending=2)  # type: ignore[arg-type]  # never writes
    for _ in range(100):
        recorder.record(subject(), "Normal", "Same", "again")
    assert (recorder.pending, recorder.dropped) == (1, 0)
    recorder.record(subject(), "Normal", "Other", "one")
    recorder.record(subject(), "Normal", "Third", "two")
    assert (recorder.pending, recorder.dropped) == (2, 1)


def test_timestamp_formats() -> None:
    assert event_timestamp(0) == "1970-01-01T00:00:00Z"
    assert len(micro_time()) == len("2024-01-01T00:00:00.000000Z")


class FlakyEventsApi:
    """`KubeApi.create` for Events that fails once with a non-Kubernetes error (a bug's shape)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.failed = False

    async def create(self, resource: Any, body: dict[str, Any]) -> dict[str, Any]:
        if not self.failed:
            self.failed = True
            raise TypeError("something unexpected")
        self.created.append(body["reason"])
        return {"metadata": {"name": body["metadata"]["name"], "namespace": "ns"}}


async def test_an_unexpected_error_restarts_the_writer_and_later_events_are_written() -> None:
    api = FlakyEventsApi()
    metrics = Metrics()
    recorder = EventRecorder(api, observer=metrics)  # type: ignore[arg-type]
    recorder.task._backoff = Backoff(0.01, 0.01)  # restart at once in a test
    recorder.start()
    try:
        recorder.record(subject(), "Warning", "First", "lost with the failure")
        recorder.record(subject(), "Warning", "Second", "written after the restart")
        await asyncio.wait_for(recorder.flush(), 5)
        assert api.created == ["Second"]
        assert metrics.task_failures.labels(task="event-recorder")._value.get() == 1
        recorder.record(subject(), "Normal", "Third", "and the next one")
        await asyncio.wait_for(recorder.flush(), 5)
        assert api.created == ["Second", "Third"]
    finally:
        await recorder.stop()
