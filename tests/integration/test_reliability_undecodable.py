"""One Module that the operator cannot decode never stops it: a Module nested 1,100 levels deep
(orjson refuses over 1024) used to end the Module informer for good, and no Module created after
it got a DaemonSet. A Module far over aiohttp's default 128 KiB line is read whole (the watch
lines are split by `ooto.kube.decode.split_lines`, which has no such limit).

It runs on a private control plane whose Module CRD lets `additionalVolumes` hold anything, as a
CRD from before nesting was capped did: objects stored then stay in etcd after an upgrade, and
the operator must live with them. The test's own REST calls for the deep Module are raw (Python's
json module refuses that depth too).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest_asyncio

from ooto.testing.cluster import LocalCluster
from ooto.testing.crds import crd_manifests
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import MERGE_PATCH, KubeRest
from tests.integration.reliability_support import (
    GPU,
    A,
    private_kubelet,
    private_rest,
    start_in_process,
)
from tests.integration.scenario_support import (
    GROUP_PATH,
    apply_module,
    daemonsets,
    events,
    eventually,
    literal,
    module_manifest,
    ready_module,
)

__all__ = ["private_kubelet", "private_rest"]

DEPTH = 1100


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def permissive_crd(private_rest: KubeRest) -> str:
    """The Module CRD with `additionalVolumes` items free-form (x-kubernetes-preserve-unknown)."""
    body = next(c for c in crd_manifests() if c["spec"]["names"]["plural"] == "modules")
    spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["additionalVolumes"]["items"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    await private_rest.post(path, body)

    async def established() -> bool:
        got = await private_rest.get(f"{path}/{body['metadata']['name']}")
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await eventually(established, timeout=30)
    return str(body["metadata"]["name"])


@pytest_asyncio.fixture(loop_scope="session")
async def ns(private_rest: KubeRest, permissive_crd: str) -> AsyncIterator[str]:
    name = f"deep-{os.urandom(3).hex()}"
    await private_rest.post("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name


def deep_volumes_json(depth: int = DEPTH) -> str:
    """`additionalVolumes` with one volume whose claim template metadata nests `depth` levels."""
    nested = '{"n": ' * (depth - 1) + "{}" + "}" * (depth - 1)
    template = '{"metadata": {"annotations": {}, "x": ' + nested + "}}"
    return '[{"name": "v", "ephemeral": {"volumeClaimTemplate": ' + template + "}}]"


async def create_deep(rest: KubeRest, ns: str, name: str, image: str) -> None:
    manifest = module_manifest(name, [literal(A, image)], additionalVolumes="X")
    text = json.dumps(manifest).replace('"X"', deep_volumes_json())
    path = f"{GROUP_PATH}/namespaces/{ns}/modules"
    assert await rest.send_text("POST", path, text, "application/json") == 201


async def make_deep(rest: KubeRest, ns: str, name: str) -> None:
    text = '{"spec": {"additionalVolumes": ' + deep_volumes_json() + "}}"
    path = f"{GROUP_PATH}/namespaces/{ns}/modules/{name}"
    assert await rest.send_text("PATCH", path, text, MERGE_PATCH) == 200


async def test_a_module_too_deep_to_decode_is_reported_and_every_other_module_converges(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
    ns: str,
) -> None:
    rest = private_rest
    await private_kubelet.add_nodes([("deep-a", A, GPU)])
    running = await start_in_process(private_cluster.admin_kubeconfig, watch_namespace=ns)
    try:
        await apply_module(rest, ns, module_manifest("was-good", [literal(A, "r.example/w:1")]))
        await eventually(lambda: ready_module(rest, ns, "was-good"))
        await create_deep(rest, ns, "deep", "r.example/d:1")  # a new Module, deep from the start
        await make_deep(rest, ns, "was-good")  # an edit makes a running Module deep

        await apply_module(rest, ns, module_manifest("after", [literal(A, "r.example/a:1")]))
        await eventually(lambda: ready_module(rest, ns, "after"), timeout=60)

        async def reported() -> set[str]:
            found = await events(rest, ns, "UndecodableObject")
            names = {e["involvedObject"]["name"] for e in found}
            return names if names == {"deep", "was-good"} else set()

        assert await eventually(reported)
        metrics = running.metrics
        assert metrics.objects_skipped.labels(resource="modules")._value.get() >= 2
        assert running.operator.problems() == []
        assert not any(s.value for f in metrics.task_failures.collect() for s in f.samples)
        # The last readable version of "was-good" still rules: its DaemonSet stays as it was.
        sets = await daemonsets(rest, ns, "was-good")
        assert [s["spec"]["template"]["spec"]["containers"][0]["image"] for s in sets] == [
            "r.example/w:1"
        ]
        assert not await daemonsets(rest, ns, "deep")

        # Fixed by its owner, the deep Module is read again and converges.
        fix = f"{GROUP_PATH}/namespaces/{ns}/modules/deep"
        await rest.send_text("PATCH", fix, '{"spec": {"additionalVolumes": null}}', MERGE_PATCH)
        await eventually(lambda: ready_module(rest, ns, "deep"), timeout=60)
    finally:
        await running.stop()


async def test_a_module_over_the_watch_line_limit_is_read_and_the_stream_goes_on(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
    ns: str,
) -> None:
    rest = private_rest
    await private_kubelet.add_nodes([("long-a", A, GPU)])
    running = await start_in_process(private_cluster.admin_kubeconfig, watch_namespace=ns)
    try:
        big = module_manifest("big", [literal(A, "r.example/b:1")])
        big["metadata"]["annotations"] = {"example.com/notes": "n" * 200_000}  # > 128 KiB line
        await apply_module(rest, ns, big)
        await apply_module(rest, ns, module_manifest("next", [literal(A, "r.example/n:1")]))
        await eventually(lambda: ready_module(rest, ns, "next"), timeout=60)
        await eventually(lambda: ready_module(rest, ns, "big"), timeout=60)
        assert running.operator.problems() == []
    finally:
        await running.stop()
