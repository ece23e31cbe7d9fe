"""An operator upgraded before its PreflightValidation CRD was applied (Helm never upgrades CRDs):
Modules keep working, health stays good, and PreflightValidations work once the CRD is applied,
without a restart. A control plane of its own: the session's has every CRD installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ooto.domain.api.crd import CRD_FILENAME, PREFLIGHT_CRD_FILENAME
from ooto.testing.cluster import LocalCluster
from ooto.testing.crds import CRD_DIR, CRDS_PATH
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.reliability_support import (
    private_kubelet,
    private_rest,
    start_in_process,
)
from tests.integration.scenario_support import (
    apply_module,
    eventually,
    literal,
    module_manifest,
    ready_module,
)

__all__ = ["private_kubelet", "private_rest"]

KERNEL = "6.1.0-18-amd64"
PREFLIGHTS = "/apis/ooto.sigs.k8s.io/v1alpha1/preflightvalidations"


async def install(rest: KubeRest, filename: str) -> None:
    body = yaml.safe_load((CRD_DIR / filename).read_text())
    await rest.post(CRDS_PATH, body)
    name = body["metadata"]["name"]

    async def established() -> bool:
        got = await rest.get(f"{CRDS_PATH}/{name}")
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await eventually(established, timeout=30)


async def complete(rest: KubeRest, name: str) -> dict[str, Any] | None:
    got = await rest.get(f"{PREFLIGHTS}/{name}")
    conditions = (got.get("status") or {}).get("conditions") or []
    return got if any(c.get("status") == "True" for c in conditions) else None


async def test_without_the_preflight_crd_modules_work_and_preflights_start_once_it_exists(
    private_cluster: LocalCluster,
    private_rest: KubeRest,
    private_kubelet: SimulatedKubelet,
) -> None:
    rest = private_rest
    await install(rest, CRD_FILENAME)  # the Module CRD only, as after `helm upgrade`
    namespace = "upgraded"
    await rest.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
    await private_kubelet.add_node("up-1", KERNEL, {"ooto-test/gpu": "true"})
    running = await start_in_process(
        Path(private_cluster.admin_kubeconfig), watch_namespace=namespace
    )
    try:
        await apply_module(
            rest, namespace, module_manifest("drv", [literal(KERNEL, "127.0.0.1:1/m:1")])
        )
        await eventually(lambda: ready_module(rest, namespace, "drv"), timeout=60)

        async def refused_list() -> bool:
            return (
                running.metrics.requests_total(
                    verb="list", resource="preflightvalidations", code=404
                )
                > 0
            )

        await eventually(refused_list, timeout=30)
        assert running.operator.is_synced() and running.operator.problems() == []

        await install(rest, PREFLIGHT_CRD_FILENAME)
        body = {
            "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
            "kind": "PreflightValidation",
            "metadata": {"name": "after-the-crd"},
            "spec": {"kernelVersions": [KERNEL], "modules": [f"{namespace}/drv"]},
        }
        await rest.post(PREFLIGHTS, body)
        done = await eventually(lambda: complete(rest, "after-the-crd"), timeout=90)
        (entry,) = done["status"]["modules"]
        # nothing listens on 127.0.0.1:1: the answer is that the registry cannot be asked
        assert entry["module"] == f"{namespace}/drv" and entry["kernel"] == KERNEL
        assert entry["verdict"] == "ImageCheckFailed"
    finally:
        await running.stop()
