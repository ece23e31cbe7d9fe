"""Real builds through the whole operator with the Buildah backend (issue 14, section 1).

Nothing about the build is simulated: the operator creates its Buildah Job, the real Job
controller and scheduler make and bind the pod, and the simulated kubelet runs the pod's
containers for real (`execute_jobs`: the host's `/usr/bin/buildah` with the Job's exact arguments,
its ConfigMap and Secret volumes mounted at their mountPaths in a private mount namespace, under
the Job's capability set). Base images are made locally (busybox from scratch) and pushed to the
session's registries; Git builds clone from a local `git daemon`. Assertions read the pushed
image's files and config from the registry, the Module's status and its Events.

Needs root and Debian's buildah; under OOTO_REQUIRE_CLUSTER a missing buildah fails the tests.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from ooto.domain.kernels import build_job_name
from ooto.testing.images import GitServer, host_buildah, push_busybox_base
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    events,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
    ready_module,
)
from tests.integration.test_builds_operator import (
    docker_config_secret,
    jobs,
    not_ready_because,
    one_job,
)

PLUS = "6.1.0-rpi7-rpi-v8+"  # `+` is not tag-safe: the tag gets `_`, build args the raw string
GKE = "5.4.0-1054-gke"
GPU = {"ooto-test/gpu": "true"}
BUILDAH = {"build_backend": "buildah"}


def _require_buildah() -> None:
    reason = host_buildah()
    if reason is None:
        return
    if os.environ.get("OOTO_REQUIRE_CLUSTER"):
        pytest.fail(f"OOTO_REQUIRE_CLUSTER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def base_image(registry: RegistryServer) -> str:
    _require_buildah()
    return push_busybox_base(registry, f"base/busybox-{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def git_server() -> Iterator[GitServer]:
    _require_buildah()
    with GitServer() as server:
        yield server


@pytest.fixture
def real_builds(kubelet: SimulatedKubelet) -> SimulatedKubelet:
    _require_buildah()
    kubelet.execute_jobs = True
    return kubelet


def module_dockerfile(base: str) -> str:
    """A "driver" built per kernel: a file named after the kernel, and the build args."""
    return (
        f"FROM {base}\n"
        "ARG KERNEL_FULL_VERSION\n"
        "ARG FLAVOR\n"
        "RUN mkdir -p /opt/lib/modules/${KERNEL_FULL_VERSION} && "
        "echo ${FLAVOR} > /opt/lib/modules/${KERNEL_FULL_VERSION}/ooto.ko\n"
    )


def repo_of(registry: RegistryServer, name: str) -> str:
    return f"ooto-test/{name}-{secrets.token_hex(3)}"


def built(image: str, source: dict[str, Any], **build: Any) -> dict[str, Any]:
    insecure = {"insecure": True}  # the test registries speak plain HTTP
    return {
        "containerImage": image,
        "build": {**source, "pull": insecure, "push": insecure, **build},
    }


async def test_an_inline_dockerfile_is_built_with_the_kernel_variables_and_pushed(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,
    registry: RegistryServer,
    base_image: str,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    await real_builds.add_nodes([("bb1-a", PLUS, GPU)])
    await start_operator(watch_namespace=namespace, **BUILDAH)
    repo = repo_of(registry, "inline")
    mapping = {
        "literal": PLUS,
        **built(
            f"{registry.host}/{repo}:${{KERNEL_FULL_VERSION}}",
            {"dockerfile": module_dockerfile(base_image)},
            buildArgs=[{"name": "FLAVOR", "value": "rpi-${KERNEL_X}"}],
        ),
    }
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=30)

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=90)

    tag = "6.1.0-rpi7-rpi-v8_"
    assert kernel_status(module)[PLUS]["build"] == "Built"
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    assert (
        ds["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{registry.host}/{repo}:{tag}@{await registry.digest(repo, tag)}"
    )
    files = await registry.image_files(repo, tag)
    assert files[f"/opt/lib/modules/{PLUS}/ooto.ko"] == b"rpi-6\n", sorted(files)
    assert "/bin/busybox" in files, "built FROM the local base image"
    pod = job["spec"]["template"]["spec"]
    assert [c["command"] for c in (*pod["initContainers"], *pod["containers"])] == [
        ["/usr/bin/buildah"],
        ["/usr/bin/buildah"],
    ], "buildah by absolute path, plain arguments, no shell"


async def test_a_git_context_is_cloned_at_its_ref_and_directory_and_built(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,
    registry: RegistryServer,
    base_image: str,
    git_server: GitServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    name = f"kmod-{secrets.token_hex(3)}"
    containerfile = module_dockerfile(base_image) + "COPY extra.txt /opt/extra.txt\n"
    git_server.add_repository(
        name,
        {
            "main": {"README": "the default branch has no driver\n"},
            "release-5.4": {
                "driver/linux/Containerfile": containerfile,
                "driver/linux/extra.txt": "from the release branch\n",
            },
        },
    )
    await real_builds.add_nodes([("bb2-a", GKE, GPU)])
    await start_operator(watch_namespace=namespace, **BUILDAH)
    repo = repo_of(registry, "git")
    git = {
        "url": git_server.url(name),
        "ref": "release-${KERNEL_X}.${KERNEL_Y}",
        "contextDir": "driver/linux",
        "dockerfilePath": "Containerfile",
    }
    mapping = {
        "regexp": r"^5\.4\.0-[0-9]+-(?P<flavor>[a-z]+)$",
        **built(
            f"{registry.host}/{repo}:${{flavor}}-${{KERNEL_XYZ}}",
            {"git": git},
            buildArgs=[{"name": "FLAVOR", "value": "${flavor}"}],
        ),
    }
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=30)

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=90)

    assert kernel_status(module)[GKE]["build"] == "Built"
    files = await registry.image_files(repo, "gke-5.4.0")
    assert files[f"/opt/lib/modules/{GKE}/ooto.ko"] == b"gke\n"
    assert files["/opt/extra.txt"] == b"from the release branch\n"
    args = job["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[-1] == f"{git_server.url(name)}#release-5.4:driver/linux"


async def test_a_failing_dockerfile_gives_build_failed_with_the_end_of_its_log(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,
    registry: RegistryServer,
    base_image: str,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    await real_builds.add_nodes([("bb3-a", GKE, GPU)])
    await start_operator(
        watch_namespace=namespace, backoff_initial_seconds=60, backoff_max_seconds=60, **BUILDAH
    )
    # Far more than an Event holds before the error: only the end of the log can show it.
    flags = " ".join(f"-DOOTO_OPTION_{n}=1" for n in range(8))
    noisy = (
        f'RUN i=0; while [ $i -lt 300 ]; do echo "compiling object $i {flags}"; i=$((i+1)); done; '
    )
    failing = (
        noisy + 'echo "ooto_drv.c:42: error: KERNEL_FULL_VERSION=$KERNEL_FULL_VERSION"; false\n'
    )
    dockerfile = f"FROM {base_image}\nARG KERNEL_FULL_VERSION\n{failing}"
    repo = repo_of(registry, "broken")
    mapping = {"literal": GKE, **built(f"{registry.host}/{repo}:v1", {"dockerfile": dockerfile})}
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    module = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=90
    )
    assert kernel_status(module)[GKE]["build"] == "Failed"
    (event,) = await eventually(lambda: events(admin_rest, namespace, "BuildFailed"), timeout=30)
    message = event["message"]
    assert f"ooto_drv.c:42: error: KERNEL_FULL_VERSION={GKE}" in message, message
    assert "compiling object 299 " in message and "compiling object 0 " not in message
    assert len(message) <= 1024
    assert not await daemonsets(admin_rest, namespace, "mod")


async def test_push_to_a_registry_with_auth_uses_the_modules_secret(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,
    auth_registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    assert auth_registry.credentials is not None
    user, password = auth_registry.credentials
    base = push_busybox_base(auth_registry, f"base/busybox-{secrets.token_hex(3)}")
    for name, secret_password in (("right", password), ("wrong", f"x-{secrets.token_hex(6)}")):
        secret = docker_config_secret(name, auth_registry.host, user, secret_password)
        await admin_rest.post(f"/api/v1/namespaces/{namespace}/secrets", secret)
    await real_builds.add_nodes([("bb4-a", GKE, GPU)])
    await start_operator(watch_namespace=namespace, **BUILDAH)
    repo = repo_of(auth_registry, "private")
    source = {"dockerfile": module_dockerfile(base)}
    for name in ("right", "wrong"):
        mapping = {"literal": GKE, **built(f"{auth_registry.host}/{repo}-{name}:v1", source)}
        manifest = module_manifest(name, [mapping], imageRepoSecret={"name": name})
        await apply_module(admin_rest, namespace, manifest)
    job = await eventually(lambda: one_job(admin_rest, namespace), timeout=30)

    await eventually(lambda: ready_module(admin_rest, namespace, "right"), timeout=90)
    files = await auth_registry.image_files(f"{repo}-right", "v1")
    assert f"/opt/lib/modules/{GKE}/ooto.ko" in files, "pulled the base and pushed, with the Secret"
    wrong = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "wrong", "ImageCheckFailed"), timeout=30
    )
    message = condition(wrong, "Ready")["message"]
    assert f"rejected the credentials for user '{user}'" in message, message
    # The succeeded build goes once its image runs; 'wrong' never got one.
    await eventually(lambda: _no_jobs(admin_rest, namespace), timeout=30)
    assert job["metadata"]["labels"]["ooto.sigs.k8s.io/module"] == "right"
    every_event = json.dumps(await admin_rest.get(f"/api/v1/namespaces/{namespace}/events"))
    assert password not in every_event and password not in json.dumps(job)
    assert (await get_module(admin_rest, namespace, "right"))["status"]["kernels"][0]["image"]


async def test_a_build_that_cannot_start_gets_an_event(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    await kubelet.add_nodes([("bb5-a", GKE, GPU)])
    await start_operator(
        watch_namespace=namespace, backoff_initial_seconds=60, backoff_max_seconds=60, **BUILDAH
    )
    image = f"{registry.host}/{repo_of(registry, 'refused')}:v1"
    # Someone made an immutable ConfigMap under the name the build's Dockerfile needs: the API
    # server refuses to replace it, so the build cannot start.
    squatter = {
        "metadata": {"name": build_job_name("mod", image)},
        "data": {"Dockerfile": "FROM elsewhere\n"},
        "immutable": True,
    }
    await admin_rest.post(f"/api/v1/namespaces/{namespace}/configmaps", squatter)
    mapping = {"literal": GKE, **built(image, {"dockerfile": "FROM scratch\n"})}
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))

    module = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "mod", "BuildFailed"), timeout=30
    )
    assert "could not start the build" in condition(module, "Ready")["message"]
    (event,) = await eventually(lambda: events(admin_rest, namespace, "BuildFailed"), timeout=30)
    assert event["type"] == "Warning"
    assert f"kernel {GKE}: could not start the build of {image}" in event["message"]
    assert "immutable" in event["message"], event["message"]
    assert await jobs(admin_rest, namespace) == []


@pytest.fixture
def emptydir_registry() -> Iterator[RegistryServer]:
    """A registry of this test's own: it is wiped, which other tests must not see."""
    with RegistryServer().start() as server:
        yield server


async def test_an_image_the_registry_lost_is_built_again_when_nodes_cannot_pull_it(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,
    emptydir_registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
) -> None:
    registry = emptydir_registry
    base = push_busybox_base(registry, "base/busybox")

    async def pull(pod: dict[str, Any]) -> Any:
        """What a node's container runtime sees: a pod runs only if its image is there."""
        if pod["metadata"].get("labels", {}).get("job-name"):
            return None
        image, _, digest = pod["spec"]["containers"][0]["image"].partition("@")
        repo, _, tag = image.partition("/")[2].rpartition(":")
        try:
            await registry.manifest(repo, digest or tag)
        except RuntimeError:
            return "ImagePullBackOff"
        return "Ready"

    real_builds.pod_outcome = pull
    real_builds.pull_retry_seconds = 1.0
    await real_builds.add_nodes([("bb6-a", GKE, GPU)])
    operator = await start_operator(
        watch_namespace=namespace, backoff_initial_seconds=1, backoff_max_seconds=2, **BUILDAH
    )
    repo = repo_of(registry, "lost")
    mapping = {
        "literal": GKE,
        **built(f"{registry.host}/{repo}:v1", {"dockerfile": module_dockerfile(base)}),
    }
    created = await apply_module(admin_rest, namespace, module_manifest("mod", [mapping]))
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=90)
    builds = operator.metrics.requests_total(verb="create", resource="jobs", code=201)
    assert builds == 1

    registry.wipe()  # the registry's pod restarted on an emptyDir: every image is gone
    push_busybox_base(registry, "base/busybox")  # the base image comes from elsewhere
    await real_builds.add_node("bb6-b", GKE, GPU)  # a new node must pull the module image

    async def rebuilt() -> dict[str, Any] | None:
        if operator.metrics.requests_total(verb="create", resource="jobs", code=201) < 2:
            return None
        module = await ready_module(admin_rest, namespace, "mod")
        return module if module and module["status"]["nodesReady"] == 2 else None

    module = await eventually(rebuilt, timeout=90)

    assert module["metadata"]["generation"] == created["metadata"]["generation"], "no Module edit"
    assert kernel_status(module)[GKE]["build"] == "Built"
    assert f"/opt/lib/modules/{GKE}/ooto.ko" in await registry.image_files(repo, "v1")
    # One build, then exactly one more (a Job replaced under its name: 201, 409, 201).
    assert operator.metrics.requests_total(verb="create", resource="jobs", code=201) == 2


async def _no_jobs(rest: KubeRest, namespace: str) -> bool:
    return not [
        j for j in await jobs(rest, namespace) if not j["metadata"].get("deletionTimestamp")
    ]
