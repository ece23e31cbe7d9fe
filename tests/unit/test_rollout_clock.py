"""The rollout's own reaction times (actors/rollout_clock.py), as the metric and the upgrade
benchmark report them."""

from __future__ import annotations

from actors.rollout_clock import StepClock


def clock() -> tuple[StepClock, list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    return StepClock(lambda step, seconds: seen.append((step, round(seconds, 3)))), seen


def test_label_back_runs_from_the_ready_pod_event_to_the_label_back_write_starting() -> None:
    c, seen = clock()
    c.pod_seen("a", 10.0)  # the new pod created
    c.pod_seen("a", 12.0)  # ... and Ready: the event the upgrade reacts to
    c.new_pod_ready("a")
    c.written("a", 12.004, 12.05)  # the API server's 46 ms are not the operator's
    assert seen == [("label_back", 0.004)]


def test_next_start_runs_from_the_answer_that_freed_a_slot_to_the_next_label_off() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.written("a", 1.01, 1.05)
    c.done("a")  # a's slot is free since 1.05
    c.granted("b")
    c.written("b", 1.07, 1.2)  # b's label off started
    c.written("b", 5.0, 5.1)  # b's later steps are no slot waits
    assert seen == [("label_back", 0.01), ("next_start", 0.02)]


def test_slots_nobody_waited_for_do_not_count_against_a_later_start() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.written("a", 1.01, 1.02)
    c.done("a")
    c.nobody_waits()  # the rollout's last node: no candidate left
    c.granted("b")  # a new generation, minutes later
    c.written("b", 300.0, 300.1)
    assert seen == [("label_back", 0.01)]


def test_an_upgrade_that_ended_otherwise_measures_nothing() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.forget("a")  # failed, aborted or left
    c.written("a", 9.0, 9.1)
    c.done("a")
    c.granted("b")  # no slot was freed
    c.written("b", 9.0, 9.1)
    c.new_pod_ready("c")  # no pod event was ever seen for c (a resumed operator)
    c.written("c", 9.0, 9.1)
    c.written("d", 0.0, 0.0)  # a write that never started on the loop
    assert seen == []
