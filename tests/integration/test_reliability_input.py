"""Broken and hostile input from Nodes and Modules, through the real API server and the operator:
nodes without a kernel version, kernel labels users edit or remove by hand, kernels whose label
values sanitize alike, a catastrophic regexp against a huge kernel string.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from ooto.domain.kernels import kernel_label_value
from ooto.domain.render import NODE_KERNEL_ANNOTATION, NODE_KERNEL_LABEL
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.reliability_support import GPU, A, settled
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    node_selector_kernel,
    pods_on,
    ready_module,
)

ANY_KERNEL = [{"regexp": "^.+$", "containerImage": "r.example/m:v1"}]


async def node_labels(rest: KubeRest, name: str) -> dict[str, str]:
    node = await rest.get(f"/api/v1/nodes/{name}")
    return dict(node["metadata"].get("labels") or {})


async def test_nodes_without_a_kernel_version_are_ignored_with_a_reason(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await kubelet.add_nodes([("h1-ok", A, GPU), ("h1-empty", "", GPU), ("h1-blank", "  ", GPU)])
    # A stale label on a node that reports no kernel would pin a module there: it must go.
    await admin_rest.patch(
        "/api/v1/nodes/h1-empty", {"metadata": {"labels": {NODE_KERNEL_LABEL: "1.2.3"}}}
    )
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", ANY_KERNEL))

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert set(kernel_status(module)) == {A}
    assert await pods_on(admin_rest, namespace) == {"h1-ok": "r.example/m:v1"}

    async def stale_label_removed() -> bool:
        return NODE_KERNEL_LABEL not in await node_labels(admin_rest, "h1-empty")

    await eventually(stale_label_removed, timeout=15)
    assert NODE_KERNEL_LABEL not in await node_labels(admin_rest, "h1-blank")
    reasons = [getattr(r, "reason", "") for r in caplog.records if "h1-blank" in r.getMessage()]
    assert "NoKernelVersion" in reasons, "an ignored node is logged with its reason"
    await settled(operator)  # nothing keeps being written for the ignored nodes


async def test_kernel_labels_edited_or_removed_by_hand_are_repaired(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("h2-a", A, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:a")]))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))

    for edit in ("5.0.0-forged", None):
        await admin_rest.patch(
            "/api/v1/nodes/h2-a", {"metadata": {"labels": {NODE_KERNEL_LABEL: edit}}}
        )

        async def repaired() -> bool:
            return (await node_labels(admin_rest, "h2-a")).get(NODE_KERNEL_LABEL) == A

        await eventually(repaired, timeout=15)

    # The edit may have evicted the pod (its nodeSelector stopped matching); the repaired label
    # brings it back. A stale Ready status proves nothing here, so wait for the pod itself.
    async def pod_back() -> bool:
        return await pods_on(admin_rest, namespace) == {"h2-a": "r.example/m:a"}

    await eventually(pod_back, timeout=30)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))


async def test_kernels_whose_labels_sanitize_alike_get_one_daemonset_each(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    long = "5.14.0-" + "x" * 60
    kernels = {
        "h3-plus": "6.1.0+x",
        "h3-under": "6.1.0_x",
        "h3-long-a": long + "-a",
        "h3-long-b": long + "-b",
        "h3-tilde": "6.1.0~x",
    }
    await kubelet.add_nodes([(node, kernel, GPU) for node, kernel in kernels.items()])
    await start_operator(watch_namespace=namespace)
    image = [{"regexp": "^.+$", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}]
    await apply_module(admin_rest, namespace, module_manifest("mod", image))

    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)
    sets = await daemonsets(admin_rest, namespace, "mod")
    labels = sorted(node_selector_kernel(ds) for ds in sets)
    assert labels == sorted(kernel_label_value(k) for k in kernels.values())
    assert len(set(labels)) == len(kernels)
    for node, kernel in kernels.items():
        node_obj = await admin_rest.get(f"/api/v1/nodes/{node}")
        assert node_obj["metadata"]["labels"][NODE_KERNEL_LABEL] == kernel_label_value(kernel)
        if kernel_label_value(kernel) != kernel:
            assert node_obj["metadata"]["annotations"][NODE_KERNEL_ANNOTATION] == kernel
    pods = await pods_on(admin_rest, namespace)
    assert set(pods) == set(kernels)
    # Tags are made tag-safe the way KMM does it, so "+" and "_" share an image; each node still
    # gets its own kernel's DaemonSet.
    assert pods["h3-plus"] == pods["h3-under"] == "r.example/m:6.1.0_x"


async def test_catastrophic_regexps_and_a_huge_kernel_string_are_decided_quickly(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    # (a+)+$ and (a|a)*- backtrack exponentially on these in a backtracking engine; RE2 is linear.
    # A kernel string over 128 characters (or with a character a release never has) is refused
    # at the door: only a broken or hostile Node reports one (issue 13).
    huge, longest = "a" * 20_000 + "!", "a" * 127 + "-"
    await kubelet.add_nodes(
        [("h4-huge", huge, GPU), ("h4-long", longest, GPU), ("h4-a", "a" * 40, GPU)]
    )
    await start_operator(watch_namespace=namespace)
    began = time.monotonic()
    mappings = [
        {"regexp": "(a+)+$", "containerImage": "r.example/m:evil"},
        {"regexp": "^(a|a)*-$", "containerImage": "r.example/m:long"},
    ]
    await apply_module(admin_rest, namespace, module_manifest("mod", mappings))

    async def decided() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        ready = condition(module, "Ready")
        refused = (module.get("status") or {}).get("nodesInvalidKernel") == 1
        return ready if refused and ready.get("reason") == "AllKernelsReady" else None

    ready = await eventually(decided, timeout=30)
    seconds = time.monotonic() - began
    print(f"\ncatastrophic regexps, a 20,001-character kernel: decided in {seconds:.1f}s")
    assert await pods_on(admin_rest, namespace) == {
        "h4-long": "r.example/m:long",
        "h4-a": "r.example/m:evil",
    }
    assert len(ready["message"]) <= 1100, "a hostile kernel must not bloat the status"
    assert NODE_KERNEL_LABEL not in await node_labels(admin_rest, "h4-huge")


async def test_modules_whose_names_sanitize_alike_get_their_own_objects(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("h5-a", A, GPU)])
    await start_operator(watch_namespace=namespace)
    prefix = "m" * 70
    names = ["a.b", "a-b", f"{prefix}-x", f"{prefix}-y"]
    for i, name in enumerate(names):
        manifest = module_manifest(name, [literal(A, f"r.example/m:{i}")])
        await apply_module(admin_rest, namespace, manifest)

    for name in names:
        await eventually(lambda name=name: ready_module(admin_rest, namespace, name), timeout=30)
    sets = await daemonsets(admin_rest, namespace)
    owners = {ds["metadata"]["ownerReferences"][0]["name"] for ds in sets}
    assert len(sets) == len(names) and owners == set(names)
    assert all(len(ds["metadata"]["name"]) <= 63 for ds in sets)
    images = sorted(ds["spec"]["template"]["spec"]["containers"][0]["image"] for ds in sets)
    assert images == [f"r.example/m:{i}" for i in range(len(names))]
