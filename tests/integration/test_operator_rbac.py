"""The operator under exactly the chart's RBAC: a Module with a build, end to end, with no 403.

`helm install` renders and creates the chart's ClusterRole and Lease Role, bound to the harness
user `ooto-operator`; `ooto run` then runs as that user, leader election on, as a replica in its
pod would. The simulated kubelet plays the Kaniko builds (pushing the image to a registry that
wants the credentials of the Module's Secret) and the module-loader pods. One Module's build
succeeds (Secret, ConfigMap, Job, DaemonSet, status), another's fails (its Event with the build
log's tail: pods and pods/log, Job deletion on retry). Afterwards the operator's own request
metric must show no 401/403, and every (verb, resource) it used must be granted by the rules the
API server holds for the chart.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet, build_destinations, pushing_builds
from ooto.testing.podstatus import JobOutcome
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest
from tests.integration.operator_process import OperatorProcess, Sample, operators
from tests.integration.scenario_support import (
    apply_module,
    condition,
    events,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
)
from tests.integration.test_helm import installed_chart

KERNEL = "5.4.0-1054-gke"
GPU = {"ooto-test/gpu": "true"}
DOCKERFILE = "FROM scratch\nARG KERNEL_FULL_VERSION\n"


def build_mapping(registry: RegistryServer, repo: str) -> dict[str, Any]:
    return {
        "regexp": "^5\\.4\\.0-.*-gke$",
        "containerImage": f"{registry.host}/{repo}:${{KERNEL_FULL_VERSION}}",
        "build": {
            "dockerfile": DOCKERFILE,
            "push": {"insecure": True},
            "pull": {"insecure": True},
        },
    }


def pull_secret(registry: RegistryServer) -> dict[str, Any]:
    assert registry.credentials is not None
    user, password = registry.credentials
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry.host: {"username": user, "password": password, "auth": auth}}}
    return {
        "metadata": {"name": "pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def builds_failing_for(registry: RegistryServer, repo: str) -> Any:
    """Kaniko pods pushing to `repo` fail; the others push their image and succeed."""
    succeed = pushing_builds(registry)

    async def decide(pod: JSON) -> JobOutcome:
        if any(f"/{repo}:" in image for image in build_destinations(pod)):
            return "Failed"
        return await succeed(pod)  # type: ignore[misc]

    return decide


async def with_ready(rest: KubeRest, namespace: str, name: str, wanted: str) -> JSON | None:
    """The Module once its Ready condition has reason `wanted` (and a BuildFailed Event, if so)."""
    module = await get_module(rest, namespace, name)
    if condition(module, "Ready").get("reason") != wanted:
        return None
    if wanted == "BuildFailed" and not await events(rest, namespace, "BuildFailed"):
        return None
    return module


async def granted(rest: KubeRest, release_name: str, namespace: str) -> set[tuple[str, str]]:
    """(verb, resource) pairs the chart's ClusterRole and Lease Role allow, as stored."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    roles = [
        await rest.get(f"{rbac}/clusterroles/{release_name}"),
        await rest.get(f"{rbac}/namespaces/{namespace}/roles/{release_name}-leader-election"),
    ]
    return {
        (verb, resource)
        for role in roles
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def requests(samples: list[Sample]) -> dict[tuple[str, str, str], float]:
    """(verb, resource, code) -> count, from ooto_kube_requests_total."""
    return {
        (labels["verb"], labels["resource"], labels["code"]): value
        for name, labels, value in samples
        if name == "ooto_kube_requests_total"
    }


async def settled(operator: OperatorProcess, namespace: str) -> list[Sample] | None:
    """The metrics once the operator counts the Module Ready (its own view, not only the API's)."""
    samples = await operator.samples()
    for name, labels, value in samples:
        if name == "ooto_modules" and labels.get("state") == "Ready" and value == 1:
            return samples
    return None


async def test_operator_reconciles_a_built_module_with_only_the_charts_rbac(
    cluster: LocalCluster,
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    auth_registry: RegistryServer,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    kubelet.job_outcome = builds_failing_for(auth_registry, f"{namespace}/bad")
    await kubelet.add_node("rbac-1", KERNEL, GPU)
    await admin_rest.post(f"/api/v1/namespaces/{namespace}/secrets", pull_secret(auth_registry))
    flags = (
        f"--watch-namespace={namespace}",
        f"--operator-namespace={namespace}",
        "--build-backend=kaniko",
        "--lease-duration-seconds=3",
        "--renew-deadline-seconds=2",
        "--retry-period-seconds=0.5",
        "--status-debounce-seconds=0.1",
        "--backoff-initial-seconds=0.5",
    )
    async with (
        installed_chart(cluster, namespace, "replicas=0", bind_operator_user=True) as release,
        operators(cluster.operator_kubeconfig, tmp_path, *flags) as (operator,),
    ):
        for name in ("mod", "bad"):
            mapping = build_mapping(auth_registry, f"{namespace}/{name}")
            manifest = module_manifest(name, [mapping], imageRepoSecret={"name": "pull"})
            await apply_module(admin_rest, namespace, manifest)
        module = await eventually(
            lambda: with_ready(admin_rest, namespace, "mod", "AllKernelsReady"), timeout=60
        )
        await eventually(lambda: with_ready(admin_rest, namespace, "bad", "BuildFailed"), 60)
        samples = await eventually(lambda: settled(operator, namespace), timeout=10)
        allowed = await granted(admin_rest, release.fullname, namespace)

    status = kernel_status(module)[KERNEL]
    assert status["build"] == "Built", status
    assert (status["nodesReady"], status["nodesDesired"]) == (1, 1)
    used = requests(samples)
    print("\nAPI requests under the chart's RBAC (verb, resource, code: count):")
    for key, count in sorted(used.items()):
        print(f"  {key}: {count:g}")
    forbidden = {key: n for key, n in used.items() if key[2] in ("401", "403")}
    assert not forbidden, f"denied requests: {forbidden}"
    not_granted = {(verb, resource) for verb, resource, _ in used} - allowed
    assert not not_granted, f"used without a grant in the chart: {not_granted}"
    exercised = [
        ("get", "secrets"),
        ("create", "configmaps"),
        ("create", "jobs"),
        ("create", "daemonsets"),
        ("patch", "modules/status"),
        ("create", "events"),
        ("list", "pods"),
        ("get", "pods/log"),
        ("create", "leases"),
        # ("update", "leases") comes with the first renewal, which a fast run may not reach;
        # test_leader_election.py exercises renewals under the same grants.
    ]
    for needed in exercised:
        assert needed in {(verb, resource) for verb, resource, _ in used}, needed
