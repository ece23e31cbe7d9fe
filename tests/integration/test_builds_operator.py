"""In-cluster builds through the whole operator: issue 5's scenarios, end to end.

The real operator runs in this process against the local API server, a real docker-registry
answers image checks, and the simulated kubelet plays the build pods: `BuildPlayer` decides each
build pod's fate, pushes the built image to the registry when the pod succeeds (what Kaniko would
do), and remembers which Job attempts it saw. For the BuildConfig backend the test plays
OpenShift's build controller. Assertions read the cluster (Jobs, Builds, DaemonSets, Module
status, Events), the operator's own request metrics and its log lines.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from ooto.domain.kernels import build_job_name
from ooto.testing.kubelet import SimulatedKubelet, pushing_builds
from ooto.testing.podstatus import JobOutcome
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest, RestError
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    delete_module,
    events,
    eventually,
    exists,
    get_module,
    kernel_status,
    module_manifest,
    patch_module,
    ready_module,
)

A, B = "5.14.0-70.13.1.el9_0.x86_64", "5.4.0-1054-gke"
GPU = {"ooto-test/gpu": "true"}
DOCKERFILE = "FROM alpine\nARG KERNEL_FULL_VERSION\nRUN echo ${KERNEL_FULL_VERSION}\n"
KANIKO = {"build_backend": "kaniko"}  # never BuildConfig, even while another test's CRDs linger
OPENSHIFT_CRDS = Path(__file__).parent / "data" / "openshift-build-crds.yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
OPENSHIFT_BUILD_API = "/apis/build.openshift.io/v1"


class BuildPlayer:
    """A kubelet `job_outcome` hook playing Kaniko: the first `failing_attempts` Jobs of each name
    fail; after that a build pod's outcome is what `kubelet.job_outcomes` / `default_job_outcome`
    say, and a pod that succeeds first pushes its destination image to `registry`.
    `attempts` maps a Job name to the uids of the Jobs seen, in order; `dockerfiles` to the inline
    Dockerfile each attempt built (read while it runs: a succeeded build's objects are deleted)."""

    def __init__(
        self, kubelet: SimulatedKubelet, registry: RegistryServer, failing_attempts: int = 0
    ) -> None:
        self.kubelet = kubelet
        self.failing_attempts = failing_attempts
        self.attempts: dict[str, list[str]] = {}
        self.dockerfiles: dict[str, list[str]] = {}
        self.pods: list[JSON] = []  # every build pod decided, as the kubelet saw it
        self._push = pushing_builds(registry)
        kubelet.job_outcome = self

    async def __call__(self, pod: JSON) -> JobOutcome:
        meta = pod["metadata"]
        job = meta["labels"]["job-name"]
        seen = self.attempts.setdefault(job, [])
        self.pods.append(pod)
        for ref in meta.get("ownerReferences") or []:
            if ref["kind"] == "Job" and ref["uid"] not in seen:
                seen.append(ref["uid"])
                await self._read_dockerfile(pod, job)
        if len(seen) <= self.failing_attempts:
            return "Failed"
        outcome = self.kubelet.job_outcomes.get(job, self.kubelet.default_job_outcome)
        if outcome == "Succeeded":
            return await self._push(pod)
        return outcome

    async def _read_dockerfile(self, pod: JSON, job: str) -> None:
        for volume in pod["spec"].get("volumes") or []:
            name = (volume.get("configMap") or {}).get("name")
            if name:
                path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/configmaps/{name}"
                found = await self.kubelet.rest.get(path)
                self.dockerfiles.setdefault(job, []).append(found["data"]["Dockerfile"])


def unique_repo(registry: RegistryServer, name: str) -> str:
    """A repository nobody pushed to yet (the registry lives for the whole session)."""
    return f"{registry.host}/ooto-test/{name}-{secrets.token_hex(3)}"


def built_mapping(match: dict[str, str], image: str, **build: Any) -> dict[str, Any]:
    """A mapping whose image is built from an inline Dockerfile unless `build` says otherwise;
    the test registries speak plain HTTP, hence insecure."""
    insecure = {"insecure": True}
    return {
        **match,
        "containerImage": image,
        "build": {"dockerfile": DOCKERFILE, "pull": insecure, "push": insecure, **build},
    }


def reason_of(record: logging.LogRecord) -> str | None:
    """The `reason` field of one of the operator's structured log lines."""
    fields = next((v for v in vars(record).values() if isinstance(v, dict) and "reason" in v), {})
    return fields.get("reason")


async def not_ready_because(
    rest: KubeRest, namespace: str, name: str, reason: str
) -> dict[str, Any] | None:
    module = await get_module(rest, namespace, name)
    ready = condition(module, "Ready")
    return module if (ready.get("status"), ready.get("reason")) == ("False", reason) else None


async def no_build_objects(rest: KubeRest, namespace: str, name: str) -> bool:
    gone = [
        not await exists(rest, f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"),
        not await exists(rest, f"/api/v1/namespaces/{namespace}/configmaps/{name}"),
    ]
    return all(gone)


async def jobs(rest: KubeRest, namespace: str) -> list[dict[str, Any]]:
    found = await rest.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")
    return list(found.get("items", []))


async def one_job(rest: KubeRest, namespace: str) -> dict[str, Any] | None:
    found = await jobs(rest, namespace)
    assert len(found) <= 1, [j["metadata"]["name"] for j in found]
    return found[0] if found else None


def job_args(job: dict[str, Any]) -> list[str]:
    return list(job["spec"]["template"]["spec"]["containers"][0]["args"])


async def kernel_builds(rest: KubeRest, namespace: str, name: str) -> dict[str, str]:
    """kernel -> build phase, as the Module's status shows it."""
    module = await get_module(rest, namespace, name)
    return {kernel: k.get("build", "") for kernel, k in kernel_status(module).items()}


# -- 1, 2: the image decides whether a build runs ---------------------------------------------


async def test_a_missing_image_is_built_by_a_job_then_deployed(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    player = BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b1-a", A, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    repo = unique_repo(registry, "kmod")
    mapping = built_mapping(
        {"literal": A},
        f"{repo}:${{KERNEL_FULL_VERSION}}",
        buildArgs=[{"name": "FLAVOR", "value": "el${KERNEL_X}"}],
    )
    created = await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=20)
    image = f"{repo}:{A}"
    assert job["metadata"]["name"] == build_job_name("mod", image)
    assert job["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    args = job_args(job)
    for expected in (
        f"--destination={image}",
        "--dockerfile=/workspace/Dockerfile",
        "--context=dir:///workspace",
        f"--build-arg=KERNEL_FULL_VERSION={A}",
        "--build-arg=FLAVOR=el5",
        "--insecure",
        "--insecure-pull",
    ):
        assert expected in args, (expected, args)
    dockerfile = await admin_rest.get(
        f"/api/v1/namespaces/{namespace}/configmaps/{job['metadata']['name']}"
    )
    assert dockerfile["data"]["Dockerfile"] == DOCKERFILE, "the Dockerfile is never substituted"

    async def building() -> bool:
        return (await kernel_builds(admin_rest, namespace, "mod")).get(A) == "Building"

    await eventually(building, timeout=20)
    assert not await daemonsets(admin_rest, namespace, "mod"), "deployed before the image exists"

    kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)

    assert kernel_status(module)[A]["build"] == "Built"
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    pinned = f"{image}@{await registry.digest(repo.partition('/')[2], A)}"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == pinned, "by digest"
    assert player.attempts == {job["metadata"]["name"]: [job["metadata"]["uid"]]}
    # Its image in use, the succeeded Job (and its Dockerfile ConfigMap) have served their turn.
    await eventually(lambda: no_build_objects(admin_rest, namespace, job["metadata"]["name"]))


async def test_an_image_already_in_the_registry_needs_no_build(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    await kubelet.add_nodes([("b2-a", A, GPU)])
    repo = unique_repo(registry, "kmod")
    await registry.push_manifest(repo.partition("/")[2], A)
    operator = await start_operator(watch_namespace=namespace, **KANIKO)
    mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)

    assert kernel_status(module)[A]["build"] == "NotNeeded"
    assert await jobs(admin_rest, namespace) == []
    assert operator.metrics.requests_total(verb="create", resource="jobs") == 0
    assert len(await daemonsets(admin_rest, namespace, "mod")) == 1


# -- 3: failure, its Event, and the retry ------------------------------------------------------


async def test_a_failed_build_degrades_the_module_with_an_event_and_is_retried(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    player = BuildPlayer(kubelet, registry, failing_attempts=1)
    await kubelet.add_nodes([("b3-a", A, GPU)])
    await start_operator(
        watch_namespace=namespace, backoff_initial_seconds=1, backoff_max_seconds=2, **KANIKO
    )
    repo = unique_repo(registry, "flaky")
    mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    image = f"{repo}:{A}"

    module = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=30
    )
    assert image in condition(module, "Ready")["message"]
    assert kernel_status(module)[A]["build"] == "Failed"
    assert not await daemonsets(admin_rest, namespace, "mod")
    (event, *_) = await eventually(lambda: events(admin_rest, namespace, "BuildFailed"))
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == "mod"
    assert image in event["message"] and "log tail" in event["message"]
    # No kubelet serves logs here: the tail is the sentence saying why there is none.
    assert "log unavailable" in event["message"], event["message"]

    # After the backoff the operator replaces the failed Job; this attempt succeeds.
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=20)

    assert kernel_status(module)[A]["build"] == "Built"
    name = build_job_name("mod", image)
    assert len(player.attempts[name]) == 2 and set(player.attempts) == {name}
    failures = [r.getMessage() for r in caplog.records if reason_of(r) == "BuildFailed"]
    assert len(failures) == 1, f"one failed attempt, one failure: {failures}"


async def test_a_new_module_generation_retries_a_failed_build_at_once(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    player = BuildPlayer(kubelet, registry, failing_attempts=1)
    await kubelet.add_nodes([("b3g-a", A, GPU)])
    backoff = 60.0
    await start_operator(
        watch_namespace=namespace,
        backoff_initial_seconds=backoff,
        backoff_max_seconds=backoff,
        **KANIKO,
    )
    mapping = built_mapping(
        {"literal": A}, f"{unique_repo(registry, 'fixed')}:${{KERNEL_FULL_VERSION}}"
    )
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=30
    )

    mapping["build"]["dockerfile"] = DOCKERFILE + "RUN make modules\n"
    await patch_module(admin_rest, namespace, "mod", {"spec": {"kernelMappings": [mapping]}})

    # Well within the backoff: the new generation is what starts the second attempt.
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=20)
    assert kernel_status(module)[A]["build"] == "Built"
    assert [len(uids) for uids in player.attempts.values()] == [2]
    ((first, second),) = player.dockerfiles.values()
    assert not first.endswith("RUN make modules\n") and second.endswith("RUN make modules\n")


async def test_a_failed_build_stays_until_the_kernel_builds_another_image(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """Failed builds are kept for inspection, the newest per kernel: a build of another image
    for that kernel replaces it, and a succeeded one goes once its image is in use."""
    player = BuildPlayer(kubelet, registry)
    old = unique_repo(registry, "old")
    kubelet.job_outcomes[build_job_name("mod", f"{old}:5.14.0")] = "Failed"  # the old image's
    await kubelet.add_nodes([("b3n-a", A, GPU)])
    await start_operator(
        watch_namespace=namespace, backoff_initial_seconds=60, backoff_max_seconds=60, **KANIKO
    )
    mapping = built_mapping({"literal": A}, f"{old}:${{KERNEL_XYZ}}")
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=30
    )
    (failed,) = await jobs(admin_rest, namespace)  # kept for `kubectl logs`

    mapping["containerImage"] = f"{unique_repo(registry, 'new')}:${{KERNEL_XYZ}}"
    await patch_module(admin_rest, namespace, "mod", {"spec": {"kernelMappings": [mapping]}})
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)
    await eventually(lambda: no_build_objects(admin_rest, namespace, failed["metadata"]["name"]))
    assert len(player.attempts) == 2

    async def no_jobs() -> bool:
        return await jobs(admin_rest, namespace) == []

    await eventually(no_jobs, timeout=20)


# -- 4, 5: one Job per image, whoever asks ---------------------------------------------------


async def test_an_operator_restarted_mid_build_adopts_the_running_job(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ooto.builds")
    player = BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b4-a", A, GPU)])
    first = await start_operator(watch_namespace=namespace, **KANIKO)
    repo = unique_repo(registry, "kmod")
    mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=20)
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    await first.stop()

    second = await start_operator(watch_namespace=namespace, **KANIKO)

    async def adopted() -> bool:
        lines = [r.getMessage() for r in caplog.records]
        return any("adopt" in line and line.endswith(f"Job {name}") for line in lines)

    await eventually(adopted, timeout=20)
    kubelet.set_job_outcome(name, "Succeeded")
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)

    assert kernel_status(module)[A]["build"] == "Built"
    assert second.metrics.requests_total(verb="create", resource="jobs") == 0
    assert player.attempts == {name: [uid]}


async def test_an_operator_restarted_after_a_failed_build_replaces_the_job_at_once(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    player = BuildPlayer(kubelet, registry, failing_attempts=1)
    await kubelet.add_nodes([("b4f-a", A, GPU)])
    settings = {"backoff_initial_seconds": 60.0, "backoff_max_seconds": 60.0, **KANIKO}
    first = await start_operator(watch_namespace=namespace, **settings)
    mapping = built_mapping(
        {"literal": A}, f"{unique_repo(registry, 'kmod')}:${{KERNEL_FULL_VERSION}}"
    )
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=30
    )
    await first.stop()

    # The failed Job is in the new operator's cache when it starts: it must not read it as the
    # outcome of the build it starts, nor wait out the old operator's backoff.
    await start_operator(watch_namespace=namespace, **settings)
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=20)

    assert kernel_status(module)[A]["build"] == "Built"
    (uids,) = player.attempts.values()
    assert len(uids) == 2  # the failed Job, then the one that replaced it


async def test_two_kernels_resolving_to_one_image_share_one_job(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    player = BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b5-a", A, GPU), ("b5-b", B, GPU)])
    operator = await start_operator(watch_namespace=namespace, **KANIKO)
    image = f"{unique_repo(registry, 'kmod')}:shared"
    mapping = built_mapping({"regexp": r"^5\."}, image)
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    async def both_building() -> bool:
        builds = await kernel_builds(admin_rest, namespace, "mod")
        return builds == {A: "Building", B: "Building"}

    await eventually(both_building, timeout=20)
    job = await eventually(lambda: one_job(admin_rest, namespace))
    kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)

    assert {k: s["build"] for k, s in kernel_status(module).items()} == {A: "Built", B: "Built"}
    assert len(await daemonsets(admin_rest, namespace, "mod")) == 2
    assert operator.metrics.requests_total(verb="create", resource="jobs") == 1
    assert player.attempts == {job["metadata"]["name"]: [job["metadata"]["uid"]]}


async def test_two_modules_needing_one_image_share_one_job(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    player = BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b5m-a", A, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    image = f"{unique_repo(registry, 'kmod')}:shared"
    for name in ("one", "two"):
        mapping = built_mapping({"literal": A}, image)
        await apply_module(admin_rest, namespace, module_manifest(name, [mapping]))

    async def both_building() -> bool:
        builds = [await kernel_builds(admin_rest, namespace, n) for n in ("one", "two")]
        return builds == [{A: "Building"}, {A: "Building"}]

    await eventually(both_building, timeout=20)
    job = await eventually(lambda: one_job(admin_rest, namespace))
    kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    for name in ("one", "two"):
        module = await eventually(lambda n=name: ready_module(admin_rest, namespace, n), timeout=10)
        assert kernel_status(module)[A]["build"] == "Built"
    assert player.attempts == {job["metadata"]["name"]: [job["metadata"]["uid"]]}


# -- 6: a registry that wants credentials ----------------------------------------------------


def docker_config_secret(name: str, host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {host: {"username": user, "password": password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


async def test_registry_credentials_come_from_the_secret_and_never_leak(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    auth_registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert auth_registry.credentials is not None
    user, password = auth_registry.credentials
    wrong = f"wrong-{secrets.token_hex(8)}"
    secrets_path = f"/api/v1/namespaces/{namespace}/secrets"
    right_secret = docker_config_secret("right", auth_registry.host, user, password)
    wrong_secret = docker_config_secret("wrong", auth_registry.host, user, wrong)
    for body in (right_secret, wrong_secret):
        await admin_rest.post(secrets_path, body)
    player = BuildPlayer(kubelet, auth_registry)
    await kubelet.add_nodes([("b6-a", A, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    repo = unique_repo(auth_registry, "private")
    mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    for name in ("right", "wrong", "absent"):
        manifest = module_manifest(name, [mapping], imageRepoSecret={"name": name})
        await apply_module(admin_rest, namespace, manifest)

    good = await eventually(lambda: ready_module(admin_rest, namespace, "right"), timeout=30)
    assert kernel_status(good)[A]["build"] == "Built", "missing, built and pushed, re-checked"
    pod = player.pods[-1]  # its Job is deleted once the image is in use
    mounted = [v["secret"] for v in pod["spec"]["volumes"] if "secret" in v]
    assert [(s["secretName"], s["items"]) for s in mounted] == [
        ("right", [{"key": ".dockerconfigjson", "path": "config.json"}])
    ], "Kaniko pushes with the Module's secret as its docker config"
    bad = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "wrong", "ImageCheckFailed"), timeout=30
    )
    message = condition(bad, "Ready")["message"]
    assert "rejected the credentials" in message and auth_registry.host in message, message
    assert not await daemonsets(admin_rest, namespace, "wrong")
    absent = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "absent", "ImageCheckFailed"), timeout=30
    )
    assert "Secret absent (spec.imageRepoSecret) not found" in condition(absent, "Ready")["message"]

    secret_texts = {
        password,
        wrong,
        *(base64.b64encode(f"{user}:{p}".encode()).decode() for p in (password, wrong)),
        *(s["data"][".dockerconfigjson"] for s in (right_secret, wrong_secret)),
    }
    statuses = [json.dumps(m.get("status")) for m in (good, bad, absent)]
    every_event = json.dumps(await admin_rest.get(f"/api/v1/namespaces/{namespace}/events"))
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    for text in secret_texts:
        assert not [r.getMessage() for r in caplog.records if text in r.getMessage()]
        assert text not in caplog.text
        assert all(text not in status for status in statuses)
        assert text not in every_event


async def test_a_registry_with_an_untrusted_certificate_needs_insecure(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    tls_registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    assert tls_registry.credentials is not None
    secret = docker_config_secret("creds", tls_registry.host, *tls_registry.credentials)
    await admin_rest.post(f"/api/v1/namespaces/{namespace}/secrets", secret)
    repo = unique_repo(tls_registry, "tls")
    await tls_registry.push_manifest(repo.partition("/")[2], A)
    await kubelet.add_nodes([("b6t-a", A, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    for name, insecure in (("strict", False), ("lax", True)):
        mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
        mapping["build"]["push"] = {"insecure": insecure}
        manifest = module_manifest(name, [mapping], imageRepoSecret={"name": "creds"})
        await apply_module(admin_rest, namespace, manifest)

    lax = await eventually(lambda: ready_module(admin_rest, namespace, "lax"), timeout=30)
    assert kernel_status(lax)[A]["build"] == "NotNeeded", "unverified TLS, as --insecure-registry"
    strict = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "strict", "ImageCheckFailed"), timeout=30
    )
    message = condition(strict, "Ready")["message"]
    assert "not trusted" in message and "insecure" in message, message
    assert await jobs(admin_rest, namespace) == [], "a registry we cannot ask is no reason to build"


# -- 7: a Git build context ------------------------------------------------------------------


async def test_a_git_build_points_kaniko_at_the_repository_ref_and_directory(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b7-b", B, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    repo = unique_repo(registry, "gitbuilt")
    git = {
        "url": "https://git.example.com/acme/kmod.git",
        "ref": "release-${KERNEL_X}.${KERNEL_Y}-${flavor}",
        "contextDir": "driver/linux",
        "dockerfilePath": "Containerfile",
    }
    mapping = {
        "regexp": r"^5\.4\.0-[0-9]+-(?P<flavor>[a-z]+)$",
        "containerImage": f"{repo}:${{flavor}}-${{KERNEL_XYZ}}",
        "build": {
            "git": git,
            "buildArgs": [{"name": "DRIVER", "value": "${MOD_NAME}-${flavor}"}],
            "push": {"insecure": True},
        },
    }
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=20)
    args = job_args(job)
    assert args[:3] == [
        "--context=git://git.example.com/acme/kmod.git#refs/heads/release-5.4-gke",
        "--dockerfile=Containerfile",
        "--context-sub-path=driver/linux",
    ]
    assert f"--destination={repo}:gke-5.4.0" in args
    assert "--build-arg=DRIVER=mod-gke" in args
    assert f"--build-arg=KERNEL_FULL_VERSION={B}" in args
    configmaps = await admin_rest.get(f"/api/v1/namespaces/{namespace}/configmaps")
    names = [c["metadata"]["name"] for c in configmaps.get("items", [])]
    assert job["metadata"]["name"] not in names, "a git build has no Dockerfile ConfigMap"


# -- 8: OpenShift -----------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def openshift_builds(admin_rest: KubeRest) -> AsyncIterator[None]:
    """BuildConfig and Build served as CRDs, removed afterwards (other tests expect Kaniko)."""
    crds = yaml.safe_load(OPENSHIFT_CRDS.read_text())["items"]
    for body in crds:
        try:
            await admin_rest.post(CRD_PATH, body)
        except RestError as error:
            if error.status != 409:
                raise

    async def served() -> bool:
        try:
            listing = await admin_rest.get(OPENSHIFT_BUILD_API)
        except RestError:
            return False
        return {"buildconfigs", "builds"} <= {r["name"] for r in listing.get("resources", [])}

    await eventually(served, timeout=30)
    yield
    for body in crds:
        await admin_rest.delete(f"{CRD_PATH}/{body['metadata']['name']}")

    async def gone() -> bool:
        try:
            await admin_rest.get(OPENSHIFT_BUILD_API)
        except RestError as error:
            return error.status == 404
        return False

    await eventually(gone, timeout=60)


async def test_on_openshift_a_completed_build_leads_to_the_daemonset(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    openshift_builds: None,
    start_operator: OperatorFactory,
) -> None:
    await kubelet.add_nodes([("b8-a", A, GPU)])
    operator = await start_operator(watch_namespace=namespace)  # build_backend "auto"
    repo = unique_repo(registry, "onopenshift")
    mapping = built_mapping({"literal": A}, f"{repo}:${{KERNEL_FULL_VERSION}}")
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    builds_path = f"{OPENSHIFT_BUILD_API}/namespaces/{namespace}/builds"

    async def builds(count: int) -> list[dict[str, Any]] | None:
        found = (await admin_rest.get(builds_path)).get("items", [])
        assert len(found) <= count, [b["metadata"]["name"] for b in found]
        return sorted(found, key=lambda b: b["metadata"]["name"]) if len(found) == count else None

    (first,) = await eventually(lambda: builds(1), timeout=20)
    image = f"{repo}:{A}"
    assert first["spec"]["output"]["to"] == {"kind": "DockerImage", "name": image}
    assert await jobs(admin_rest, namespace) == [], "BuildConfig backend, not Kaniko"

    # OpenShift's build controller, played by the test: the first Build fails, the retry
    # (a new Build of the same BuildConfig) pushes the image and completes.
    await set_build_phase(admin_rest, f"{builds_path}/{first['metadata']['name']}", "Failed")
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=20
    )
    assert not await daemonsets(admin_rest, namespace, "mod")
    _, second = await eventually(lambda: builds(2), timeout=20)
    assert second["metadata"]["name"].endswith("-2"), second["metadata"]["name"]
    await registry.push_manifest(repo.partition("/")[2], A)
    await set_build_phase(admin_rest, f"{builds_path}/{second['metadata']['name']}", "Complete")

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=30)
    assert kernel_status(module)[A]["build"] == "Built"
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    pinned = f"{image}@{await registry.digest(repo.partition('/')[2], A)}"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == pinned, "by digest"
    assert operator.metrics.requests_total(verb="create", resource="builds") == 2


async def set_build_phase(rest: KubeRest, build_path: str, phase: str) -> None:
    await rest.patch(f"{build_path}/status", {"status": {"phase": phase}})


async def test_deleting_the_module_that_started_a_shared_build_does_not_fail_the_other(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    """Two Modules need one image: the second adopts the first one's running Job, which only the
    first owns. Deleting the first Module lets the garbage collector delete that Job; reproduced
    before the fix: the second Module's kernel took that for its own build's failure
    (BuildFailed, a Warning Event, a backoff). It must build the image itself instead."""
    BuildPlayer(kubelet, registry)
    kubelet.default_job_outcome = "Running"
    await kubelet.add_nodes([("b5o-a", A, GPU)])
    await start_operator(watch_namespace=namespace, **KANIKO)
    image = f"{unique_repo(registry, 'kmod')}:owned"
    await apply_module(
        admin_rest, namespace, module_manifest("one", [built_mapping({"literal": A}, image)])
    )
    first = await eventually(lambda: one_job(admin_rest, namespace))
    await apply_module(
        admin_rest, namespace, module_manifest("two", [built_mapping({"literal": A}, image)])
    )
    await eventually(lambda: kernel_builds_are(admin_rest, namespace, "two", "Building"))
    await delete_module(admin_rest, namespace, "one")

    async def own_job() -> dict[str, Any] | None:
        others = await jobs(admin_rest, namespace)
        found = [j for j in others if j["metadata"]["uid"] != first["metadata"]["uid"]]
        return found[0] if found else None

    job = await eventually(own_job, timeout=60)
    assert job["metadata"]["name"] == build_job_name("two", image)
    kubelet.set_job_outcome(job["metadata"]["name"], "Succeeded")
    await eventually(lambda: ready_module(admin_rest, namespace, "two"), timeout=60)
    assert await events(admin_rest, namespace, "BuildFailed") == []


async def kernel_builds_are(rest: KubeRest, namespace: str, name: str, phase: str) -> bool:
    builds = await kernel_builds(rest, namespace, name)
    return bool(builds) and set(builds.values()) == {phase}
