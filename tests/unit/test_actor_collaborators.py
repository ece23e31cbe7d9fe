"""The small state keepers the kernel actor and the supervisor delegate to: a hand edit of one of
our DaemonSets is written back once, a FailedCreate blocks only while pods are missing, and the
orphan sweep keeps what an invalid spec must not touch. Pure objects, no actors."""

from __future__ import annotations

from typing import Any

from actors.kernel_daemonsets import WrittenGenerations
from actors.kernel_status import CreateFailures
from actors.messages import PodCreateFailed
from actors.supervisor_sweep import kept_labels
from ooto.domain.kernels import kernel_label_value
from ooto.domain.reasons import Reason
from ooto.domain.status import KernelProblem
from ooto.domain.stored import Target

OURS = (("loader", "registry/mod:6.1@sha256:aa"),)
TARGET = Target("ns", "mod-ml-1", "hash", OURS)
EDITED = "edited by someone else"


def daemonset(uid: str, generation: int, images: tuple[tuple[str, str], ...] = OURS) -> Any:
    containers = [{"name": name, "image": image} for name, image in images]
    return {
        "metadata": {"name": TARGET.name, "uid": uid, "generation": generation},
        "spec": {"template": {"spec": {"containers": containers}}},
    }


# --- WrittenGenerations: hand edits ----------------------------------------------------------


def test_first_sight_adopts_a_daemonset_running_our_images() -> None:
    generations = WrittenGenerations()
    assert generations.edit(TARGET, daemonset("u1", 4)) == ""
    assert generations.edit(TARGET, daemonset("u1", 4)) == ""


def test_first_sight_of_other_images_is_an_edit() -> None:
    edited = daemonset("u1", 4, (("loader", "someone/else:1"),))
    assert WrittenGenerations().edit(TARGET, edited) == EDITED


def test_a_generation_beyond_what_we_wrote_is_an_edit_until_we_write_again() -> None:
    generations = WrittenGenerations()
    generations.wrote(TARGET.name, ("u1", 2))
    assert generations.edit(TARGET, daemonset("u1", 3)) == EDITED
    generations.wrote(TARGET.name, ("u1", 4))
    assert generations.edit(TARGET, daemonset("u1", 4)) == ""


def test_a_late_reply_of_an_older_write_does_not_forget_the_newer_one() -> None:
    generations = WrittenGenerations()
    generations.wrote(TARGET.name, ("u1", 5))
    generations.wrote(TARGET.name, ("u1", 4))
    assert generations.edit(TARGET, daemonset("u1", 5)) == ""


def test_a_recreated_daemonset_is_adopted() -> None:
    generations = WrittenGenerations()
    generations.wrote(TARGET.name, ("u1", 7))
    assert generations.edit(TARGET, daemonset("u2", 1)) == ""
    assert generations.edit(TARGET, daemonset("u2", 2)) == EDITED


# --- CreateFailures --------------------------------------------------------------------------


def scheduled(uid: str, current: int) -> Any:
    return {"metadata": {"name": "ds", "uid": uid}, "status": {"currentNumberScheduled": current}}


def test_a_create_failure_blocks_until_every_pod_exists_then_is_forgotten() -> None:
    failures = CreateFailures()
    failures.observe(PodCreateFailed("ds", "u1", "forbidden: PodSecurity"))
    assert failures.blocking([scheduled("u1", 1)], nodes=3) == "forbidden: PodSecurity"
    assert failures.blocking([scheduled("u1", 3)], nodes=3) == ""
    assert failures.blocking([scheduled("u1", 1)], nodes=3) == ""  # forgotten, not recalled


def test_a_create_failure_of_an_older_daemonset_of_the_same_name_is_ignored() -> None:
    failures = CreateFailures()
    failures.observe(PodCreateFailed("ds", "old", "exceeded quota"))
    assert failures.blocking([None, scheduled("new", 0)], nodes=2) == ""


# --- kept_labels: the orphan sweep's keep list -----------------------------------------------


def test_live_actors_and_selected_kernels_invalid_spec_or_dead_actor_keep_daemonsets() -> None:
    problems = {
        "6.1": KernelProblem("6.1", Reason.INVALID_SPEC, "bad"),
        "6.2": KernelProblem("6.2", Reason.ACTOR_FAILED, "died"),
        "6.3": KernelProblem("6.3", Reason.NO_MATCHING_MAPPING, "none"),
        "6.4": KernelProblem("6.4", Reason.INVALID_SPEC, "bad, but no node runs it any more"),
    }
    kernels = {k: frozenset({f"node-{k}"}) for k in ("6.0", "6.1", "6.2", "6.3")}
    kept = kept_labels({"6-0-label": "6.0"}, problems, kernels)
    assert kept == {"6-0-label", kernel_label_value("6.1"), kernel_label_value("6.2")}


def test_before_any_kernel_is_known_only_live_actors_are_kept() -> None:
    problems = {"6.1": KernelProblem("6.1", Reason.INVALID_SPEC, "bad")}
    assert kept_labels({"a": "6.0"}, problems, None) == {"a"}
