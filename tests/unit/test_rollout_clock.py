"""The rollout's own reaction times (actors/rollout_clock.py), as the metric and the upgrade
benchmark report them."""

from __future__ import annotations

from actors.rollout_clock import StepClock


def clock() -> tuple[StepClock, list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    return StepClock(lambda step, seconds: seen.append((step, round(seconds, 3)))), seen


def test_label_back_runs_from_the_ready_pod_event_to_the_acknowledged_write() -> None:
    c, seen = clock()
    c.pod_seen("a", 10.0)  # the new pod created
    c.pod_seen("a", 12.0)  # ... and Ready: the event the upgrade reacts to
    c.new_pod_ready("a")
    c.done("a", 12.04)
    assert seen == [("label_back", 0.04)]


def test_next_start_runs_from_a_freed_slot_to_the_waiting_node_s_label_off() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.done("a", 1.01)  # a's slot is free
    c.granted("b")
    c.written("b", 1.03)  # b's label off acknowledged
    c.written("b", 5.0)  # b's later steps are not slot waits
    assert seen == [("label_back", 0.01), ("next_start", 0.02)]


def test_slots_nobody_waited_for_do_not_count_against_a_later_start() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.done("a", 1.01)
    c.nobody_waits()  # the rollout's last node: no candidate left
    c.granted("b")  # a new generation, minutes later
    c.written("b", 300.0)
    assert seen == [("label_back", 0.01)]


def test_an_upgrade_that_ended_otherwise_measures_nothing() -> None:
    c, seen = clock()
    c.pod_seen("a", 1.0)
    c.new_pod_ready("a")
    c.forget("a")  # failed, aborted or left
    c.done("a", 9.0)
    c.granted("b")
    c.forget("b")
    c.written("b", 9.0)
    c.new_pod_ready("c")  # no pod event was ever seen for c (a resumed operator)
    c.done("c", 9.0)
    assert seen == []
