"""The chart's life on the local control plane: CRD upgrades, a second release of the same name,
the rollout strategy across an upgrade, and the `helm test` pod as the API server sees it.

What cannot run here: `helm test` itself. The simulated kubelet runs no container (it marks pods
Running or Failed), so the test pod would never reach Succeeded and `helm test` would only time
out. Its manifest is validated by the real API server (`kubectl apply --dry-run=server`) and its
command is run against an HTTP server in tests/unit/test_chart_production.py.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError
from tests.integration.test_helm import CHART, NO_CRDS, helm, webhook_scope

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MODULES_CRD = "modules.ooto.sigs.k8s.io"


async def adopt_crds(admin_rest: KubeRest, release: str, namespace: str) -> None:
    """Hand the session's CRDs (made by the `crd` fixture) to `release`, as Helm's adoption
    of existing objects asks: the state of a cluster where the chart installed them."""
    for path in sorted((CHART / "files" / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        patch = {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": release,
                    "meta.helm.sh/release-namespace": namespace,
                },
            }
        }
        await admin_rest.patch(f"{CRDS}/{name}", patch)


def columns(crd: dict[str, Any]) -> list[str]:
    return [c["name"] for c in crd["spec"]["versions"][0].get("additionalPrinterColumns", [])]


async def test_helm_upgrade_applies_a_changed_crd_and_uninstall_keeps_it(
    cluster: LocalCluster, namespace: str, admin_rest: KubeRest, crd: str, tmp_path: Path
) -> None:
    name = f"c{secrets.token_hex(3)}"
    chart = tmp_path / "ooto"
    shutil.copytree(CHART, chart)
    await adopt_crds(admin_rest, name, namespace)
    scope = webhook_scope(name)
    install = await helm(cluster, "install", name, str(chart), "-n", namespace, scope)
    assert install.returncode == 0, install.stdout + install.stderr
    try:
        before = await admin_rest.get(f"{CRDS}/{MODULES_CRD}")
        assert before["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert "Upgraded" not in columns(before)
        # The next version of the chart ships a changed CRD: a new printer column.
        crd_file = chart / "files" / "crds" / "ooto.sigs.k8s.io_modules.yaml"
        changed = yaml.safe_load(crd_file.read_text())
        changed["spec"]["versions"][0].setdefault("additionalPrinterColumns", []).append(
            {"name": "Upgraded", "type": "string", "jsonPath": ".metadata.name"}
        )
        crd_file.write_text(yaml.safe_dump(changed))
        # --force-conflicts: the CRD's fields belong to whoever created it (here the `crd`
        # fixture; for users `kubectl apply` or Helm's crds/ directory); docs/operations.md says
        # to pass it once, on the first upgrade that manages the CRDs (Helm 4 applies
        # server-side).
        upgrade = await helm(
            cluster, "upgrade", name, str(chart), "-n", namespace, scope, "--force-conflicts"
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        after = await admin_rest.get(f"{CRDS}/{MODULES_CRD}")
        assert columns(after) == [*columns(before), "Upgraded"]
        # Back to this version's CRD (other tests of the session share it).
        back = await helm(cluster, "upgrade", name, str(CHART), "-n", namespace, scope)
        assert back.returncode == 0, back.stdout + back.stderr
        assert columns(await admin_rest.get(f"{CRDS}/{MODULES_CRD}")) == columns(before)
    finally:
        uninstall = await helm(cluster, "uninstall", name, "-n", namespace, "--wait")
    assert uninstall.returncode == 0, uninstall.stderr
    kept = await admin_rest.get(f"{CRDS}/{MODULES_CRD}")  # helm.sh/resource-policy: keep
    assert "deletionTimestamp" not in kept["metadata"]


async def test_a_second_release_of_the_same_name_elsewhere_is_refused_until_renamed(
    cluster: LocalCluster, namespace: str, admin_rest: KubeRest
) -> None:
    name = f"s{secrets.token_hex(3)}"
    other = f"{namespace[:50]}-b"
    await admin_rest.post("/api/v1/namespaces", {"metadata": {"name": other}})
    flags = [NO_CRDS, webhook_scope(name)]
    first = await helm(cluster, "install", name, str(CHART), "-n", namespace, *flags)
    assert first.returncode == 0, first.stderr
    try:
        second = await helm(cluster, "install", name, str(CHART), "-n", other, *flags)
        assert second.returncode != 0
        assert (
            f"ClusterRole {name}-ooto belongs to the release {name} in namespace" in second.stderr
        )
        assert "set fullnameOverride" in second.stderr
        with pytest.raises(RestError) as nothing:  # refused before anything was created
            await admin_rest.get(f"/apis/apps/v1/namespaces/{other}/deployments/{name}-ooto")
        assert nothing.value.status == 404
        renamed = await helm(
            cluster, "install", name, str(CHART), "-n", other, *flags,
            f"--set=fullnameOverride={name}-ooto-b",
        )  # fmt: skip
        assert renamed.returncode == 0, renamed.stderr
        first_role = await admin_rest.get(
            f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-ooto"
        )
        assert first_role["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == namespace
        await admin_rest.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-ooto-b")
    finally:
        await helm(cluster, "uninstall", name, "-n", other, "--wait")
        await helm(cluster, "uninstall", name, "-n", namespace, "--wait")
        await admin_rest.delete(f"/api/v1/namespaces/{other}")


async def test_turning_leader_election_off_switches_the_rollout_to_recreate(
    cluster: LocalCluster, namespace: str, admin_rest: KubeRest
) -> None:
    """The API server keeps the defaulted rollingUpdate of the first install; an upgrade to
    Recreate must still be accepted (it refuses rollingUpdate with type Recreate)."""
    name = f"l{secrets.token_hex(3)}"
    flags = [NO_CRDS, webhook_scope(name), "--set=replicas=1"]
    install = await helm(cluster, "install", name, str(CHART), "-n", namespace, *flags)
    assert install.returncode == 0, install.stderr
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}-ooto"
    try:
        assert (await admin_rest.get(path))["spec"]["strategy"]["type"] == "RollingUpdate"
        upgrade = await helm(
            cluster, "upgrade", name, str(CHART), "-n", namespace, *flags,
            "--set=leaderElection.enabled=false",
        )  # fmt: skip
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert (await admin_rest.get(path))["spec"]["strategy"] == {"type": "Recreate"}
    finally:
        await helm(cluster, "uninstall", name, "-n", namespace, "--wait")


async def test_the_helm_test_pod_is_accepted_by_the_api_server(
    cluster: LocalCluster, namespace: str
) -> None:
    rendered = await helm(
        cluster, "template", "t", str(CHART), "-n", namespace,
        "--show-only=templates/tests/test-connection.yaml",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    kubectl = [str(Binaries.expected().kubectl), "--kubeconfig", str(cluster.admin_kubeconfig)]
    applied = await asyncio.to_thread(
        subprocess.run,
        [*kubectl, "apply", "--dry-run=server", "-o", "yaml", "-f", "-"],
        input=rendered.stdout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    pod = yaml.safe_load(applied.stdout)
    assert pod["kind"] == "Pod" and pod["metadata"]["namespace"] == namespace
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
