"""Preflight, end to end: `ooto preflight` and PreflightValidation on the local control plane.

Real registries answer every image check: the plain-HTTP `registry` (build mappings mark it
insecure) and the TLS `tls_registry` with htpasswd auth (mappings without build are always checked
over verified TLS, as a node's runtime would pull; the CLI trusts its CA through SSL_CERT_FILE).
The simulated kubelet plays build pods and pushes what they build (`pushing_builds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from ooto.metrics import Metrics
from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet, pushing_builds
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest, RestError
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    GROUP_PATH,
    apply_module,
    daemonsets,
    delete_module,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
    ready_module,
)
from tests.integration.test_builds_operator import (
    BuildPlayer,
    built_mapping,
    docker_config_secret,
    unique_repo,
)

OLD, NEW = "6.1.0-18-amd64", "6.8.0-31-generic"
GPU = {"ooto-test/gpu": "true"}
KANIKO = {"build_backend": "kaniko"}
PREFLIGHTS = f"{GROUP_PATH}/preflightvalidations"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
REPO = Path(__file__).parents[2]


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ooto.cli",
        "preflight",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture(loop_scope="session")
async def read_only_user(admin_rest: KubeRest, cluster: LocalCluster, namespace: str) -> Path:
    """The cluster's `ooto-operator` user allowed, in the test's namespace only, to list Modules
    and get Secrets: what a CI pipeline running `ooto preflight --module NS/NAME` needs, and proof
    that the command writes nothing. The namespace takes the Role and binding with it."""
    role = {
        "metadata": {"name": "preflight-reader"},
        "rules": [
            {"apiGroups": ["ooto.sigs.k8s.io"], "resources": ["modules"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }
    binding = {
        "metadata": {"name": "preflight-reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "preflight-reader",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ooto-operator"}
        ],
    }
    await admin_rest.post(f"{RBAC}/namespaces/{namespace}/roles", role)
    await admin_rest.post(f"{RBAC}/namespaces/{namespace}/rolebindings", binding)
    return cluster.operator_kubeconfig


@pytest_asyncio.fixture(loop_scope="session")
async def preflights(admin_rest: KubeRest) -> AsyncIterator[list[str]]:
    """Names of PreflightValidations a test creates: cluster-scoped, so no namespace takes them
    away; deleted after the test."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(RestError):
            await admin_rest.delete(f"{PREFLIGHTS}/{name}")


async def create_preflight(
    rest: KubeRest, names: list[str], spec: dict[str, Any]
) -> dict[str, Any]:
    name = f"pf-{secrets.token_hex(4)}"
    names.append(name)
    body = {"apiVersion": "ooto.sigs.k8s.io/v1alpha1", "kind": "PreflightValidation"}
    return await rest.post(PREFLIGHTS, {**body, "metadata": {"name": name}, "spec": spec})


async def complete(rest: KubeRest, name: str) -> dict[str, Any] | None:
    """The PreflightValidation once Complete for its current generation."""
    got = await rest.get(f"{PREFLIGHTS}/{name}")
    status = got.get("status") or {}
    done = any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    current = status.get("observedGeneration") == got["metadata"]["generation"]
    return got if done and current else None


def verdicts(validation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["module"], m["kernel"]): m for m in validation["status"]["modules"]}


async def jobs(rest: KubeRest, namespace: str) -> list[dict[str, Any]]:
    return list((await rest.get(f"/apis/batch/v1/namespaces/{namespace}/jobs"))["items"])


def builds_started(metrics: Metrics) -> float:
    sample = metrics.registry.get_sample_value(
        "ooto_builds_started_total", {"backend": "KanikoJobBackend"}
    )
    return sample or 0.0


# -- the command line -------------------------------------------------------------------------


async def test_cli_answers_per_module_and_kernel_with_exit_codes_and_creates_nothing(
    admin_rest: KubeRest,
    namespace: str,
    crd: str,
    registry: RegistryServer,
    tls_registry: RegistryServer,
    read_only_user: Path,
) -> None:
    assert tls_registry.credentials is not None and tls_registry.ca_file is not None
    user, password = tls_registry.credentials
    secrets_path = f"/api/v1/namespaces/{namespace}/secrets"
    await admin_rest.post(
        secrets_path, docker_config_secret("right", tls_registry.host, user, password)
    )
    await admin_rest.post(
        secrets_path, docker_config_secret("wrong", tls_registry.host, user, "nope")
    )
    built = unique_repo(registry, "built")
    plain = unique_repo(tls_registry, "plain")
    await registry.push_manifest(built.partition("/")[2], NEW)
    await tls_registry.push_manifest(plain.partition("/")[2], NEW)
    modules = {
        "present": ([built_mapping({"regexp": "^6"}, f"{built}:${{KERNEL_FULL_VERSION}}")], None),
        "willbuild": ([built_mapping({"literal": NEW}, f"{built}:missing")], None),
        "plain": ([{"literal": NEW, "containerImage": f"{plain}:{NEW}"}], "right"),
        "nobuild": ([{"literal": NEW, "containerImage": f"{plain}:absent"}], "right"),
        "nomap": ([{"literal": OLD, "containerImage": f"{plain}:{OLD}"}], "right"),
        "badauth": ([{"literal": NEW, "containerImage": f"{plain}:{NEW}"}], "wrong"),
    }
    for name, (mappings, secret) in modules.items():
        extra = {"imageRepoSecret": {"name": secret}} if secret else {}
        await apply_module(admin_rest, namespace, module_manifest(name, mappings, **extra))
    env = {"SSL_CERT_FILE": str(tls_registry.ca_file)}
    kubeconfig = ("--kubeconfig", str(read_only_user))
    every = [arg for name in modules for arg in ("--module", f"{namespace}/{name}")]

    async def answered() -> tuple[int, str, str] | None:  # RBAC grants take a moment to apply
        result = await run_cli("--kernel", NEW, *every, *kubeconfig, "-o", "json", env=env)
        return None if result[0] == 2 and "403" in result[2] else result

    code, out, err = await eventually(answered, timeout=20)
    assert code == 1, (out, err)
    found = {row["module"].split("/")[1]: row for row in json.loads(out)}
    assert {name: row["verdict"] for name, row in found.items()} == {
        "present": "Ready",
        "willbuild": "WillBuild",
        "plain": "Ready",
        "nobuild": "ImageMissing",
        "nomap": "NoMapping",
        "badauth": "ImageCheckFailed",
    }
    assert found["present"]["image"] == f"{built}:{NEW}"
    assert set(found["present"]) == {"module", "kernel", "verdict", "image", "message"}
    assert "rejected the credentials" in found["badauth"]["message"]
    assert password not in out and "nope" not in out

    ready_only = ["--module", f"{namespace}/present", "--module", f"{namespace}/willbuild"]
    code, out, err = await run_cli("--kernel", NEW, *ready_only, *kubeconfig, env=env)
    assert code == 0, (out, err)
    assert "2 of 2 Module/kernel pairs ready" in out and "WillBuild" in out

    two = ("--kernel", NEW, "--kernel", OLD, "--module", f"{namespace}/present")
    code, out, _ = await run_cli(*two, *kubeconfig, "-o", "yaml")
    rows = yaml.safe_load(out)
    assert code == 0 and [(r["kernel"], r["verdict"]) for r in rows] == [
        (OLD, "WillBuild"),  # never pushed; the mapping builds it (rows sorted by kernel)
        (NEW, "Ready"),
    ]
    assert not await jobs(admin_rest, namespace)

    code, _, err = await run_cli("--kernel", NEW, *kubeconfig)  # every namespace: not allowed
    assert code == 2 and "cannot list Modules" in err and "403" in err, err
    code, _, err = await run_cli("--kernel", NEW, "--kubeconfig", str(read_only_user) + ".absent")
    assert code == 2 and "is not a file" in err, err


# -- the PreflightValidation resource -----------------------------------------------------------


async def test_preflight_validation_reports_each_verdict_and_builds_nothing_by_default(
    admin_rest: KubeRest,
    namespace: str,
    registry: RegistryServer,
    auth_registry: RegistryServer,
    start_operator: OperatorFactory,
    preflights: list[str],
) -> None:
    assert auth_registry.credentials is not None
    user, _ = auth_registry.credentials
    secret = docker_config_secret(
        "wrong", auth_registry.host, user, f"wrong-{secrets.token_hex(4)}"
    )
    await admin_rest.post(f"/api/v1/namespaces/{namespace}/secrets", secret)
    built = unique_repo(registry, "pv")
    private = unique_repo(auth_registry, "pv")
    await registry.push_manifest(built.partition("/")[2], NEW)
    modules = {
        "present": [built_mapping({"literal": NEW}, f"{built}:{NEW}")],
        "willbuild": [built_mapping({"literal": NEW}, f"{built}:missing")],
        "nomap": [built_mapping({"literal": OLD}, f"{built}:{OLD}")],
        "badauth": [built_mapping({"literal": NEW}, f"{private}:{NEW}")],
    }
    for name, mappings in modules.items():
        extra = {"imageRepoSecret": {"name": "wrong"}} if name == "badauth" else {}
        await apply_module(admin_rest, namespace, module_manifest(name, mappings, **extra))
    await start_operator(watch_namespace=namespace, **KANIKO)
    keys = [f"{namespace}/{name}" for name in [*modules, "absent"]]
    created = await create_preflight(
        admin_rest, preflights, {"kernelVersions": [NEW], "modules": keys}
    )
    name = created["metadata"]["name"]

    done = await eventually(lambda: complete(admin_rest, name), timeout=30)
    found = {module.split("/")[1]: entry for (module, _), entry in verdicts(done).items()}
    assert {key: entry["verdict"] for key, entry in found.items()} == {
        "present": "Ready",
        "willbuild": "WillBuild",
        "nomap": "NoMapping",
        "badauth": "ImageCheckFailed",
        "absent": "InvalidSpec",
    }
    assert "rejected the credentials" in found["badauth"]["message"]
    status = done["status"]
    assert (status["total"], status["decided"], status["ready"]) == (5, 5, 2)
    (complete_condition,) = status["conditions"]
    assert complete_condition["reason"] == "NotReady"
    assert not await jobs(admin_rest, namespace), "pushBuiltImages is off: nothing is built"
    assert not await daemonsets(admin_rest, namespace)

    # A new generation is a new question: the answer follows the spec.
    patch = {"spec": {"modules": keys[:2]}}
    await admin_rest.patch(f"{PREFLIGHTS}/{name}", patch)
    again = await eventually(lambda: complete(admin_rest, name), timeout=30)
    assert {module: e["verdict"] for (module, _), e in verdicts(again).items()} == {
        keys[0]: "Ready",
        keys[1]: "WillBuild",
    }
    assert again["status"]["conditions"][0]["reason"] == "AllReady"
    assert again["status"]["observedGeneration"] == 2


async def test_push_built_images_builds_ahead_and_the_kernel_upgrade_needs_no_build(
    admin_rest: KubeRest,
    namespace: str,
    registry: RegistryServer,
    kubelet: SimulatedKubelet,
    start_operator: OperatorFactory,
    preflights: list[str],
) -> None:
    kubelet.job_outcome = pushing_builds(registry)
    repo = unique_repo(registry, "ahead")
    mapping = built_mapping({"regexp": "^6\\."}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    await kubelet.add_nodes([("pf-a", OLD, GPU)])
    operator = await start_operator(watch_namespace=namespace, **KANIKO)
    await apply_module(admin_rest, namespace, module_manifest("drv", [mapping]))
    await eventually(lambda: ready_module(admin_rest, namespace, "drv"), timeout=60)
    # The operator built the image of the running kernel (its Job goes once the image is in use).
    assert builds_started(operator.metrics) == 1
    old_jobs = {j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)}

    spec = {"kernelVersions": [NEW], "pushBuiltImages": True, "modules": [f"{namespace}/drv"]}
    created = await create_preflight(admin_rest, preflights, spec)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    done = await eventually(lambda: complete(admin_rest, name), timeout=60)
    entry = verdicts(done)[(f"{namespace}/drv", NEW)]
    assert (entry["verdict"], entry["image"]) == ("Built", f"{repo}:{NEW}")
    (built,) = [
        j for j in await jobs(admin_rest, namespace) if j["metadata"]["uid"] not in old_jobs
    ]
    owners = built["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
        ("PreflightValidation", name, uid)
    ]
    assert [ds["metadata"]["name"] for ds in await daemonsets(admin_rest, namespace)] == [
        ds["metadata"]["name"] for ds in await daemonsets(admin_rest, namespace, "drv")
    ]
    node = await admin_rest.get("/api/v1/nodes/pf-a")
    assert node["status"]["nodeInfo"]["kernelVersion"] == OLD, "preflight never touches nodes"
    started = builds_started(operator.metrics)
    assert started == 2  # the operator's build of OLD, preflight's build of NEW

    await kubelet.set_kernel("pf-a", NEW)

    async def upgraded() -> dict[str, Any] | None:
        module = await ready_module(admin_rest, namespace, "drv")
        kernels = kernel_status(module) if module else {}
        return module if set(kernels) == {NEW} and kernels[NEW]["phase"] == "Ready" else None

    module = await eventually(upgraded, timeout=60)
    assert kernel_status(module)[NEW]["build"] == "NotNeeded", "the image was there: no build"
    assert builds_started(operator.metrics) == started
    assert {j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)} <= old_jobs | {
        built["metadata"]["uid"]
    }

    # Deleting the PreflightValidation takes its build objects with it (garbage collector).
    await admin_rest.delete(f"{PREFLIGHTS}/{name}")

    async def collected() -> bool:
        uids = {j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)}
        return built["metadata"]["uid"] not in uids

    await eventually(collected, timeout=60)
    assert await get_module(admin_rest, namespace, "drv")


async def test_deleting_a_validation_mid_build_stops_its_work_and_removes_its_build(
    admin_rest: KubeRest,
    namespace: str,
    registry: RegistryServer,
    kubelet: SimulatedKubelet,
    start_operator: OperatorFactory,
    preflights: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.root")
    kubelet.default_job_outcome = "Running"  # the build never finishes on its own
    repo = unique_repo(registry, "held")
    mapping = built_mapping({"literal": NEW}, f"{repo}:{NEW}")
    await apply_module(admin_rest, namespace, module_manifest("drv", [mapping]))
    await start_operator(watch_namespace=namespace, **KANIKO)
    spec = {"kernelVersions": [NEW], "pushBuiltImages": True, "modules": [f"{namespace}/drv"]}
    created = await create_preflight(admin_rest, preflights, spec)
    name = created["metadata"]["name"]

    async def building() -> dict[str, Any] | None:
        got = await admin_rest.get(f"{PREFLIGHTS}/{name}")
        entries = (got.get("status") or {}).get("modules") or []
        return got if entries and "building" in entries[0].get("message", "") else None

    status = (await eventually(building, timeout=30))["status"]
    assert status["conditions"][0]["reason"] == "InProgress"
    assert (status["total"], status["decided"]) == (1, 0)
    (job,) = await jobs(admin_rest, namespace)
    assert job["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

    await admin_rest.delete(f"{PREFLIGHTS}/{name}")
    began = time.monotonic()
    await eventually(lambda: _no_jobs(admin_rest, namespace), timeout=90)
    print(f"build garbage-collected {time.monotonic() - began:.1f}s after the deletion")
    # The garbage collector may remove the Job before the operator hears of the deletion.
    await eventually(
        lambda: asyncio.sleep(
            0, any(f"preflight {name} deleted" in r.getMessage() for r in caplog.records)
        ),
        timeout=30,
    )


async def _no_jobs(rest: KubeRest, namespace: str) -> bool:
    return not await jobs(rest, namespace)


async def test_a_build_adopted_from_a_deleted_module_is_built_again_not_failed(
    admin_rest: KubeRest,
    namespace: str,
    registry: RegistryServer,
    kubelet: SimulatedKubelet,
    start_operator: OperatorFactory,
    preflights: list[str],
) -> None:
    """The validation needs an image a Module is building already: it adopts that Module's Job,
    which only the Module owns. Deleting the Module lets the garbage collector delete the Job;
    reproduced before the fix: the validation answered BuildFailed ("its build object was
    deleted"). It must build the image itself (a Job it owns) and answer Built."""
    BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    image = f"{unique_repo(registry, 'adopted')}:{NEW}"
    await kubelet.add_nodes([("pf-adopt", NEW, GPU)])
    operator = await start_operator(watch_namespace=namespace, **KANIKO)
    await apply_module(
        admin_rest, namespace, module_manifest("one", [built_mapping({"literal": NEW}, image)])
    )
    (first,) = await eventually(lambda: jobs(admin_rest, namespace), timeout=30)
    nowhere = {"ooto-test/none": "true"}  # asked about by the validation only
    await apply_module(
        admin_rest,
        namespace,
        module_manifest("drv", [built_mapping({"literal": NEW}, image)], selector=nowhere),
    )
    spec = {"kernelVersions": [NEW], "pushBuiltImages": True, "modules": [f"{namespace}/drv"]}
    created = await create_preflight(admin_rest, preflights, spec)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]

    async def building() -> bool:
        got = await admin_rest.get(f"{PREFLIGHTS}/{name}")
        entries = (got.get("status") or {}).get("modules") or []
        return bool(entries) and "building" in entries[0].get("message", "")

    await eventually(building, timeout=30)
    assert [j["metadata"]["uid"] for j in await jobs(admin_rest, namespace)] == [
        first["metadata"]["uid"]
    ], "the validation adopted the Module's running Job"
    await delete_module(admin_rest, namespace, "one")

    async def own_job() -> dict[str, Any] | None:
        found = [
            j
            for j in await jobs(admin_rest, namespace)
            if [o["uid"] for o in j["metadata"].get("ownerReferences") or []] == [uid]
        ]
        return found[0] if found else None

    job = await eventually(own_job, timeout=60)
    kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    done = await eventually(lambda: complete(admin_rest, name), timeout=60)
    entry = verdicts(done)[(f"{namespace}/drv", NEW)]
    assert (entry["verdict"], entry["image"]) == ("Built", image), entry
    # Module "one"'s kernel actor started a build (and went with its Module); the validation
    # counts one build of the image, started and finished, not the adopted one it lost.
    assert builds_started(operator.metrics) == 2

    def finished(outcome: str) -> float:
        name = f"ooto_builds_{outcome}_total"
        labels = {"backend": "KanikoJobBackend"}
        return operator.metrics.registry.get_sample_value(name, labels) or 0.0

    assert (finished("succeeded"), finished("failed")) == (1, 0)
