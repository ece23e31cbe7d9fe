"""Loader pods that cannot run -> the kernel's reason and message (ooto.domain.loader_health),
what the routes tell the kernel actor of them, and what the simulated kubelet writes for them."""

from __future__ import annotations

import copy
from typing import Any

from actors.loader_troubles import LoaderTroubles
from actors.messages import ImagePullFailed, LoaderPodTrouble
from actors.routes import DaemonSetRoutes
from ooto.domain.loader_health import (
    IMAGE_PULL_FAILED,
    LOADER_CRASHING,
    PodTrouble,
    carry_detail,
    kernel_trouble,
    pod_trouble,
    with_stored_cause,
)
from ooto.domain.render import LABEL_KERNEL, LABEL_MODULE
from ooto.domain.stored import trim_pod
from ooto.testing.podstatus import PodOutcome, pod_status, pull_error

IMAGE = "registry.example/vendor/mod:6.1-wrong"


def pod(node: str, outcome: PodOutcome, uid: str = "", crash: str = "") -> dict[str, Any]:
    """A loader pod as the simulated kubelet reports it (the tests below pin that to a real
    kubelet's fields)."""
    body: dict[str, Any] = {
        "metadata": {
            "name": f"loader-{node}",
            "namespace": "ns",
            "uid": uid or f"uid-{node}",
            "labels": {LABEL_MODULE: "mod", LABEL_KERNEL: "k1"},
        },
        "spec": {"nodeName": node, "containers": [{"name": "loader", "image": IMAGE}]},
    }
    body.update(pod_status(body, outcome, "172.16.0.1", crash))
    return body


def test_a_pull_error_names_the_image_and_the_runtimes_cause() -> None:
    trouble = pod_trouble(pod("n1", "ErrImagePull"))
    assert trouble == PodTrouble("n1", IMAGE_PULL_FAILED, IMAGE, pull_error(IMAGE))


def test_a_back_off_is_a_pull_failure_without_a_cause_of_its_own() -> None:
    assert pod_trouble(pod("n1", "ImagePullBackOff")) == PodTrouble("n1", IMAGE_PULL_FAILED, IMAGE)


def test_a_newer_kubelets_back_off_quotes_the_last_pull_error() -> None:
    backing_off = pod("n1", "ImagePullBackOff")
    waiting = backing_off["status"]["containerStatuses"][0]["state"]["waiting"]
    waiting["message"] = f'Back-off pulling image "{IMAGE}": ErrImagePull: {pull_error(IMAGE)}'
    assert pod_trouble(backing_off) == pod_trouble(pod("n1", "ErrImagePull"))


def test_a_restart_takes_the_cause_from_the_stored_message_when_pods_only_back_off() -> None:
    stored = f"0/2 nodes ready; 2/2 nodes cannot pull {IMAGE}: not found"
    back_off = PodTrouble("n1", IMAGE_PULL_FAILED, IMAGE)
    assert with_stored_cause(back_off, stored).detail == "not found"
    assert with_stored_cause(PodTrouble("n1", IMAGE_PULL_FAILED, "other:1"), stored).detail == ""
    troubles = LoaderTroubles()
    troubles.seed([pod("n1", "ImagePullBackOff")], "ns", "mod", "k1", stored)
    assert troubles.verdict(frozenset(), 2) == (
        IMAGE_PULL_FAILED,
        f"1/2 nodes cannot pull {IMAGE}: not found",
    )


def test_an_invalid_image_name_is_a_pull_failure() -> None:
    broken = pod("n1", "ImagePullBackOff")
    waiting = {"reason": "InvalidImageName", "message": 'couldn\'t parse image "Bad:"'}
    broken["status"]["containerStatuses"][0]["state"] = {"waiting": waiting}
    trouble = pod_trouble(broken)
    assert trouble is not None and trouble.reason == IMAGE_PULL_FAILED
    assert "couldn't parse" in trouble.detail


def test_a_crash_loop_says_how_the_loader_last_exited() -> None:
    trouble = pod_trouble(pod("n1", "CrashLoop", crash="modprobe: FATAL: Module mod not found"))
    assert trouble is not None and trouble.reason == LOADER_CRASHING
    assert trouble.detail == "exit code 1: modprobe: FATAL: Module mod not found"


def test_a_loader_that_exits_non_zero_again_is_crashing_between_back_offs() -> None:
    again = pod("n1", "CrashLoop")
    status = again["status"]["containerStatuses"][0]
    status["state"] = {"terminated": {"exitCode": 2, "reason": "Error"}}
    status["restartCount"] = 3
    assert pod_trouble(again) == PodTrouble("n1", LOADER_CRASHING, IMAGE, "exit code 2: Error")
    status["restartCount"] = 0  # its first exit: not yet "repeatedly"
    assert pod_trouble(again) is None


def test_running_and_deleted_pods_have_no_trouble() -> None:
    assert pod_trouble(pod("n1", "Ready")) is None
    leaving = pod("n1", "ErrImagePull")
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pod_trouble(leaving) is None


def test_the_informer_trim_keeps_what_the_verdict_reads() -> None:
    for outcome in ("ErrImagePull", "ImagePullBackOff", "CrashLoop", "Ready"):
        full = pod("n1", outcome, crash="boom")  # type: ignore[arg-type]
        trimmed = copy.deepcopy(full)
        trim_pod(trimmed)
        assert pod_trouble(trimmed) == pod_trouble(full), outcome


def test_a_back_off_keeps_the_cause_of_the_same_failure_only() -> None:
    known = PodTrouble("n1", IMAGE_PULL_FAILED, IMAGE, "not found")
    back_off = PodTrouble("n1", IMAGE_PULL_FAILED, IMAGE)
    assert carry_detail(known, back_off) == known
    other = PodTrouble("n1", IMAGE_PULL_FAILED, "other:1")
    assert carry_detail(known, other) == other
    assert carry_detail(known, None) is None


def test_the_kernel_message_counts_nodes_and_quotes_one_cause() -> None:
    troubles = [
        PodTrouble("n2", IMAGE_PULL_FAILED, IMAGE, "not found (n2)"),
        PodTrouble("n3", IMAGE_PULL_FAILED, IMAGE),
        PodTrouble("n1", LOADER_CRASHING, IMAGE, "exit code 1"),
    ]
    assert kernel_trouble(troubles, 5) == (
        IMAGE_PULL_FAILED,
        f"2/5 nodes cannot pull {IMAGE}: not found (n2)",
    )
    assert kernel_trouble(troubles[2:], 5) == (
        LOADER_CRASHING,
        f"1/5 nodes: the loader ({IMAGE}) keeps crashing: exit code 1",
    )
    assert kernel_trouble([], 5) is None


def test_pods_alternating_between_pull_error_and_back_off_keep_one_message() -> None:
    """What the kubelets do for as long as the tag is wrong must not change the status."""
    troubles = LoaderTroubles()
    nodes = ("n1", "n2", "n3")
    troubles.seed([pod(node, "ErrImagePull") for node in nodes], "ns", "mod", "k1")
    first = troubles.verdict(frozenset(), 3)
    assert first == (IMAGE_PULL_FAILED, f"3/3 nodes cannot pull {IMAGE}: {pull_error(IMAGE)}")
    messages = set()
    for step in range(6):
        for index, node in enumerate(nodes):
            outcome: PodOutcome = "ErrImagePull" if (step + index) % 2 else "ImagePullBackOff"
            troubles.observe(f"uid-{node}", pod_trouble(pod(node, outcome)))
            messages.add(troubles.verdict(frozenset(), 3))
    assert messages == {first}


def test_pods_on_unavailable_nodes_do_not_count_and_running_pods_clear() -> None:
    troubles = LoaderTroubles()
    troubles.seed([pod("n1", "ErrImagePull"), pod("n2", "ErrImagePull")], "ns", "mod", "k1")
    verdict = troubles.verdict(frozenset({"n2"}), 2)
    assert verdict is not None and verdict[1].startswith("1/2 nodes cannot pull")
    troubles.observe("uid-n1", pod_trouble(pod("n1", "Ready")))
    assert troubles.verdict(frozenset({"n2"}), 2) is None


def test_seeding_reads_only_this_kernels_pods() -> None:
    troubles = LoaderTroubles()
    other = pod("n1", "ErrImagePull")
    other["metadata"]["labels"][LABEL_KERNEL] = "k2"
    troubles.seed([other], "ns", "mod", "k1")
    troubles.seed([pod("n1", "ErrImagePull")], "other-ns", "mod", "k1")
    assert troubles.verdict(frozenset(), 1) is None


class FakeBridge:
    def __init__(self) -> None:
        self.told: list[object] = []

    def tell(self, _ref: object, message: object) -> None:
        self.told.append(message)

    def call_soon(self, call: Any, *args: object) -> None:
        call(*args)


def test_routes_tell_the_kernel_actor_only_what_changes() -> None:
    bridge = FakeBridge()
    routes = DaemonSetRoutes(bridge, LABEL_MODULE, LABEL_KERNEL)
    routes.add(("ns", "mod", "k1"), "kernel-actor")
    routes.deliver_pod(pod("n1", "Ready"))
    assert bridge.told == []  # a pod that runs costs no message
    routes.deliver_pod(pod("n1", "ErrImagePull"))
    routes.deliver_pod(pod("n1", "ErrImagePull"))
    troubles = [m for m in bridge.told if isinstance(m, LoaderPodTrouble)]
    assert troubles == [LoaderPodTrouble("uid-n1", pod_trouble(pod("n1", "ErrImagePull")))]
    assert ImagePullFailed(IMAGE) in bridge.told  # the rebuild of a lost image still hears
    bridge.told.clear()
    routes.deliver_pod(pod("n1", "ErrImagePull"), deleted=True)
    routes.deliver_pod(pod("n1", "ErrImagePull"), deleted=True)
    assert bridge.told == [LoaderPodTrouble("uid-n1", None)]


def test_routes_without_a_kernel_actor_remember_nothing() -> None:
    """The actor reads the pod cache when it starts; it must then hear the next change."""
    bridge = FakeBridge()
    routes = DaemonSetRoutes(bridge, LABEL_MODULE, LABEL_KERNEL)
    routes.deliver_pod(pod("n1", "ErrImagePull"))
    routes.add(("ns", "mod", "k1"), "kernel-actor")
    routes.deliver_pod(pod("n1", "ErrImagePull"))
    assert len([m for m in bridge.told if isinstance(m, LoaderPodTrouble)]) == 1


def test_the_informer_trim_keeps_the_resource_version_the_watch_resumes_from() -> None:
    """Reproduced: trim_pod dropped it, so the loader-pod informer's resourceVersion stayed at
    its last list (a reconnect replayed every pod change since, or relisted on 410 Gone), and
    the integration barrier never saw the pod events delivered."""
    full = pod("n1", "Ready")
    full["metadata"]["resourceVersion"] = "4711"
    trim_pod(full)
    assert full["metadata"]["resourceVersion"] == "4711"
