"""`helm install` of charts/ooto into the local control plane: objects, effective RBAC, uninstall.

RBAC is checked by the real API server's authorizer (SubjectAccessReview for the chart's
ServiceAccount), so a wrong apiGroup or resource name in the chart fails here even when the
rendered YAML looks right. The operator reconciling under this RBAC with zero 403s is checked by
test_operator_rbac.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from ooto.testing.binaries import Binaries
from ooto.testing.cluster import OPERATOR_USER, LocalCluster
from ooto.testing.rest import KubeRest, RestError
from tests.integration.scenario_support import eventually

CHART = Path(__file__).resolve().parents[2] / "charts" / "ooto"
RBAC_GROUP = "rbac.authorization.k8s.io"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

# (verb, group, resource): everything docs/operations.md's RBAC table grants, cluster-wide
# (without watchNamespace; test_operator_rbac.py installs with it).
GRANTED = [
    *[(v, "", "nodes") for v in ("list", "watch", "patch")],
    *[(v, "ooto.sigs.k8s.io", "modules") for v in ("list", "watch")],
    ("patch", "ooto.sigs.k8s.io", "modules/status"),
    ("update", "ooto.sigs.k8s.io", "modules/finalizers"),
    *[(v, "apps", "daemonsets") for v in ("get", "list", "watch", "create", "update", "delete")],
    *[(v, "batch", "jobs") for v in ("get", "list", "watch", "create", "delete")],
    *[(v, "build.openshift.io", "buildconfigs") for v in ("get", "create", "delete")],
    *[(v, "build.openshift.io", "builds") for v in ("list", "watch", "create", "delete")],
    ("create", "build.openshift.io", "buildconfigs/instantiate"),
    *[(v, "", "configmaps") for v in ("get", "create", "update", "delete")],
    *[(v, "", "pods") for v in ("list", "watch", "delete")],  # delete: upgrades (loader pods)
    ("create", "", "pods/eviction"),
    ("get", "", "pods/log"),
    ("get", "", "secrets"),
    ("create", "", "events"),
    ("patch", "", "events"),
    ("list", "ooto.sigs.k8s.io", "preflightvalidations"),
    ("watch", "ooto.sigs.k8s.io", "preflightvalidations"),
    ("patch", "ooto.sigs.k8s.io", "preflightvalidations/status"),
]
# Things an over-broad chart would allow (or that it once granted and nothing used); each must
# be denied.
DENIED = [
    ("list", "", "secrets"),
    ("watch", "", "secrets"),
    ("delete", "", "nodes"),
    ("update", "", "nodes"),
    ("create", "", "pods"),
    ("get", "", "pods"),
    ("update", "", "pods"),
    ("create", "ooto.sigs.k8s.io", "modules"),
    ("delete", "ooto.sigs.k8s.io", "modules"),
    ("update", "ooto.sigs.k8s.io", "modules"),
    ("update", "ooto.sigs.k8s.io", "modules/status"),
    ("patch", "apps", "daemonsets"),
    ("list", "build.openshift.io", "buildconfigs"),
    ("watch", "build.openshift.io", "buildconfigs"),
    ("create", "ooto.sigs.k8s.io", "preflightvalidations"),
    ("update", "ooto.sigs.k8s.io", "preflightvalidations"),
    ("list", "", "configmaps"),
    ("update", "batch", "jobs"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("create", "apps", "deployments"),
]


@dataclass
class Release:
    name: str
    namespace: str
    cluster: LocalCluster

    @property
    def fullname(self) -> str:
        return f"{self.name}-ooto"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


async def helm(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Binaries.expected().helm), "--kubeconfig", str(cluster.admin_kubeconfig), *args]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=False
    )


SCOPE_LABEL = "ooto-test-release"


# The session's CRDs belong to the `crd` fixture (every test shares them); a release taking
# them over would fight the next one. test_helm_lifecycle.py tests the chart's CRDs.
NO_CRDS = "--set=crds.enabled=false"


def webhook_scope(release: str) -> str:
    """The chart's webhook sees only namespaces labelled for this release: a Fail webhook that
    nobody serves must never refuse Module writes of other tests sharing the cluster."""
    return f"--set=webhook.namespaceSelector.matchLabels.{SCOPE_LABEL}={release}"


@contextlib.asynccontextmanager
async def installed_chart(
    cluster: LocalCluster, namespace: str, *sets: str, bind_operator_user: bool = False
) -> AsyncIterator[Release]:
    """`helm install` the chart into `namespace`; uninstall on exit.

    With `bind_operator_user`, the harness user `ooto-operator` (whose kubeconfig is
    `cluster.operator_kubeconfig`) gets exactly the chart's roles, so an operator run in the
    test process has the permissions the chart gives the in-cluster ServiceAccount.
    """
    release = Release(f"r{secrets.token_hex(3)}", namespace, cluster)
    flags = [NO_CRDS, webhook_scope(release.name), *(f"--set={s}" for s in sets)]
    if bind_operator_user:
        subject = "rbac.extraSubjects[0]"
        flags += [
            f"--set={subject}.kind=User",
            f"--set={subject}.name={OPERATOR_USER}",
            f"--set={subject}.apiGroup=rbac.authorization.k8s.io",
        ]
    result = await helm(cluster, "install", release.name, str(CHART), "-n", namespace, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield release
    finally:
        await helm(cluster, "uninstall", release.name, "-n", namespace, "--wait")
        if bind_operator_user:
            await _until_operator_user_denied(cluster)


async def _until_operator_user_denied(cluster: LocalCluster) -> None:
    """Later tests expect the operator user to have no RBAC: wait until the API server agrees."""
    async with KubeRest(cluster.server, cluster.operator_token, cluster.ca_file) as rest:
        for _ in range(100):
            try:
                await rest.get("/api/v1/nodes")
            except RestError as error:
                if error.status == 403:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{OPERATOR_USER} still allowed after uninstall")


@pytest_asyncio.fixture(loop_scope="session")
async def release(cluster: LocalCluster, namespace: str, crd: str) -> AsyncIterator[Release]:
    """A release of the chart without CRDs: the session's (`crd`) must be there first."""
    async with installed_chart(cluster, namespace, "image.tag=test") as installed:
        yield installed


async def can(rest: KubeRest, release: Release, verb: str, group: str, resource: str) -> bool:
    name, _, sub = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": name, "subresource": sub}
    if name not in ("nodes",):  # namespaced resources: ask about a namespace of a user
        attributes["namespace"] = "some-team"
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": release.service_account,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{release.namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        },
    }
    answer = await rest.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


async def test_install_creates_every_object_of_the_chart(
    release: Release, admin_rest: KubeRest
) -> None:
    ns, name = release.namespace, release.fullname
    for path in (
        f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{name}",
        f"/api/v1/namespaces/{ns}/services/{name}-metrics",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{name}-leader-election",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}-leader-election",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-module-editor",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-module-viewer",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modules.ooto.sigs.k8s.io",
        f"/api/v1/namespaces/{ns}/services/{name}-webhook",
        f"/api/v1/namespaces/{ns}/secrets/{name}-webhook-tls",
        f"{WEBHOOKS}/{name}-webhook",
    ):
        await admin_rest.get(path)  # raises RestError 404 if missing
    deployment = await admin_rest.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


async def test_chart_rbac_grants_exactly_what_the_design_lists(
    release: Release, admin_rest: KubeRest
) -> None:
    allowed = await asyncio.gather(*(can(admin_rest, release, *g) for g in GRANTED))
    missing = [g for g, ok in zip(GRANTED, allowed, strict=True) if not ok]
    assert not missing
    allowed = await asyncio.gather(*(can(admin_rest, release, *d) for d in DENIED))
    excess = [d for d, ok in zip(DENIED, allowed, strict=True) if ok]
    assert not excess


async def user_can(rest: KubeRest, user: str, verb: str, namespace: str) -> bool:
    """May `user` (no groups) do `verb` on Modules in `namespace`, says the API server."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": {
                "verb": verb,
                "group": "ooto.sigs.k8s.io",
                "resource": "modules",
                "namespace": namespace,
            },
        },
    }
    answer = await rest.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


async def bind(rest: KubeRest, namespace: str, user: str, cluster_role: str) -> None:
    binding = {
        "metadata": {"name": f"{user}-{cluster_role}"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "User", "name": user, "apiGroup": RBAC_GROUP}],
    }
    await rest.post(f"/apis/{RBAC_GROUP}/v1/namespaces/{namespace}/rolebindings", binding)


async def test_module_viewer_is_part_of_view_and_the_editor_of_nothing(
    release: Release, admin_rest: KubeRest
) -> None:
    """The built-in `view`, `edit` and `admin` see Modules (the clusterrole-aggregation
    controller copies the viewer in); only an explicit binding of the editor creates one."""
    ns = release.namespace
    await bind(admin_rest, ns, "alice-views", "view")
    await bind(admin_rest, ns, "bob-edits", "edit")
    await bind(admin_rest, ns, "carol-admins", "admin")
    await bind(admin_rest, ns, "dave-drivers", f"{release.fullname}-module-editor")

    async def viewers_see_modules() -> bool:
        users = ("alice-views", "bob-edits", "carol-admins", "dave-drivers")
        return all([await user_can(admin_rest, user, "list", ns) for user in users])

    await eventually(viewers_see_modules, timeout=30)  # aggregation is a controller's work
    for user in ("alice-views", "bob-edits", "carol-admins"):
        for verb in ("create", "update", "patch", "delete"):
            assert not await user_can(admin_rest, user, verb, ns), (user, verb)
    for verb in ("create", "update", "patch", "delete", "get", "watch"):
        assert await user_can(admin_rest, "dave-drivers", verb, ns), verb
    assert not await user_can(admin_rest, "dave-drivers", "create", "elsewhere")


async def test_leases_only_in_the_release_namespace(release: Release, admin_rest: KubeRest) -> None:
    async def lease(verb: str, namespace: str) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": release.service_account,
                "resourceAttributes": {
                    "verb": verb,
                    "group": "coordination.k8s.io",
                    "resource": "leases",
                    "namespace": namespace,
                },
            },
        }
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        return bool((await admin_rest.post(path, review))["status"].get("allowed"))

    for verb in ("get", "create", "update"):
        assert await lease(verb, release.namespace), verb
        assert not await lease(verb, "kube-system"), verb
    assert not await lease("delete", release.namespace)


async def test_uninstall_removes_the_operator_and_its_rbac(
    cluster: LocalCluster, namespace: str, admin_rest: KubeRest
) -> None:
    name = f"u{secrets.token_hex(3)}"
    install = await helm(
        cluster, "install", name, str(CHART), "--namespace", namespace, NO_CRDS, webhook_scope(name)
    )
    assert install.returncode == 0, install.stderr
    uninstall = await helm(cluster, "uninstall", name, "--namespace", namespace, "--wait")
    assert uninstall.returncode == 0, uninstall.stderr
    for path in (
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}-ooto",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-ooto",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}-ooto",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}-ooto",
        f"{WEBHOOKS}/{name}-ooto-webhook",
    ):
        with pytest.raises(RestError) as gone:
            await admin_rest.get(path)
        assert gone.value.status == 404, path
    # Helm never deletes CRDs: Modules (and what they own) survive an operator uninstall.
    await admin_rest.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modules.ooto.sigs.k8s.io"
    )


async def test_operator_user_can_be_given_the_chart_roles(
    cluster: LocalCluster, namespace: str
) -> None:
    """How tests run the operator under the chart's RBAC: bind the harness user to its roles."""
    async with (
        KubeRest(cluster.server, cluster.operator_token, cluster.ca_file) as operator,
        installed_chart(cluster, namespace, bind_operator_user=True) as release,
    ):
        await operator.get("/api/v1/nodes")
        await operator.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets")
        lease = {"metadata": {"name": release.fullname}, "spec": {"holderIdentity": "test"}}
        await operator.post(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", lease)
        with pytest.raises(RestError) as denied:
            await operator.get(f"/api/v1/namespaces/{namespace}/secrets")
        assert denied.value.status == 403
    with pytest.raises(RestError) as after:
        async with KubeRest(cluster.server, cluster.operator_token, cluster.ca_file) as operator:
            await operator.get("/api/v1/nodes")
    assert after.value.status == 403


async def test_the_webhook_certificate_survives_an_upgrade(
    cluster: LocalCluster, release: Release, admin_rest: KubeRest
) -> None:
    secret_path = f"/api/v1/namespaces/{release.namespace}/secrets/{release.fullname}-webhook-tls"
    before = (await admin_rest.get(secret_path))["data"]
    configuration = await admin_rest.get(f"{WEBHOOKS}/{release.fullname}-webhook")
    assert configuration["webhooks"][0]["clientConfig"]["caBundle"] == before["ca.crt"]
    upgrade = await helm(
        cluster, "upgrade", release.name, str(CHART), "-n", release.namespace,
        "--reuse-values", "--set=logging.level=DEBUG",
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert (await admin_rest.get(secret_path))["data"] == before
    configuration = await admin_rest.get(f"{WEBHOOKS}/{release.fullname}-webhook")
    assert configuration["webhooks"][0]["clientConfig"]["caBundle"] == before["ca.crt"]


async def test_with_no_replica_serving_module_writes_are_refused_where_the_webhook_applies(
    release: Release, admin_rest: KubeRest, crd: str
) -> None:
    """No kubelet runs the operator pods here: exactly the "operator down" case of
    docs/operations.md. Namespaces outside the webhook's selector are not affected."""
    module = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "m"},
        "spec": {
            "moduleLoader": {"image": "x"},
            "kernelMappings": [{"literal": "5.4", "containerImage": "r.example/m:v1"}],
        },
    }
    selected = f"t-selected-{secrets.token_hex(3)}"
    labels = {SCOPE_LABEL: release.name}
    await admin_rest.post("/api/v1/namespaces", {"metadata": {"name": selected, "labels": labels}})
    try:
        path = f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{selected}/modules"

        async def refused() -> str | None:
            try:
                await admin_rest.post(path, module)
            except RestError as error:
                return str(error.body)
            await admin_rest.delete(f"{path}/m")  # the configuration is not loaded yet
            return None

        message = await eventually(refused)  # until the API server loads the configuration
        assert 'failed calling webhook "modules.ooto.sigs.k8s.io"' in message
        other = f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{release.namespace}/modules"
        await admin_rest.post(other, module)
    finally:
        await admin_rest.delete(f"/api/v1/namespaces/{selected}")
