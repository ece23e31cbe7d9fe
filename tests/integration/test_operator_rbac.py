"""The operator under exactly the chart's RBAC: it needs every grant, and no more.

`helm install` renders and creates the chart's roles (with `watchNamespace`, so Secrets and
ConfigMaps come from a Role in that namespace), bound to the harness user `ooto-operator`; `ooto
run` then runs as that user, leader election on, as a replica in its pod would. The simulated
kubelet plays the Kaniko builds (pushing the image to a registry that wants the credentials of the
Module's Secret) and the module-loader pods. The scenario walks every feature that needs a grant:
a build that succeeds (Secret, ConfigMap, Job, DaemonSet, status, Events), one that fails (the
build log's tail: pods and pods/log; the retry replaces the Job and finds its ConfigMap), a
PreflightValidation that builds ahead (its informer, its status, a Job owned by it), a changed
Dockerfile (ConfigMap update), a changed module loader (DaemonSet update), a DaemonSet
name someone else took (the get after a 409), a node that leaves (DaemonSet delete), and Lease
renewals.

The API server runs with OpenShift's OwnerReferencesPermissionEnforcement admission plugin and
writes an audit log of the operator user's requests. From that log: no request was denied, every
(verb, resource) used is granted, and every grant was used or is listed with its reason in
data/rbac-unexercised.yaml. So a verb nobody uses any more fails here until it leaves the chart.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
from pathlib import Path
from typing import Any

import yaml

from ooto.domain.kernels import daemonset_name
from ooto.domain.render import MODULE_LOADER
from ooto.testing.audit import AuditedRequest, AuditLog, Grant
from ooto.testing.cluster import OPERATOR_USER, LocalCluster
from ooto.testing.kubelet import SimulatedKubelet, build_destinations, pushing_builds
from ooto.testing.podstatus import JobOutcome
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest, RestError
from tests.integration.operator_process import operators
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    events,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
    patch_module,
)
from tests.integration.test_helm import Release, installed_chart

KERNEL = "5.4.0-1054-gke"
GPU = {"ooto-test/gpu": "true"}
DOCKERFILE = "FROM scratch\nARG KERNEL_FULL_VERSION\n"
UNEXERCISED = Path(__file__).parent / "data" / "rbac-unexercised.yaml"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def build_mapping(
    registry: RegistryServer, repo: str, dockerfile: str = DOCKERFILE
) -> dict[str, Any]:
    return {
        "regexp": "^5\\.4\\.0-.*-gke$",
        "containerImage": f"{registry.host}/{repo}:${{KERNEL_FULL_VERSION}}",
        "build": {
            "dockerfile": dockerfile,
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


async def with_ready(rest: KubeRest, namespace: str, name: str, *wanted: str) -> JSON | None:
    """The Module once its Ready condition has one of the `wanted` reasons (and a BuildFailed
    Event, for BuildFailed)."""
    module = await get_module(rest, namespace, name)
    if condition(module, "Ready").get("reason") not in wanted:
        return None
    if wanted == ("BuildFailed",) and not await events(rest, namespace, "BuildFailed"):
        return None
    return module


async def granted_to(rest: KubeRest, release: Release, user: str) -> set[Grant]:
    """What the release's bindings grant `user`, from the roles as the API server stores them."""
    selector = {"labelSelector": f"app.kubernetes.io/instance={release.name}"}
    bindings = [
        *(await rest.get(f"{RBAC}/clusterrolebindings", selector))["items"],
        *(await rest.get(f"{RBAC}/rolebindings", selector))["items"],
    ]
    grants: set[Grant] = set()
    for binding in bindings:
        subjects = binding.get("subjects") or []
        if not any(s["kind"] == "User" and s["name"] == user for s in subjects):
            continue
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            role = await rest.get(f"{RBAC}/clusterroles/{ref['name']}")
        else:
            namespace = binding["metadata"]["namespace"]
            role = await rest.get(f"{RBAC}/namespaces/{namespace}/roles/{ref['name']}")
        grants |= {
            Grant(verb, group, resource)
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    return grants


def unexercised_allowlist() -> dict[Grant, str]:
    entries = yaml.safe_load(UNEXERCISED.read_text()) or {}
    return {Grant.parse(key): str(reason) for key, reason in entries.items()}


def audit_log(cluster: LocalCluster) -> AuditLog:
    assert cluster.audit_log is not None, "the session cluster audits the operator user"
    return AuditLog(cluster.audit_log)


async def loader_env(rest: KubeRest, namespace: str, module: str) -> list[JSON] | None:
    found = await daemonsets(rest, namespace, module)
    return found[0]["spec"]["template"]["spec"]["containers"][0].get("env") if found else None


async def build_dockerfile(rest: KubeRest, namespace: str, module: str) -> str | None:
    selector = {"labelSelector": f"ooto.sigs.k8s.io/module={module}"}
    found = await rest.get(f"/api/v1/namespaces/{namespace}/configmaps", selector)
    return next((c["data"].get("Dockerfile") for c in found.get("items", [])), None)


def someone_elses_daemonset(name: str) -> JSON:
    labels = {"app": "someone-else"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"ooto-test/nowhere": "true"},
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        },
    }


async def walk_every_feature(
    rest: KubeRest, kubelet: SimulatedKubelet, registry: RegistryServer, namespace: str
) -> None:
    """Builds that succeed and fail, then changes to each: every step needs grants the earlier
    ones did not (see the module docstring)."""
    secret = {"imageRepoSecret": {"name": "pull"}}
    for name in ("mod", "bad"):
        mapping = build_mapping(registry, f"{namespace}/{name}")
        await apply_module(rest, namespace, module_manifest(name, [mapping], **secret))
    module = await eventually(
        lambda: with_ready(rest, namespace, "mod", "AllKernelsReady"), timeout=60
    )
    status = kernel_status(module)[KERNEL]
    assert status["build"] == "Built", status
    assert (status["nodesReady"], status["nodesDesired"]) == (1, 1)
    await eventually(lambda: with_ready(rest, namespace, "bad", "BuildFailed"), timeout=60)
    await preflight_builds_ahead(rest, f"{namespace}/mod")

    # A new loader env is a new load digest: an upgrade evicts the workload, deletes the loader
    # pod (pods list/watch/delete, pods/eviction create) and cordons/uncordons the node.
    await rest.post(f"/api/v1/namespaces/{namespace}/pods", workload_pod("rbac-1"))
    env = [{"name": "RBAC_STEP", "value": "loader changed"}]
    policy = {"podDeletion": {"podSelector": "app=uses-mod"}}
    changed = {"spec": {"moduleLoader": {"env": env}, "upgradePolicy": policy}}
    module = await patch_module(rest, namespace, "mod", changed)
    await eventually(lambda: _equals(loader_env(rest, namespace, "mod"), env), timeout=30)
    await eventually(lambda: upgraded(rest, namespace, module), timeout=60)

    dockerfile = DOCKERFILE + "LABEL step=dockerfile-changed\n"
    changed = build_mapping(registry, f"{namespace}/bad", dockerfile)
    await patch_module(rest, namespace, "bad", {"spec": {"kernelMappings": [changed]}})
    await eventually(
        lambda: _equals(build_dockerfile(rest, namespace, "bad"), dockerfile), timeout=30
    )
    await take_a_name_refuse_a_spec_lose_a_node(rest, kubelet, registry, namespace)


PREFLIGHTS = "/apis/ooto.sigs.k8s.io/v1alpha1/preflightvalidations"
NEXT_KERNEL = "5.4.0-2000-gke"


async def preflight_builds_ahead(rest: KubeRest, module: str) -> None:
    """A PreflightValidation that builds `module`'s image for the next kernel (its informer, its
    status patch, a Job and ConfigMap owned by it); deleted afterwards (cluster-scoped: no
    namespace takes it away)."""
    name = f"rbac-{secrets.token_hex(4)}"
    spec = {"kernelVersions": [NEXT_KERNEL], "pushBuiltImages": True, "modules": [module]}
    kind = {"apiVersion": "ooto.sigs.k8s.io/v1alpha1", "kind": "PreflightValidation"}
    await rest.post(PREFLIGHTS, {**kind, "metadata": {"name": name}, "spec": spec})
    try:
        answered = await eventually(lambda: preflight_done(rest, name), timeout=60)
        assert [e["verdict"] for e in answered["status"]["modules"]] == ["Built"], answered
    finally:
        await rest.delete(f"{PREFLIGHTS}/{name}")


async def preflight_done(rest: KubeRest, name: str) -> JSON | None:
    got = await rest.get(f"{PREFLIGHTS}/{name}")
    conditions = (got.get("status") or {}).get("conditions") or []
    return got if any(c.get("status") == "True" for c in conditions) else None


async def take_a_name_refuse_a_spec_lose_a_node(
    rest: KubeRest, kubelet: SimulatedKubelet, registry: RegistryServer, namespace: str
) -> None:
    secret = {"imageRepoSecret": {"name": "pull"}}
    taken = daemonset_name("taken", MODULE_LOADER, KERNEL)
    await rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", someone_elses_daemonset(taken)
    )
    same_image = build_mapping(registry, f"{namespace}/mod")  # built already: no build
    await apply_module(rest, namespace, module_manifest("taken", [same_image], **secret))
    await eventually(
        lambda: with_ready(rest, namespace, "taken", "ApplyFailed", "DaemonSetConflict"), 60
    )

    # Refused (privileged loader), accepted, refused again: the same Event is counted, not
    # repeated (events patch).
    for privileged in (True, False, True):
        loader = {"securityContext": {"privileged": privileged}}
        changed = await patch_module(rest, namespace, "taken", {"spec": {"moduleLoader": loader}})
        invalid = "InvalidSpec" if privileged else None
        await eventually(functools.partial(judged, rest, namespace, changed, invalid), 30)
    await eventually(lambda: counted_event(rest, namespace, "InvalidSpec"), timeout=30)

    await kubelet.set_labels("rbac-1", {"ooto-test/gpu": None})
    await eventually(lambda: _equals(daemonsets(rest, namespace, "mod"), []), timeout=30)


def workload_pod(node: str) -> JSON:
    return {
        "metadata": {"name": "uses-mod", "labels": {"app": "uses-mod"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }


async def upgraded(rest: KubeRest, namespace: str, module: JSON) -> bool:
    """The Module's nodes all run its current generation's loader, the workload evicted."""
    now = await get_module(rest, namespace, module["metadata"]["name"])
    status = now.get("status") or {}
    current = status.get("observedGeneration") == module["metadata"]["generation"]
    done = (status.get("upgrade") or {}).get("nodesUpToDate") == 1
    pods = await rest.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "app=uses-mod"})
    return current and done and not pods["items"]


async def judged(rest: KubeRest, namespace: str, module: JSON, invalid: str | None) -> bool:
    """Has the operator seen this generation of `module`, and found it invalid or not?"""
    now = await get_module(rest, namespace, module["metadata"]["name"])
    seen = (now.get("status") or {}).get("observedGeneration") == module["metadata"]["generation"]
    reason = condition(now, "Ready").get("reason")
    return seen and (reason == invalid if invalid else reason != "InvalidSpec")


async def counted_event(rest: KubeRest, namespace: str, reason: str) -> bool:
    return any(int(e.get("count") or 1) > 1 for e in await events(rest, namespace, reason))


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def print_requests(used: list[AuditedRequest]) -> None:
    counts: dict[tuple[str, int], int] = {}
    for request in used:
        key = (str(request.grant), request.code)
        counts[key] = counts.get(key, 0) + 1
    print("\nAPI requests of the operator under the chart's RBAC (audit log):")
    for (grant, code), count in sorted(counts.items()):
        print(f"  {grant} -> {code}: {count}")


def unused_message(unused: set[Grant]) -> str:
    lines = "\n".join(f"  {grant}" for grant in sorted(unused))
    return (
        f"the chart grants these, but the operator never used them in this run:\n{lines}\n"
        "Either remove them from the chart (charts/ooto/templates, docs/operations.md's RBAC "
        "table, tests/unit/test_chart.py), or make this test's scenario use them, or, if no "
        "run here can (an OpenShift-only API, a verb whose feature has no caller yet), add "
        f"`<grant>: <reason>` lines to {UNEXERCISED}."
    )


async def test_operator_needs_every_grant_of_the_chart_and_no_more(
    cluster: LocalCluster,
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    auth_registry: RegistryServer,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    log = audit_log(cluster)
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
    mark = log.mark()
    chart = ("replicas=0", f"watchNamespace={namespace}")
    async with installed_chart(cluster, namespace, *chart, bind_operator_user=True) as release:
        async with operators(cluster.operator_kubeconfig, tmp_path, *flags):
            await walk_every_feature(admin_rest, kubelet, auth_registry, namespace)
        # The operator has stopped (its Lease released). After the uninstall the harness itself
        # asks as the operator user until it is denied: those are not the operator's requests.
        end = log.mark()
        allowed = await granted_to(admin_rest, release, OPERATOR_USER)

    used = log.requests(OPERATOR_USER, since=mark, until=end)
    print_requests(used)
    denied = sorted({f"{r.grant} ({r.code})" for r in used if r.code in (401, 403)})
    assert not denied, f"denied requests: {denied}"
    used_grants = {r.grant for r in used}
    not_granted = sorted(map(str, used_grants - allowed))
    assert not not_granted, f"used without a grant in the chart: {not_granted}"
    allowlist = unexercised_allowlist()
    stale = sorted(map(str, set(allowlist) - allowed))
    assert not stale, f"{UNEXERCISED} lists grants the chart no longer has; remove: {stale}"
    unused = allowed - used_grants - set(allowlist)
    assert not unused, unused_message(unused)


async def test_blocking_owner_references_need_module_finalizers(
    cluster: LocalCluster, admin_rest: KubeRest, namespace: str, crd: str
) -> None:
    """OpenShift's OwnerReferencesPermissionEnforcement (on in the harness): creating an object
    whose ownerReference to a Module has blockOwnerDeletion needs `update modules/finalizers`.
    Without that grant every DaemonSet, Job and ConfigMap ooto creates would be refused."""
    module = await apply_module(
        admin_rest,
        namespace,
        module_manifest("owner", [{"literal": KERNEL, "containerImage": "x:1"}]),
    )
    owner = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "name": "owner",
        "uid": module["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    rules = [{"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["create"]}]
    await grant_in_namespace(admin_rest, namespace, rules)
    path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets"

    def daemonset(name: str) -> JSON:
        body = someone_elses_daemonset(name)
        body["metadata"]["ownerReferences"] = [owner]
        return body

    async with KubeRest(cluster.server, cluster.operator_token, cluster.ca_file) as operator:

        async def refused() -> RestError | None:
            try:
                await operator.post(path, daemonset("without-finalizers"))
            except RestError as error:
                return error if "blockOwnerDeletion" in str(error.body) else None
            raise AssertionError("created without update on modules/finalizers")

        error = await eventually(refused, timeout=10)  # until the Role reached the authorizer
        assert error.status == 403
        assert "cannot set blockOwnerDeletion" in error.body["message"], error.body

        finalizers = {
            "apiGroups": ["ooto.sigs.k8s.io"],
            "resources": ["modules/finalizers"],
            "verbs": ["update"],
        }
        await grant_in_namespace(admin_rest, namespace, [*rules, finalizers])

        async def created() -> JSON | None:
            try:
                return await operator.post(path, daemonset("with-finalizers"))
            except RestError as error:
                if error.status != 403:
                    raise
                return None

        stored = await eventually(created, timeout=10)
    assert stored["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True


async def grant_in_namespace(rest: KubeRest, namespace: str, rules: list[JSON]) -> None:
    """A Role (created or replaced) bound to the operator user in `namespace` only: it goes with
    the namespace, and other tests' operator user keeps no cluster-wide rights."""
    role = {"metadata": {"name": "probe"}, "rules": rules}
    roles = f"{RBAC}/namespaces/{namespace}/roles"
    try:
        await rest.post(roles, role)
    except RestError as error:
        if error.status != 409:
            raise
        await rest.patch(f"{roles}/probe", {"rules": rules})
        return
    binding = {
        "metadata": {"name": "probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "probe"},
        "subjects": [
            {"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}
        ],
    }
    await rest.post(f"{RBAC}/namespaces/{namespace}/rolebindings", binding)
