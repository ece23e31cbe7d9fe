"""The actor core against a real API server: Nodes and Modules in, DaemonSets and status out.

Each test is one scenario of issue 4, with the simulated kubelet playing the nodes. Assertions
read the cluster (DaemonSets, pods, Module status, Events), never the operator's internals, except
the write counters from its own metrics.
"""

from __future__ import annotations

from typing import Any

from ooto.domain.kernels import kernel_label_value
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.barrier import has_seen, idle, version_of
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    delete_module,
    events,
    eventually,
    get_module,
    kernel_status,
    literal,
    module_manifest,
    node_selector_kernel,
    patch_module,
    pods_on,
    ready_module,
)

A, B, C = "5.14.0-70.13.1.el9_0.x86_64", "5.4.0-1054-gke", "6.1.0-rpi7-rpi-v8+"
GPU = {"ooto-test/gpu": "true"}


async def test_two_kernels_get_one_daemonset_each_and_the_module_goes_ready(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s1-a1", A, GPU), ("s1-a2", A, GPU), ("s1-b1", B, GPU)])
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest(
            "mod", [literal(A, "registry.example/mod:el9"), literal(B, "registry.example/mod:gke")]
        ),
    )

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)

    sets = await daemonsets(admin_rest, namespace, "mod")
    assert sorted(node_selector_kernel(ds) for ds in sets) == sorted([A, B])
    assert await pods_on(admin_rest, namespace) == {
        "s1-a1": "registry.example/mod:el9",
        "s1-a2": "registry.example/mod:el9",
        "s1-b1": "registry.example/mod:gke",
    }
    kernels = kernel_status(module)
    assert (kernels[A]["nodesReady"], kernels[A]["nodesDesired"]) == (2, 2)
    assert (kernels[B]["nodesReady"], kernels[B]["nodesDesired"]) == (1, 1)
    assert condition(module, "Progressing")["status"] == "False"
    count = operator.metrics.requests_total
    node_labels = count(verb="patch", resource="nodes")
    created = count(verb="create", resource="daemonsets")
    status = count(verb="patch", resource="modules/status")
    print(
        f"\nscenario 1 API writes: {operator.writes()} = {node_labels} node labels (kernel, "
        f"ready) + "
        f"{created} DaemonSets + {status} status writes"
    )
    assert (node_labels, created) == (3 + 3, 2)  # a kernel label and a module-ready label each
    assert 1 <= status <= 5, "status is debounced and written only when it changes"
    assert sum(operator.writes().values()) == node_labels + created + status


async def test_a_node_upgrading_its_kernel_moves_the_module_to_the_new_kernel(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s2-a", A, GPU), ("s2-b", B, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest(
            "mod",
            [literal(A, "r.example/m:a"), literal(B, "r.example/m:b"), literal(C, "r.example/m:c")],
        ),
    )
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))

    await kubelet.set_kernel("s2-b", C)

    async def moved() -> bool:
        kernels = sorted(node_selector_kernel(ds) for ds in await daemonsets(admin_rest, namespace))
        return kernels == sorted(kernel_label_value(k) for k in (A, C))

    await eventually(moved)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert (await pods_on(admin_rest, namespace))["s2-b"] == "r.example/m:c"

    unknown = "6.9.9-unmapped"
    await kubelet.set_kernel("s2-b", unknown)

    async def not_ready_naming_kernel() -> dict[str, Any] | None:
        ready = condition(await get_module(admin_rest, namespace, "mod"), "Ready")
        return (
            ready
            if ready.get("status") == "False" and unknown in ready.get("message", "")
            else None
        )

    ready = await eventually(not_ready_naming_kernel)
    assert ready["reason"] == "NoMatchingMapping"
    assert await eventually(lambda: events(admin_rest, namespace, "NoMatchingMapping"))


async def test_kernels_with_plus_and_over_63_characters_work_end_to_end(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    long_kernel = "5.14.0-" + "x" * 70 + ".el9.x86_64"
    await kubelet.add_nodes([("s3-plus", C, GPU), ("s3-long", long_kernel, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest(
            "mod", [{"regexp": "^.+$", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}]
        ),
    )

    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    sets = await daemonsets(admin_rest, namespace, "mod")
    assert sorted(node_selector_kernel(ds) for ds in sets) == sorted(
        [kernel_label_value(C), kernel_label_value(long_kernel)]
    )
    pods = await pods_on(admin_rest, namespace)
    assert pods["s3-plus"] == "r.example/m:6.1.0-rpi7-rpi-v8_"
    assert all(len(ds["metadata"]["name"]) <= 63 for ds in sets)

    # The kernel in the repository: C's `+` becomes a trailing `_`, not valid there. Only C is
    # InvalidSpec; its loader keeps running the last valid plan, and it is listed once: the
    # problem's reason and message, the running image and node counts.
    mapping = {"regexp": "^.+$", "containerImage": "r.example/m-${KERNEL_FULL_VERSION}:1"}
    changed = await patch_module(
        admin_rest, namespace, "mod", {"spec": {"kernelMappings": [mapping]}}
    )

    async def c_refused() -> dict[str, Any] | None:
        module = await get_module(admin_rest, namespace, "mod")
        current = module["status"]["observedGeneration"] == changed["metadata"]["generation"]
        refused = kernel_status(module)[C].get("reason") == "InvalidSpec"
        return module if current and refused else None

    status = (await eventually(c_refused))["status"]
    (entry,) = [k for k in status["kernels"] if k["kernel"] == C]
    assert entry["phase"] == "Invalid" and "containerImage" in entry["message"]
    assert (entry["image"], entry["nodesReady"]) == ("r.example/m:6.1.0-rpi7-rpi-v8_", 1)
    assert (status["kernelCount"], status["nodesDesired"]) == (2, 2)
    assert (await pods_on(admin_rest, namespace))["s3-plus"] == "r.example/m:6.1.0-rpi7-rpi-v8_"


async def test_changing_the_image_rolls_the_daemonset_and_no_change_writes_nothing(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s4-a", A, GPU)])
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:v1")])
    )
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    before = operator.writes()

    touched = await patch_module(
        admin_rest, namespace, "mod", {"metadata": {"labels": {"touched": "yes"}}}
    )
    await has_seen(operator, "modules", version_of(touched))
    assert operator.writes() == before, "a change outside the spec must write nothing"

    await patch_module(
        admin_rest, namespace, "mod", {"spec": {"kernelMappings": [literal(A, "r.example/m:v2")]}}
    )

    async def rolled() -> bool:
        return (await pods_on(admin_rest, namespace)).get("s4-a") == "r.example/m:v2"

    await eventually(rolled)
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert module["status"]["observedGeneration"] == module["metadata"]["generation"]


async def test_selector_changes_move_pods_between_nodes(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s5-in", A, GPU), ("s5-out", A, {"ooto-test/gpu": "false"})])
    await start_operator(watch_namespace=namespace)
    await apply_module(admin_rest, namespace, module_manifest("mod", [literal(A, "r.example/m:a")]))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    assert set(await pods_on(admin_rest, namespace)) == {"s5-in"}

    await kubelet.set_labels("s5-in", {"ooto-test/gpu": "false"})
    await kubelet.set_labels("s5-out", {"ooto-test/gpu": "true"})

    async def swapped() -> bool:
        return set(await pods_on(admin_rest, namespace)) == {"s5-out"}

    await eventually(swapped)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))


async def test_deleting_the_module_removes_its_daemonsets(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s6-a", A, GPU), ("s6-b", B, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest("mod", [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]),
    )
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))

    await delete_module(admin_rest, namespace, "mod")

    async def gone() -> bool:
        return not await daemonsets(admin_rest, namespace, "mod")

    await eventually(gone, timeout=60)


async def test_two_modules_over_the_same_nodes_do_not_interfere(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s7-a", A, GPU), ("s7-b", B, GPU)])
    await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest("one", [literal(A, "r.example/one:a"), literal(B, "r.example/one:b")]),
    )
    await apply_module(
        admin_rest, namespace, module_manifest("two", [literal(A, "r.example/two:a")])
    )

    await eventually(lambda: ready_module(admin_rest, namespace, "one"))
    two = await eventually(lambda: get_module(admin_rest, namespace, "two"))
    assert len(await daemonsets(admin_rest, namespace, "one")) == 2
    assert len(await daemonsets(admin_rest, namespace, "two")) == 1

    await delete_module(admin_rest, namespace, "two")

    async def only_one_left() -> bool:
        return not await daemonsets(admin_rest, namespace, "two")

    await eventually(only_one_left)
    assert len(await daemonsets(admin_rest, namespace, "one")) == 2
    assert two


async def test_restart_on_a_converged_cluster_adopts_everything_and_writes_nothing(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s8-a", A, GPU), ("s8-b", B, GPU)])
    first = await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest("mod", [literal(A, "r.example/m:a"), literal(B, "r.example/m:b")]),
    )
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "hand-made",
            "labels": {
                "ooto.sigs.k8s.io/module": "mod",
                "ooto.sigs.k8s.io/kernel": "9.9.9",
                "ooto.sigs.k8s.io/role": "module-loader",
                "app.kubernetes.io/managed-by": "ooto",
            },
        },
        "spec": {
            "selector": {"matchLabels": {"x": "y"}},
            "template": {
                "metadata": {"labels": {"x": "y"}},
                "spec": {
                    "nodeSelector": {"nowhere": "true"},
                    "containers": [{"name": "c", "image": "r.example/hand:1"}],
                },
            },
        },
    }
    await admin_rest.post(f"/apis/apps/v1/namespaces/{namespace}/daemonsets", foreign)
    await first.stop()

    second = await start_operator(watch_namespace=namespace)
    # A change that needs no write, after everything the restart must judge: once the operator
    # has seen it and gone idle, it has judged all of it.
    touched = await patch_module(admin_rest, namespace, "mod", {"metadata": {"labels": {"t": "1"}}})
    await has_seen(second, "modules", version_of(touched))

    assert second.writes() == {}, f"restart wrote {second.metrics.exposition().decode()}"
    names = {ds["metadata"]["name"] for ds in await daemonsets(admin_rest, namespace)}
    assert "hand-made" in names and len(names) == 3


async def test_an_invalid_mapping_is_reported_and_other_modules_carry_on(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("s9-a", A, GPU)])
    operator = await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest,
        namespace,
        module_manifest(
            "bad-regexp", [{"regexp": "^(unclosed", "containerImage": "r.example/m:a"}]
        ),
    )
    await apply_module(
        admin_rest,
        namespace,
        module_manifest(
            "bad-variable", [{"literal": A, "containerImage": "r.example/m:${NO_SUCH_VARIABLE}"}]
        ),
    )
    await apply_module(
        admin_rest, namespace, module_manifest("good", [literal(A, "r.example/m:a")])
    )

    await eventually(lambda: ready_module(admin_rest, namespace, "good"))
    for name, needle in (("bad-regexp", "regexp"), ("bad-variable", "NO_SUCH_VARIABLE")):

        async def invalid(name: str = name) -> dict[str, Any] | None:
            ready = condition(await get_module(admin_rest, namespace, name), "Ready")
            return ready if ready.get("reason") == "InvalidSpec" else None

        ready = await eventually(invalid)
        assert ready["status"] == "False" and needle in ready["message"]
    assert await eventually(lambda: events(admin_rest, namespace, "InvalidSpec"))
    assert not await daemonsets(admin_rest, namespace, "bad-regexp")

    await idle(operator)
    settled = operator.writes()
    touched = await patch_module(
        admin_rest, namespace, "bad-regexp", {"metadata": {"labels": {"t": "1"}}}
    )
    await has_seen(operator, "modules", version_of(touched))
    assert operator.writes() == settled, "the operator keeps writing for an invalid Module"


async def test_a_restart_that_refuses_a_running_module_keeps_what_runs(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """An operator upgrade (here: a tightened policy) that refuses a Module which already runs:
    InvalidSpec, and its DaemonSets stay, also when one of their events reaches a supervisor
    that has no kernel actor (it has none: an invalid spec is never planned). Reproduced before
    the fix: that event's orphan sweep deleted them, unloading the module from every node."""
    await kubelet.add_nodes([("s10-a", A, GPU)])
    first = await start_operator(watch_namespace=namespace, allow_privileged_module_loader=True)
    manifest = module_manifest("mod", [literal(A, "r.example/m:a")])
    manifest["spec"]["moduleLoader"]["securityContext"] = {"privileged": True}
    await apply_module(admin_rest, namespace, manifest)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    await first.stop()

    second = await start_operator(watch_namespace=namespace)

    async def refused() -> dict[str, Any] | None:
        ready = condition(await get_module(admin_rest, namespace, "mod"), "Ready")
        return ready if ready.get("reason") == "InvalidSpec" else None

    assert "privileged" in (await eventually(refused))["message"]
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{ds['metadata']['name']}"
    touched = await admin_rest.patch(path, {"metadata": {"annotations": {"touched": "yes"}}})
    await has_seen(second, "daemonsets", version_of(touched))
    assert [d["metadata"]["uid"] for d in await daemonsets(admin_rest, namespace, "mod")] == [
        ds["metadata"]["uid"]
    ]
    assert (await pods_on(admin_rest, namespace)).get("s10-a") == "r.example/m:a"
    node = await admin_rest.get("/api/v1/nodes/s10-a")
    label = (await get_module(admin_rest, namespace, "mod"))["status"]["readyLabel"]
    assert node["metadata"]["labels"].get(label) == "true", "the module-ready label stays"

    loader = {"securityContext": {"privileged": False}}
    await patch_module(admin_rest, namespace, "mod", {"spec": {"moduleLoader": loader}})
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"))
    (kept,) = await daemonsets(admin_rest, namespace, "mod")
    assert kept["metadata"]["uid"] == ds["metadata"]["uid"], "fixed in place"
