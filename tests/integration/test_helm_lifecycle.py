"""The chart's life on the local control plane: CRD upgrades, a second release of the same name,
the rollout strategy across an upgrade, and the `helm test` pod as the API server sees it.

What cannot run here: `helm test` itself. The simulated kubelet runs no container (it marks pods
Running or Failed), so the test pod would never reach Succeeded and `helm test` would only time
out; nor is there cluster DNS or a Service proxy to reach the operator through its Service. So
the test pod's manifest is validated by the real API server (`kubectl apply --dry-run=server`),
and its command, taken from the rendered manifest, is run here against a real `ooto run`
(ready: passes; stopped: fails) with the Service address replaced by the operator's own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError
from tests.integration.scenario_support import eventually
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
    # The same release installed again takes the kept CRDs back (docs/operations.md).
    again = await helm(cluster, "install", name, str(CHART), "-n", namespace, scope)
    assert again.returncode == 0, again.stdout + again.stderr
    gone = await helm(cluster, "uninstall", name, "-n", namespace, "--wait")
    assert gone.returncode == 0, gone.stderr
    await admin_rest.get(f"{CRDS}/{MODULES_CRD}")


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_helm_test_command_passes_against_a_running_operator_and_fails_after(
    cluster: LocalCluster, namespace: str, crd: str, tmp_path: Path
) -> None:
    """The test pod's own command, against a real `ooto run` (what the pod reaches through the
    Service): it passes once the operator is ready, and fails once the operator is gone."""
    rendered = await helm(
        cluster, "template", "t", str(CHART), "-n", namespace,
        "--show-only=templates/tests/test-connection.yaml",
    )  # fmt: skip
    (test,) = yaml.safe_load(rendered.stdout)["spec"]["containers"]
    command = [sys.executable, *test["command"][1:], *test["args"]]
    port = free_port()
    settings = {
        "OOTO_OPERATOR_NAMESPACE": namespace,
        "OOTO_WATCH_NAMESPACE": namespace,
        "OOTO_LEADER_ELECTION": "false",
        "OOTO_METRICS_HOST": "127.0.0.1",
        "OOTO_METRICS_PORT": str(port),
        "OOTO_WEBHOOK_PORT": "0",
    }
    ooto = Path(sys.executable).with_name("ooto")
    log = tmp_path / "operator.log"
    with log.open("wb") as sink:
        operator = await asyncio.create_subprocess_exec(
            str(ooto), "run", "--kubeconfig", str(cluster.admin_kubeconfig),
            env={**os.environ, **settings}, stdout=sink, stderr=sink,
        )  # fmt: skip
    probe_env = {**os.environ, "OOTO_TEST_URL": f"http://127.0.0.1:{port}"}

    async def helm_test() -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, command, env=probe_env, capture_output=True, text=True, timeout=30
        )

    async def passes() -> str | None:
        assert operator.returncode is None, log.read_text()[-2000:]
        result = await helm_test()
        return result.stdout if result.returncode == 0 else None

    try:
        assert (await eventually(passes, timeout=60)).startswith("OK ")
    finally:
        operator.terminate()
        await asyncio.wait_for(operator.wait(), 30)
    after = await helm_test()
    assert after.returncode == 1 and after.stderr.startswith("FAIL "), after.stderr


async def test_the_api_server_accepts_the_chart_with_every_option_that_shapes_a_manifest(
    cluster: LocalCluster, namespace: str, admin_rest: KubeRest
) -> None:
    """The options rendered in unit tests, installed for real at Helm's longest release name."""
    name = "r" + secrets.token_hex(3) + "-" + "x" * 45  # 53 characters, Helm's limit
    sets = [
        "registry.enabled=true",
        "podDisruptionBudget.minAvailable=1",
        "commonLabels.team=kernel",
        "global.imageRegistry=mirror.example",
        "global.imagePullSecrets={corp}",
        "extraEnv[0].name=OOTO_LOG_LEVEL",
        "extraEnv[0].value=DEBUG",
        "extraEnv[1].name=OOTO_EXTRA",
        "probes.liveness=null",
        "buildahImage.digest=sha256:" + "ab" * 32,
    ]
    flags = [NO_CRDS, webhook_scope(name), *(f"--set={s}" for s in sets)]
    install = await helm(cluster, "install", name, str(CHART), "-n", namespace, *flags)
    assert install.returncode == 0, install.stdout + install.stderr
    try:
        deployments = await admin_rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")
        names = sorted(d["metadata"]["name"] for d in deployments["items"])
        assert names[0] == f"{name}-ooto"  # 58 characters
        assert names[1].endswith("-registry") and len(names[1]) <= 63  # the fullname was cut
        services = await admin_rest.get(f"/api/v1/namespaces/{namespace}/services")
        assert all(len(s["metadata"]["name"]) <= 63 for s in services["items"])
        assert len(services["items"]) == 3
        budgets = await admin_rest.get(
            f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets"
        )
        (budget,) = budgets["items"]
        assert budget["spec"]["minAvailable"] == 1
        assert budget["metadata"]["labels"]["team"] == "kernel"
    finally:
        await helm(cluster, "uninstall", name, "-n", namespace, "--wait")
