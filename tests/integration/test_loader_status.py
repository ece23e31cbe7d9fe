"""Loader pods that cannot run are the kernel's reason (issue 13, section 6): a vendor tag that does
not exist (ImagePullFailed) and a loader that crashes (LoaderCrashing), through the real API
server, the operator and the simulated kubelet writing what a kubelet writes."""

from __future__ import annotations

from typing import Any

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.podstatus import pull_error
from ooto.testing.rest import KubeRest
from tests.integration.barrier import has_seen, version_of
from tests.integration.conftest import OperatorFactory, RunningOperator
from tests.integration.reliability_support import GPU, A
from tests.integration.scenario_support import (
    apply_module,
    condition,
    events,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    patch_module,
    ready_module,
)
from tests.integration.upgrade_support import loader_pods

WRONG = "r.example/vendor/mod:no-such-tag"
GOOD = "r.example/vendor/mod:6.1"


async def reason_is(rest: KubeRest, namespace: str, reason: str) -> dict[str, Any] | None:
    module = await get_module(rest, namespace, "mod")
    entry = kernel_status(module).get(A, {})
    return module if entry.get("reason") == reason and "2/2 nodes" in entry["message"] else None


async def pods_retried(rest: KubeRest, namespace: str, times: int) -> int:
    """Wait until every loader pod's status changed `times` more times (the kubelets retrying
    the pull); the resourceVersion of the last of those changes."""
    start = {p["metadata"]["uid"]: version_of(p) for p in await loader_pods(rest, namespace)}
    seen: dict[str, set[int]] = {uid: set() for uid in start}

    async def retried() -> int | None:
        for pod in await loader_pods(rest, namespace):
            uid = pod["metadata"]["uid"]
            if uid in seen and version_of(pod) > start[uid]:
                seen[uid].add(version_of(pod))
        done = all(len(versions) >= times for versions in seen.values())
        return max(max(v) for v in seen.values()) if done and seen else None

    return await eventually(retried, timeout=60, interval=0.1)


async def quiet_while_pods_retry(running: RunningOperator, rest: KubeRest, namespace: str) -> None:
    """The operator sees the kubelets' retries (pod events) and writes nothing for them."""
    before = running.writes()
    await has_seen(running, "pods", await pods_retried(rest, namespace, times=3))
    assert running.writes() == before, "pod events caused writes"


async def test_a_vendor_tag_that_does_not_exist_is_the_kernels_reason_until_fixed(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """Reproduced: a loader image that cannot be pulled (no build, so no registry check) showed
    as "0/2 nodes ready", Rolling for ever."""
    kubelet.fail_images = {WRONG}
    kubelet.pull_retry_seconds = 0.3  # pods go ErrImagePull, ImagePullBackOff, and again
    await kubelet.add_nodes([("lp1-a", A, GPU), ("lp1-b", A, GPU)])
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, WRONG)]))

    module = await eventually(lambda: reason_is(admin_rest, namespace, "ImagePullFailed"), 60)
    entry = kernel_status(module)[A]
    expected = f"0/2 nodes ready; 2/2 nodes cannot pull {WRONG}: {pull_error(WRONG)}"
    assert (entry["phase"], entry["message"]) == ("Degraded", expected)
    ready = condition(module, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ImagePullFailed")
    assert ready["message"] == f"{A}: {expected}"
    await quiet_while_pods_retry(operator, admin_rest, namespace)
    (event,) = await events(admin_rest, namespace, "ImagePullFailed")  # one, however many retries
    assert event["type"] == "Warning" and event.get("count", 1) == 1
    assert event["message"].startswith(f"kernel {A}: ")  # sent at the first node's failure
    assert event["message"].endswith(f"/2 nodes cannot pull {WRONG}: {pull_error(WRONG)}")

    await operator.stop()  # a restart while pods back off writes nothing either
    second = await start_operator(watch_namespace=namespace)
    touched = await patch_module(admin_rest, namespace, "mod", {"metadata": {"labels": {"t": "1"}}})
    await has_seen(second, "modules", version_of(touched))
    await has_seen(second, "pods", await pods_retried(admin_rest, namespace, times=2))
    assert second.writes() == {}, f"restart wrote {second.writes()}"

    fixed = {"spec": {"kernelMappings": [literal(A, GOOD)]}}
    await patch_module(admin_rest, namespace, "mod", fixed)
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=90)
    entry = kernel_status(module)[A]
    assert entry["phase"] == "Ready" and "reason" not in entry, entry


async def test_a_loader_that_crashes_is_the_kernels_reason(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """A loader whose modprobe fails: CrashLoopBackOff with its last exit, LoaderCrashing."""
    crashing = "modprobe: FATAL: Module mod not found in directory /lib/modules/" + A

    def outcome(pod: dict[str, Any]) -> Any:
        role = pod["metadata"].get("labels", {}).get("ooto.sigs.k8s.io/role")
        return "CrashLoop" if role == "module-loader" else None

    kubelet.pod_outcome = outcome
    kubelet.crash_message = crashing
    await kubelet.add_nodes([("lp2-a", A, GPU), ("lp2-b", A, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, GOOD)]))

    module = await eventually(lambda: reason_is(admin_rest, namespace, "LoaderCrashing"), 60)
    entry = kernel_status(module)[A]
    assert entry["phase"] == "Degraded"
    assert entry["message"] == (
        f"0/2 nodes ready; 2/2 nodes: the loader ({GOOD}) keeps crashing: exit code 1: {crashing}"
    )
    ready = condition(module, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "LoaderCrashing")
    (event,) = await eventually(lambda: events(admin_rest, namespace, "LoaderCrashing"))
    assert event["type"] == "Warning" and crashing in event["message"]
