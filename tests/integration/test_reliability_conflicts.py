"""Other writers on the objects the operator owns: hand edits of our DaemonSets, a foreign write of
the Module status, concurrent updates while the operator rolls a DaemonSet. The operator repairs
what is its own, once, and never fights in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import STRATEGIC_PATCH, KubeRest, RestError
from tests.integration.barrier import has_seen, version_of
from tests.integration.conftest import OperatorFactory
from tests.integration.reliability_support import GPU, A, B, settled, write_log
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    eventually,
    get_module,
    literal,
    module_manifest,
    patch_module,
    pods_on,
    ready_module,
)

MODULES = "/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{ns}/modules/{name}"


def ds_path(ds: dict[str, Any]) -> str:
    meta = ds["metadata"]
    return f"/apis/apps/v1/namespaces/{meta['namespace']}/daemonsets/{meta['name']}"


def image_of(ds: dict[str, Any]) -> str:
    return str(ds["spec"]["template"]["spec"]["containers"][0]["image"])


async def converged(
    rest: KubeRest, kubelet: SimulatedKubelet, ns: str, start: OperatorFactory, prefix: str
) -> Any:
    await kubelet.add_nodes([(f"{prefix}-a", A, GPU), (f"{prefix}-b", B, GPU)])
    operator = await start(watch_namespace=ns)
    mappings = [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]
    await apply_module(rest, ns, module_manifest("mod", mappings))
    await eventually(lambda: ready_module(rest, ns, "mod"))
    await settled(operator)
    return operator


async def test_a_hand_edited_daemonset_is_repaired_once(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    operator = await converged(admin_rest, kubelet, namespace, start_operator, "c1")
    [ours] = [ds for ds in await daemonsets(admin_rest, namespace) if image_of(ds).endswith(":a")]
    before = write_log(operator)

    # `kubectl set image`: the spec changes, our spec-hash annotation stays as it was.
    container = ours["spec"]["template"]["spec"]["containers"][0]["name"]
    await admin_rest.patch(
        ds_path(ours),
        {"spec": {"template": {"spec": {"containers": [{"name": container, "image": "evil:1"}]}}}},
        content_type=STRATEGIC_PATCH,
    )

    async def repaired() -> bool:
        return image_of(await admin_rest.get(ds_path(ours))) == "r.example/m:a"

    await eventually(repaired, timeout=20)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert (await pods_on(admin_rest, namespace))["c1-a"] == "r.example/m:a"
    # The repaired DaemonSet as it is now: once the operator has seen it, a second repair
    # would already have been asked for.
    await has_seen(operator, "daemonsets", version_of(await admin_rest.get(ds_path(ours))))
    writes = write_log(operator) - before
    print(f"\nwrites to repair a hand-edited DaemonSet: {dict(writes)}")
    assert writes[("update", "daemonsets", "200")] == 1


async def test_a_deleted_daemonset_is_recreated(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await converged(admin_rest, kubelet, namespace, start_operator, "c2")
    [victim, _] = await daemonsets(admin_rest, namespace)
    await admin_rest.delete(ds_path(victim))

    async def recreated() -> bool:
        with contextlib.suppress(RestError):
            again = await admin_rest.get(ds_path(victim))
            return bool(again["metadata"]["uid"] != victim["metadata"]["uid"])
        return False

    await eventually(recreated, timeout=20)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert len(await daemonsets(admin_rest, namespace)) == 2


async def test_an_overwritten_status_is_rewritten_once_not_fought_over(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    operator = await converged(admin_rest, kubelet, namespace, start_operator, "c3")
    count = operator.metrics.requests_total
    writes_before = count(verb="patch", resource="modules/status")
    forged = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Forged",
                    "message": "someone else wrote this",
                    "lastTransitionTime": "2020-01-01T00:00:00Z",
                }
            ],
            "kernels": [],
        }
    }
    path = MODULES.format(ns=namespace, name="mod") + "/status"
    await admin_rest.patch(path, forged)

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=20)
    assert condition(module, "Ready")["reason"] != "Forged"
    assert len(module["status"]["kernels"]) == 2
    await has_seen(operator, "modules", version_of(module))  # its own rewrite: no answer to it
    rewrites = count(verb="patch", resource="modules/status") - writes_before
    print(f"\nstatus writes after a foreign overwrite: {rewrites}")
    assert rewrites == 1


async def test_concurrent_writers_on_a_rolling_daemonset_do_not_stop_the_rollout(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    operator = await converged(admin_rest, kubelet, namespace, start_operator, "c4")
    sets = await daemonsets(admin_rest, namespace)
    stop = asyncio.Event()

    async def meddle() -> int:
        """Another controller that keeps touching our DaemonSets' labels (bumping their
        resourceVersion), so the operator's updates meet 409 Conflicts."""
        n = 0
        while not stop.is_set():
            for ds in sets:
                body = {"metadata": {"labels": {"meddler": str(n)}}}
                with contextlib.suppress(RestError):
                    await admin_rest.patch(ds_path(ds), body)
                n += 1
        return n

    meddler = asyncio.create_task(meddle())
    try:
        for version in ("v2", "v3", "v4"):
            mappings = [
                literal(A, f"r.example/m:a{version}"),
                literal(B, f"r.example/m:b{version}"),
            ]
            await patch_module(admin_rest, namespace, "mod", {"spec": {"kernelMappings": mappings}})
            await asyncio.sleep(0.3)
    finally:
        await asyncio.sleep(1.0)
        stop.set()
        meddled = await meddler

    async def rolled() -> bool:
        return set((await pods_on(admin_rest, namespace)).values()) == {
            "r.example/m:av4",
            "r.example/m:bv4",
        }

    await eventually(rolled, timeout=30)
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    conflicts = operator.metrics.requests_total(code=409)
    print(f"\n{meddled} foreign writes during 3 rollouts; operator saw {conflicts} conflicts")
    assert {image_of(ds) for ds in await daemonsets(admin_rest, namespace)} == {
        "r.example/m:av4",
        "r.example/m:bv4",
    }
    assert module["status"]["observedGeneration"] == module["metadata"]["generation"]
    assert (await get_module(admin_rest, namespace, "mod"))["status"]["kernelCount"] == 2


async def test_a_module_deleted_and_recreated_at_once_converges_on_the_new_one(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await converged(admin_rest, kubelet, namespace, start_operator, "c5")
    old_uid = (await get_module(admin_rest, namespace, "mod"))["metadata"]["uid"]
    await admin_rest.delete(MODULES.format(ns=namespace, name="mod"))
    # Same name at once: the old DaemonSets (same names, owned by the old uid) are still there
    # until the garbage collector removes them.
    mappings = [literal(A, "r.example/m:a-new"), literal(B, "r.example/m:b-new")]
    await apply_module(admin_rest, namespace, module_manifest("mod", mappings))

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)
    assert module["metadata"]["uid"] != old_uid
    sets = await daemonsets(admin_rest, namespace)
    assert len(sets) == 2
    assert {ds["metadata"]["ownerReferences"][0]["uid"] for ds in sets} == {
        module["metadata"]["uid"]
    }
    assert set((await pods_on(admin_rest, namespace)).values()) == {
        "r.example/m:a-new",
        "r.example/m:b-new",
    }


async def test_a_daemonset_edited_while_the_operator_was_down_is_repaired_on_restart(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    first = await converged(admin_rest, kubelet, namespace, start_operator, "c6")
    await first.stop()
    [ours] = [ds for ds in await daemonsets(admin_rest, namespace) if image_of(ds).endswith(":a")]
    container = ours["spec"]["template"]["spec"]["containers"][0]["name"]
    await admin_rest.patch(
        ds_path(ours),
        {"spec": {"template": {"spec": {"containers": [{"name": container, "image": "evil:2"}]}}}},
        content_type=STRATEGIC_PATCH,
    )

    second = await start_operator(watch_namespace=namespace)

    async def repaired() -> bool:
        return image_of(await admin_rest.get(ds_path(ours))) == "r.example/m:a"

    await eventually(repaired, timeout=20)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    await has_seen(second, "daemonsets", version_of(await admin_rest.get(ds_path(ours))))
    assert second.metrics.requests_total(verb="update", resource="daemonsets", code=200) == 1
