"""The harness is real: the API server, controllers, scheduler and registry behave as in a cluster.

Scope: what ooto's tests rely on from `ooto.testing` — DaemonSet pods scheduled onto simulated
nodes and reported ready, garbage collection through ownerReferences, RBAC for the operator user,
the CRD from crds/, build Job pods driven to an outcome, and the OCI registry with and without auth.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import DOCKER_MANIFEST, OCI_MANIFEST, RegistryServer
from ooto.testing.rest import KubeRest, RestError
from ooto.testing.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"


def daemonset(name: str, node_label: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    metadata: dict[str, Any] = {"name": name}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {node_label: "true"},
                    "containers": [{"name": "main", "image": "example.invalid/loader:1"}],
                },
            },
        },
    }


async def add_nodes(kubelet: SimulatedKubelet, label: str, count: int) -> list[str]:
    names = [f"node-{secrets.token_hex(3)}-{i}" for i in range(count)]
    await kubelet.add_nodes((name, "5.4.0-1054-gke", {label: "true"}) for name in names)
    return names


async def pods_of(rest: KubeRest, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = await rest.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": f"app={app}"})
    items: list[dict[str, Any]] = listed["items"]
    return items


async def test_daemonset_pods_are_scheduled_on_simulated_nodes_and_become_ready(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    label = f"ooto-test/{namespace}"
    nodes = await add_nodes(kubelet, label, 3)
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )

    async def bound() -> list[str] | None:
        names = sorted(
            p["spec"].get("nodeName", "") for p in await pods_of(admin_rest, namespace, "ds")
        )
        return names if names == sorted(nodes) else None

    await eventually(bound, what="one pod bound to each simulated node")

    async def ready() -> dict[str, Any] | None:
        ds = await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/ds")
        status: dict[str, Any] = ds.get("status", {})
        return status if status.get("numberReady") == 3 else None

    status = await eventually(ready, what="DaemonSet numberReady == 3")
    assert status["desiredNumberScheduled"] == 3


async def test_failing_image_keeps_the_pod_unready(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    label = f"ooto-test/{namespace}"
    kubelet.fail_images.add("example.invalid/loader:1")
    await add_nodes(kubelet, label, 1)
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )

    seen: dict[str, str] = {}  # waiting reason -> its message, as a kubelet writes them

    async def backing_off() -> bool:
        for pod in await pods_of(admin_rest, namespace, "ds"):
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                waiting = cs.get("state", {}).get("waiting", {})
                seen[waiting.get("reason", "")] = waiting.get("message", "")
        return "ImagePullBackOff" in seen

    await eventually(backing_off, what="a container backing off")
    assert seen["ImagePullBackOff"] == 'Back-off pulling image "example.invalid/loader:1"'
    ds = await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/ds")
    assert ds["status"].get("numberReady", 0) == 0


async def test_a_hundred_nodes_all_run_a_daemonset_pod(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    label = f"ooto-test/{namespace}"
    await add_nodes(kubelet, label, 100)
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )

    async def all_ready() -> bool:
        ds = await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/ds")
        return bool(ds.get("status", {}).get("numberReady") == 100)

    await eventually(all_ready, timeout=90, what="numberReady == 100")


async def test_pods_with_failing_labels_crash_loop(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    label = f"ooto-test/{namespace}"
    kubelet.fail_labels = {"app": "ds"}
    await add_nodes(kubelet, label, 1)
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )

    async def crash_looping() -> dict[str, Any] | None:
        for pod in await pods_of(admin_rest, namespace, "ds"):
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if statuses and "waiting" in statuses[0].get("state", {}):
                return pod
        return None

    pod = await eventually(crash_looping, what="a crash-looping container")
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"


async def test_deleted_pod_is_finished_by_the_kubelet_and_replaced(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    label = f"ooto-test/{namespace}"
    await add_nodes(kubelet, label, 1)
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )
    first = await eventually(lambda: _one_ready_pod(admin_rest, namespace), what="a ready pod")
    await admin_rest.delete(f"/api/v1/namespaces/{namespace}/pods/{first['metadata']['name']}")

    async def replaced() -> dict[str, Any] | None:
        pod = await _one_ready_pod(admin_rest, namespace)
        return pod if pod and pod["metadata"]["uid"] != first["metadata"]["uid"] else None

    await eventually(replaced, what="the old pod gone and a new one ready")


async def _one_ready_pod(rest: KubeRest, namespace: str) -> dict[str, Any] | None:
    pods = await pods_of(rest, namespace, "ds")
    if len(pods) != 1 or pods[0]["metadata"].get("deletionTimestamp"):
        return None
    conditions = pods[0].get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return pods[0] if ready else None


async def test_garbage_collector_deletes_a_daemonset_whose_owner_is_deleted(
    admin_rest: KubeRest, namespace: str
) -> None:
    owner = await admin_rest.post(
        f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "owner"}}
    )
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"
    await admin_rest.post(path, daemonset("owned", "ooto-test/nowhere", reference))
    await admin_rest.delete(f"/api/v1/namespaces/{namespace}/configmaps/owner")

    async def gone() -> bool:
        try:
            await admin_rest.get(f"{path}/owned")
        except RestError as error:
            return error.status == 404
        return False

    await eventually(gone, what="the garbage collector deleting the owned DaemonSet")


async def test_build_job_pods_are_driven_to_the_decided_outcome(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    await add_nodes(kubelet, f"ooto-test/{namespace}", 1)
    kubelet.job_outcomes["broken"] = "Failed"
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    for name in ("works", "broken"):
        await admin_rest.post(path, _job(name))

    async def finished(name: str, condition: str) -> bool:
        job = await admin_rest.get(f"{path}/{name}")
        conditions = job.get("status", {}).get("conditions") or []
        return any(c["type"] == condition and c["status"] == "True" for c in conditions)

    await eventually(lambda: finished("works", "Complete"), what="Job works Complete")
    await eventually(lambda: finished("broken", "Failed"), what="Job broken Failed")


def _job(name: str) -> dict[str, Any]:
    container = {"name": "kaniko", "image": "example.invalid/kaniko:1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


async def test_operator_user_is_forbidden_before_rbac_is_granted(cluster: LocalCluster) -> None:
    async with KubeRest(cluster.server, cluster.operator_token, cluster.ca_file) as operator:
        for path in ("/api/v1/nodes", "/apis/apps/v1/daemonsets"):
            with pytest.raises(RestError) as denied:
                await operator.get(path)
            assert denied.value.status == 403


async def test_crd_is_accepted_and_the_sample_module_round_trips(
    admin_rest: KubeRest, namespace: str
) -> None:
    crd_file = REPO / "crds" / "ooto.sigs.k8s.io_modules.yaml"  # committed: missing is a bug
    crd = yaml.safe_load(crd_file.read_text())
    await _apply_crd(admin_rest, crd)
    sample = yaml.safe_load((REPO / "examples" / "module-demo.yaml").read_text())
    sample["metadata"]["namespace"] = namespace
    modules = f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{namespace}/modules"
    created = await eventually(
        lambda: _try_post(admin_rest, modules, sample), what="Module created"
    )
    read = await admin_rest.get(f"{modules}/{created['metadata']['name']}")
    assert read["spec"]["kernelMappings"] == sample["spec"]["kernelMappings"]
    assert read["spec"]["moduleLoader"]["name"] == "module-loader"


async def _apply_crd(rest: KubeRest, crd: dict[str, Any]) -> None:
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    try:
        await rest.post(path, crd)
    except RestError as error:
        if error.status != 409:
            raise
        current = await rest.get(f"{path}/{crd['metadata']['name']}")
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await rest.request("PUT", f"{path}/{crd['metadata']['name']}", crd)

    async def established() -> bool:
        current = await rest.get(f"{path}/{crd['metadata']['name']}")
        conditions = current.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await eventually(established, what="CRD Established")


async def _try_post(rest: KubeRest, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return await rest.post(path, body)
    except RestError as error:
        if error.status == 404:  # discovery of a fresh CRD lags its Established condition
            return None
        raise


async def _head(
    server: RegistryServer, repo: str, ref: str, auth: bool = True
) -> aiohttp.ClientResponse:
    headers = {"Accept": ACCEPT, **(server.authorization() if auth else {})}
    connector = aiohttp.TCPConnector(ssl=server.ssl_context() or False)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{server.url}/v2/{repo}/manifests/{ref}"
        async with session.head(url, headers=headers) as response:
            return response


async def test_registry_head_finds_a_pushed_manifest(registry: RegistryServer) -> None:
    digest = await registry.push_manifest("demo/kmod", "5.4.0-1054-gke")
    found = await _head(registry, "demo/kmod", "5.4.0-1054-gke")
    assert found.status == 200
    assert found.headers["Docker-Content-Digest"] == digest
    assert (await _head(registry, "demo/kmod", "no-such-tag")).status == 404


async def test_htpasswd_registry_wants_credentials(auth_registry: RegistryServer) -> None:
    await auth_registry.push_manifest("demo/kmod", "v1")
    anonymous = await _head(auth_registry, "demo/kmod", "v1", auth=False)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert (await _head(auth_registry, "demo/kmod", "v1")).status == 200


async def test_tls_registry_serves_with_its_own_ca(tls_registry: RegistryServer) -> None:
    assert tls_registry.url.startswith("https://")
    await tls_registry.push_manifest("demo/kmod", "v1", media_type=DOCKER_MANIFEST)
    assert (await _head(tls_registry, "demo/kmod", "v1")).status == 200


async def test_kernel_change_and_api_server_restart(
    cluster: LocalCluster, admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    """A restart of the API server keeps the data, and the kubelet loop carries on."""
    label = f"ooto-test/{namespace}"
    (node,) = await add_nodes(kubelet, label, 1)
    await kubelet.set_kernel(node, "6.1.0-rpi7-rpi-v8+")
    await asyncio.to_thread(cluster.restart_apiserver)  # blocking: keep the loop (kubelet) free
    read = await eventually(lambda: _get_or_none(admin_rest, f"/api/v1/nodes/{node}"), what="node")
    assert read["status"]["nodeInfo"]["kernelVersion"] == "6.1.0-rpi7-rpi-v8+"
    await admin_rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset("ds", label)
    )
    await eventually(lambda: _one_ready_pod(admin_rest, namespace), timeout=60, what="ready pod")


async def _get_or_none(rest: KubeRest, path: str) -> dict[str, Any] | None:
    try:
        return await rest.get(path)
    except (RestError, aiohttp.ClientError, OSError):
        return None


async def test_admin_kubeconfig_serves_kubernetes_asyncio_and_kubectl(
    cluster: LocalCluster, admin_client: Any, namespace: str
) -> None:
    from kubernetes_asyncio import client

    listed = await client.CoreV1Api(admin_client).list_namespace()
    assert namespace in {item.metadata.name for item in listed.items}
    kubectl = await asyncio.create_subprocess_exec(
        str(cluster.binaries.kubectl), f"--kubeconfig={cluster.admin_kubeconfig}",
        "get", "namespace", namespace, "-o", "name",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await kubectl.communicate()
    assert kubectl.returncode == 0, err.decode()
    assert out.decode().strip() == f"namespace/{namespace}"


async def test_a_pod_disruption_budget_blocks_an_eviction_and_the_kubelet_honours_the_rest(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str
) -> None:
    """The disruption controller runs: a PDB answers evictions with 429 until it allows them;
    an allowed eviction ends with the pod gone after its grace period (the kubelet confirms)."""
    (node,) = await add_nodes(kubelet, f"ooto-test/{namespace}", 1)
    kubelet.graceful = lambda pod: pod["metadata"]["labels"].get("app") == "work"
    base = f"/api/v1/namespaces/{namespace}/pods"
    pod = {
        "metadata": {"name": "work", "labels": {"app": "work"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "example.invalid/work:1"}],
        },
    }
    await admin_rest.post(base, pod)
    pdb = {
        "metadata": {"name": "keep-one"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "work"}}},
    }
    pdbs = f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets"
    await admin_rest.post(pdbs, pdb)

    async def computed() -> bool:
        status = (await admin_rest.get(f"{pdbs}/keep-one")).get("status") or {}
        return status.get("observedGeneration", 0) >= 1 and status.get("currentHealthy") == 1

    await eventually(computed, what="the disruption controller computed the budget")
    eviction = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "work"}}
    with pytest.raises(RestError) as refused:
        await admin_rest.post(f"{base}/work/eviction", eviction)
    assert refused.value.status == 429

    await admin_rest.delete(f"{pdbs}/keep-one")
    await admin_rest.post(f"{base}/work/eviction", eviction)
    assert (await admin_rest.get(f"{base}/work"))["metadata"].get("deletionTimestamp")

    async def gone() -> bool:
        try:
            await admin_rest.get(f"{base}/work")
        except RestError as error:
            return error.status == 404
        return False

    await eventually(gone, what="the kubelet finished the evicted pod")
