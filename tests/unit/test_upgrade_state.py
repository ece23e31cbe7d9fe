"""One node's upgrade state machine: every (state, event) pair, the late and duplicate ones
included, and the Node record that lets a restarted operator resume."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ooto.domain.upgrade import record
from ooto.domain.upgrade.state import (
    ACTIVE,
    Aborted,
    ArmDeadline,
    CordonLifted,
    DeadlinePassed,
    DeleteLoaderPod,
    Event,
    EvictPods,
    NewPodReady,
    NodeUpgrade,
    NodeUpgradeState,
    PodsGone,
    Reconsidered,
    ReleaseSlot,
    ReportDone,
    ReportFailed,
    SlotGranted,
    Timeouts,
    WriteFailed,
    WriteNode,
    Written,
    ready_label_wanted,
    resumed,
    transition,
)

S = NodeUpgradeState
LIMITS = Timeouts(pods_gone=300, ready=600)
T0 = 1000.0
GRANT = SlotGranted(digest="d2", generation=2, cordon=True, now=T0)
EVENTS: list[Event] = [
    GRANT,
    Written(),
    WriteFailed("boom"),
    PodsGone(loader_pod="old-uid", now=T0 + 5),
    NewPodReady(),
    DeadlinePassed(now=T0 + 10_000),
    Aborted(),
    Reconsidered(held=False, outdated=True),  # still wanted: never changes anything
    CordonLifted(),
]
WITHDRAWING = [Reconsidered(held=True, outdated=True), Reconsidered(held=False, outdated=False)]


def at(state: S, *, written: bool = True, cordoned: bool = True) -> NodeUpgrade:
    return NodeUpgrade(
        state,
        digest="d2",
        generation=2,
        cordoned=cordoned,
        old_pod="old-uid",
        since=T0,
        written=written,
    )


class TestTheHappyPath:
    """A node goes label off + cordon -> evict -> delete loader -> new pod Ready -> label back."""

    def test_a_slot_takes_the_label_off_and_cordons_in_one_write(self) -> None:
        upgrade, actions = transition(NodeUpgrade(), GRANT, LIMITS)
        assert upgrade.state is S.POD_DELETION_REQUIRED and not upgrade.written
        assert upgrade.cordoned and upgrade.digest == "d2" and upgrade.since == T0
        assert actions == [WriteNode(upgrade, ready_label=False, unschedulable=True)]

    def test_a_node_already_cordoned_is_not_cordoned_again_nor_uncordoned_later(self) -> None:
        grant = replace(GRANT, cordon=False)
        upgrade, actions = transition(NodeUpgrade(), grant, LIMITS)
        assert actions == [WriteNode(upgrade, ready_label=False, unschedulable=None)]
        upgrade = replace(upgrade, state=S.POD_RESTART_REQUIRED, written=True)
        upgrade, actions = transition(upgrade, NewPodReady(), LIMITS)
        assert actions == [WriteNode(None, ready_label=True, unschedulable=None)]

    def test_evictions_start_only_once_the_label_is_off(self) -> None:
        upgrade, actions = transition(at(S.POD_DELETION_REQUIRED, written=False), Written(), LIMITS)
        assert upgrade.written
        assert actions == [EvictPods(), ArmDeadline(T0 + 300)]

    def test_pods_gone_records_the_old_loader_pod_before_deleting_it(self) -> None:
        upgrade, actions = transition(
            at(S.POD_DELETION_REQUIRED), PodsGone("old-uid", T0 + 5), LIMITS
        )
        assert upgrade.state is S.POD_RESTART_REQUIRED and upgrade.old_pod == "old-uid"
        assert upgrade.since == T0 + 5 and not upgrade.written
        assert actions == [WriteNode(upgrade)]
        upgrade, actions = transition(upgrade, Written(), LIMITS)
        assert actions == [DeleteLoaderPod("old-uid"), ArmDeadline(T0 + 5 + 600)]

    def test_no_loader_pod_left_to_delete_just_waits_for_the_new_one(self) -> None:
        upgrade, _ = transition(at(S.POD_DELETION_REQUIRED), PodsGone("", T0), LIMITS)
        _, actions = transition(upgrade, Written(), LIMITS)
        assert actions == [ArmDeadline(T0 + 600)]

    def test_the_new_pod_ready_puts_the_label_back_and_uncordons_then_frees_the_slot(self) -> None:
        upgrade, actions = transition(at(S.POD_RESTART_REQUIRED), NewPodReady(), LIMITS)
        assert upgrade.state is S.UNCORDON_REQUIRED
        assert actions == [WriteNode(None, ready_label=True, unschedulable=False)]
        upgrade, actions = transition(upgrade, Written(), LIMITS)
        assert upgrade == NodeUpgrade()
        assert actions == [ReleaseSlot(), ReportDone()]


class TestFailures:
    def test_pods_that_do_not_leave_in_time_fail_the_node_and_keep_it_cordoned(self) -> None:
        upgrade, actions = transition(at(S.POD_DELETION_REQUIRED), DeadlinePassed(T0 + 300), LIMITS)
        assert upgrade.state is S.FAILED and upgrade.cordoned and "300s" in upgrade.cause
        assert actions == [WriteNode(upgrade), ReleaseSlot(), ReportFailed(upgrade.cause)]
        assert all(a.unschedulable is None for a in actions if isinstance(a, WriteNode))

    def test_a_new_pod_not_ready_in_time_fails_the_node(self) -> None:
        upgrade, actions = transition(at(S.POD_RESTART_REQUIRED), DeadlinePassed(T0 + 600), LIMITS)
        assert upgrade.state is S.FAILED and "not Ready within 600s" in upgrade.cause
        assert ReportFailed(upgrade.cause) in actions

    @pytest.mark.parametrize("state", [S.POD_DELETION_REQUIRED, S.POD_RESTART_REQUIRED])
    def test_an_early_deadline_tick_changes_nothing(self, state: S) -> None:
        upgrade = at(state)
        assert transition(upgrade, DeadlinePassed(T0 + 1), LIMITS) == (upgrade, [])

    def test_a_failed_write_is_retried_with_the_same_write(self) -> None:
        upgrade, actions = transition(NodeUpgrade(), GRANT, LIMITS)
        again, retry = transition(upgrade, WriteFailed("conflict"), LIMITS)
        assert again == upgrade and retry == actions

    def test_a_failure_s_record_is_written_again_until_it_is_on_the_node(self) -> None:
        """Else a restart would resume the step that failed (and fail it again, late)."""
        failed, actions = transition(at(S.POD_RESTART_REQUIRED), DeadlinePassed(T0 + 601), LIMITS)
        write = actions[0]
        assert isinstance(write, WriteNode) and not failed.written
        assert transition(failed, WriteFailed("500"), LIMITS) == (failed, [write])
        assert transition(failed, Written(), LIMITS) == (replace(failed, written=True), [])

    def test_a_new_generation_retries_a_failed_node_keeping_ooto_s_cordon(self) -> None:
        failed = replace(at(S.FAILED), cause="x")
        upgrade, actions = transition(failed, replace(GRANT, cordon=False, generation=3), LIMITS)
        assert upgrade.state is S.POD_DELETION_REQUIRED and upgrade.cordoned
        assert upgrade.generation == 3 and upgrade.cause == ""
        assert actions == [WriteNode(upgrade, ready_label=False, unschedulable=True)]


class TestAborts:
    @pytest.mark.parametrize("state", sorted(ACTIVE))
    def test_a_node_that_leaves_mid_upgrade_frees_its_slot_and_ooto_s_cordon(
        self, state: S
    ) -> None:
        upgrade, actions = transition(at(state), Aborted(), LIMITS)
        assert upgrade == NodeUpgrade()
        assert actions == [WriteNode(None, unschedulable=False), ReleaseSlot()]

    def test_a_failed_node_that_leaves_is_cleaned_up_but_holds_no_slot(self) -> None:
        _, actions = transition(at(S.FAILED, cordoned=False), Aborted(), LIMITS)
        assert actions == [WriteNode(None, unschedulable=None)]


class TestWithdrawn:
    """The Module changed under a node mid-upgrade (image reverted, Manual mode)."""

    @pytest.mark.parametrize("event", WITHDRAWING, ids=str)
    @pytest.mark.parametrize("written", [True, False])
    def test_a_node_whose_loader_is_still_there_is_withdrawn_and_uncordoned(
        self, event: Reconsidered, written: bool
    ) -> None:
        upgrade = at(S.POD_DELETION_REQUIRED, written=written)
        assert transition(upgrade, event, LIMITS) == (
            NodeUpgrade(),
            [WriteNode(None, unschedulable=False), ReleaseSlot()],
        )

    @pytest.mark.parametrize("event", WITHDRAWING, ids=str)
    def test_an_admin_s_cordon_stays_when_a_node_is_withdrawn(self, event: Reconsidered) -> None:
        upgrade = at(S.POD_DELETION_REQUIRED, cordoned=False)
        _, actions = transition(upgrade, event, LIMITS)
        assert actions == [WriteNode(None, unschedulable=None), ReleaseSlot()]

    @pytest.mark.parametrize("event", WITHDRAWING, ids=str)
    @pytest.mark.parametrize(
        "state", [S.IDLE, S.POD_RESTART_REQUIRED, S.UNCORDON_REQUIRED, S.FAILED]
    )
    @pytest.mark.parametrize("written", [True, False])
    def test_once_the_loader_pod_went_the_node_finishes(
        self, event: Reconsidered, state: S, written: bool
    ) -> None:
        """Its module is unloaded already: only the new loader pod puts it back."""
        upgrade = at(state, written=written) if state is not S.IDLE else NodeUpgrade()
        assert transition(upgrade, event, LIMITS) == (upgrade, [])


class TestCordonLifted:
    """An admin uncordons a node ooto cordoned, mid-upgrade or after its failure."""

    @pytest.mark.parametrize("state", [*ACTIVE, S.FAILED])
    def test_ooto_forgets_its_cordon_and_records_that_it_did(self, state: S) -> None:
        upgrade, actions = transition(at(state), CordonLifted(), LIMITS)
        assert upgrade == replace(at(state), cordoned=False)
        assert actions == [WriteNode(upgrade)]  # the record only: no cordon, no label
        assert transition(upgrade, Written(), LIMITS) == (upgrade, [])  # nothing is redone

    def test_it_then_never_uncordons_the_node(self) -> None:
        upgrade, _ = transition(at(S.POD_RESTART_REQUIRED), CordonLifted(), LIMITS)
        _, actions = transition(upgrade, NewPodReady(), LIMITS)
        assert actions == [WriteNode(None, ready_label=True, unschedulable=None)]

    @pytest.mark.parametrize("state", [*ACTIVE, S.FAILED])
    def test_a_node_ooto_did_not_cordon_or_whose_cordon_is_not_on_yet_is_left(
        self, state: S
    ) -> None:
        for upgrade in (at(state, cordoned=False), at(state, written=False)):
            assert transition(upgrade, CordonLifted(), LIMITS) == (upgrade, [])

    def test_a_retry_after_a_failure_cordons_afresh_and_owns_that_cordon(self) -> None:
        failed, _ = transition(at(S.FAILED), CordonLifted(), LIMITS)
        retry, actions = transition(failed, GRANT, LIMITS)
        assert retry.cordoned and actions[0] == WriteNode(
            replace(retry, written=False), ready_label=False, unschedulable=True
        )


# Every pair the tests above do not name must change nothing: late, duplicate, out of order.
MEANINGFUL = {
    (S.IDLE, "SlotGranted"),
    (S.FAILED, "SlotGranted"),
    (S.POD_DELETION_REQUIRED, "PodsGone"),
    (S.POD_DELETION_REQUIRED, "DeadlinePassed"),
    (S.POD_RESTART_REQUIRED, "NewPodReady"),
    (S.POD_RESTART_REQUIRED, "DeadlinePassed"),
    *((state, "Aborted") for state in (*ACTIVE, S.FAILED)),
    *((state, "WriteFailed") for state in (*ACTIVE, S.FAILED)),
    *((state, "CordonLifted") for state in (*ACTIVE, S.FAILED)),
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_other_pair_on_a_written_state_is_a_no_op(state: S, event: Event) -> None:
    if (state, type(event).__name__) in MEANINGFUL:
        return
    upgrade = at(state) if state is not S.IDLE else NodeUpgrade()
    assert transition(upgrade, event, LIMITS) == (upgrade, [])


@pytest.mark.parametrize("state", sorted(ACTIVE))
@pytest.mark.parametrize(
    "event", [PodsGone("u", T0), NewPodReady(), DeadlinePassed(T0 + 10_000)], ids=str
)
def test_nothing_happens_before_the_state_s_record_is_on_the_node(state: S, event: Event) -> None:
    upgrade = at(state, written=False)
    assert transition(upgrade, event, LIMITS) == (upgrade, [])


def test_a_duplicate_written_does_not_evict_or_delete_twice() -> None:
    for state in (S.POD_DELETION_REQUIRED, S.POD_RESTART_REQUIRED):
        upgrade = at(state)
        assert transition(upgrade, Written(), LIMITS) == (upgrade, [])


class TestResume:
    """A restarted operator reads the record from the Node and redoes only the current step."""

    @pytest.mark.parametrize("state", list(S))
    def test_every_record_survives_the_annotation(self, state: S) -> None:
        upgrade = replace(at(state), cause="why" if state is S.FAILED else "")
        decoded = record.decode(record.encode(upgrade))
        if state is S.IDLE:
            assert decoded is None
        else:
            assert decoded == upgrade

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "{",
            "[]",
            '{"state":"sleeping"}',
            '{"state":"upgrade-failed","cordoned":"yes"}',
            '{"digest":"x"}',
            '{"state":"upgrade-failed","generation":true}',
        ],
    )
    def test_a_record_ooto_did_not_write_is_no_record(self, text: str) -> None:
        assert record.decode(text) is None

    def test_resuming_mid_eviction_evicts_again_with_the_original_deadline(self) -> None:
        upgrade, actions = resumed(at(S.POD_DELETION_REQUIRED), LIMITS)
        assert upgrade.written and actions == [EvictPods(), ArmDeadline(T0 + 300)]

    def test_resuming_mid_restart_deletes_only_the_recorded_pod(self) -> None:
        _, actions = resumed(at(S.POD_RESTART_REQUIRED), LIMITS)
        assert actions == [DeleteLoaderPod("old-uid"), ArmDeadline(T0 + 600)]

    def test_resuming_a_failed_node_does_nothing(self) -> None:
        upgrade, actions = resumed(at(S.FAILED, written=False), LIMITS)
        assert upgrade.state is S.FAILED and upgrade.written and actions == []


class TestEditedRecords:
    """While ooto runs, the record it holds is the truth; one edited on the Node is put back."""

    @pytest.mark.parametrize("state", [*ACTIVE, S.FAILED])
    def test_the_record_ooto_wrote_is_not_edited(self, state: S) -> None:
        held = at(state)
        assert not record.edited(record.encode(held, "uid-1"), held, "uid-1")
        assert not record.edited(record.encode(held), held, "uid-1")  # an older ooto's: no owner

    @pytest.mark.parametrize("text", ["{not json", '{"state":"upgrade-failed"}', "", None])
    def test_garbage_or_another_record_is_edited(self, text: str | None) -> None:
        held = at(S.POD_RESTART_REQUIRED)
        assert record.edited(text, held, "uid-1")

    @pytest.mark.parametrize("text", ["{not json", record.encode(at(S.FAILED)), "x"])
    def test_any_record_on_a_node_ooto_holds_none_for_is_edited(self, text: str) -> None:
        assert record.edited(text, NodeUpgrade(), "uid-1")
        assert not record.edited(None, NodeUpgrade(), "uid-1")
        assert not record.edited("", NodeUpgrade(), "uid-1")

    @pytest.mark.parametrize("state", [*ACTIVE, S.FAILED])
    def test_nothing_is_edited_while_ooto_s_own_write_is_on_its_way(self, state: S) -> None:
        assert not record.edited("{not json", at(state, written=False), "uid-1")

    def test_a_record_of_another_module_of_that_name_is_the_cleaner_s(self) -> None:
        text = record.encode(at(S.POD_DELETION_REQUIRED), "uid-0")
        assert not record.edited(text, NodeUpgrade(), "uid-1")


@pytest.mark.parametrize(
    ("state", "ready", "wanted"),
    [
        (S.IDLE, True, True),
        (S.IDLE, False, False),
        (S.FAILED, True, True),
        (S.POD_DELETION_REQUIRED, True, False),
        (S.POD_RESTART_REQUIRED, True, False),
        (S.UNCORDON_REQUIRED, True, False),
    ],
)
def test_the_ready_label_follows_the_loader_except_mid_upgrade(
    state: S, ready: bool, wanted: bool
) -> None:
    assert ready_label_wanted(ready, NodeUpgrade(state)) is wanted
