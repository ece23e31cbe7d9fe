"""Build backends against the real API server, Job controller, scheduler and garbage collector,
with the simulated kubelet deciding what build pods do. No Kaniko runs: the kubelet is told
whether a build pod succeeds or fails.

Scope: Kaniko Jobs (arguments, one Job per image however many ask, adoption, failure read back,
log tail without a real kubelet, retry replaces the failed Job, deletion) and the BuildConfig
backend on BuildConfig/Build CRDs (the test plays OpenShift's build controller), including
backend selection by discovery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from ooto.builds.backends import BuildahJobBackend, BuildConfigBackend, KanikoJobBackend
from ooto.builds.buildconfig import BUILD_CONFIG_LABEL
from ooto.builds.cluster import ApiClientReads, KubeApiReads
from ooto.builds.kaniko import observe_job
from ooto.builds.model import BUILD_SELECTOR, LABEL_IMAGE_HASH
from ooto.builds.select import backend_for, select_backend
from ooto.domain.api.module import Module
from ooto.domain.kernels import KernelPlan, kernel_hash, plan_kernel
from ooto.kube.client import KubeApi
from ooto.kube.errors import NotFound
from ooto.kube.resources import BUILDCONFIGS, BUILDS, CONFIGMAPS, CRDS, JOBS
from ooto.settings import Settings
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest

from .scenario_support import apply_module, eventually, module_manifest, patch_module

KERNEL = "5.14.0-70.13.1.el9_0.x86_64"
DOCKERFILE = "FROM alpine\nARG KERNEL_FULL_VERSION\n"
CRD_FILE = Path(__file__).parent / "data" / "openshift-build-crds.yaml"


@pytest_asyncio.fixture(loop_scope="session")
async def api(admin_client: Any) -> KubeApi:
    return KubeApi(admin_client)  # not closed: the session owns admin_client


async def make_module(
    rest: KubeRest, namespace: str, name: str, image: str, build: dict[str, Any] | None = None
) -> tuple[Module, KernelPlan]:
    mapping = {
        "literal": KERNEL,
        "containerImage": image,
        "build": build or {"dockerfile": DOCKERFILE},
    }
    created = await apply_module(rest, namespace, module_manifest(name, [mapping]))
    module = Module.model_validate(created)
    plan = plan_kernel(module, KERNEL)
    assert plan is not None and plan.build is not None
    return module, plan


def unique_image() -> str:
    return f"registry.local:5000/acme/mod-{secrets.token_hex(3)}:${{KERNEL_FULL_VERSION}}"


async def jobs_of(api: KubeApi, namespace: str, image: str) -> list[dict[str, Any]]:
    selector = f"{LABEL_IMAGE_HASH}={kernel_hash(image)}"
    return (await api.list(JOBS, namespace, label_selector=selector)).items


async def test_kaniko_job_runs_once_per_image_and_is_adopted(
    api: KubeApi, admin_rest: KubeRest, namespace: str, crd: str
) -> None:
    backend = KanikoJobBackend(api, KubeApiReads(api))
    image_template = unique_image()
    first, plan = await make_module(admin_rest, namespace, "acme", image_template)
    ref = await backend.start(first, plan)
    assert (ref.resource, ref.namespace, ref.adopted) == (JOBS, namespace, False)
    job = await api.get(JOBS, ref.name, namespace)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--destination={plan.image}" in args
    assert f"--build-arg=KERNEL_FULL_VERSION={KERNEL}" in args
    assert job["spec"]["backoffLimit"] == 0
    configmap = await api.get(CONFIGMAPS, ref.name, namespace)
    assert configmap["data"]["Dockerfile"] == DOCKERFILE
    # Restart of the operator, another kernel, another Module: all adopt the running Job.
    again = await backend.start(first, plan)
    other, other_plan = await make_module(admin_rest, namespace, "other", image_template)
    assert other_plan.image == plan.image
    restarted = KanikoJobBackend(api, KubeApiReads(api))
    concurrent = await asyncio.gather(
        restarted.start(other, other_plan), restarted.start(first, plan)
    )
    for adopted in (again, *concurrent):
        assert (adopted.name, adopted.adopted) == (ref.name, True)
    assert [j["metadata"]["name"] for j in await jobs_of(api, namespace, plan.image)] == [ref.name]
    selected = await api.list(JOBS, namespace, label_selector=BUILD_SELECTOR)
    assert len(selected.items) == 1


class RequestCounter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        self.calls.append((verb, resource))


async def test_many_kernels_asking_at_once_cost_one_list_and_one_create(
    admin_client: Any, admin_rest: KubeRest, namespace: str, crd: str
) -> None:
    counter = RequestCounter()
    api = KubeApi(admin_client, observer=counter)
    backend = KanikoJobBackend(api, KubeApiReads(api))
    module, plan = await make_module(admin_rest, namespace, "acme", unique_image())
    refs = await asyncio.gather(*(backend.start(module, plan) for _ in range(500)))
    assert len({ref.name for ref in refs}) == 1
    assert sum(not ref.adopted for ref in refs) == 1
    assert counter.calls == [("list", "jobs"), ("create", "configmaps"), ("create", "jobs")]
    assert len(await jobs_of(api, namespace, plan.image)) == 1


@pytest.mark.usefixtures("crd")
async def test_failed_build_is_observed_its_log_tail_degrades_and_a_retry_replaces_it(
    api: KubeApi,
    admin_client: Any,
    admin_rest: KubeRest,
    namespace: str,
    kubelet: SimulatedKubelet,
) -> None:
    kubelet.default_job_outcome = "Running"
    await kubelet.add_node(f"builder-{secrets.token_hex(3)}", KERNEL)
    backend = KanikoJobBackend(api, KubeApiReads(api))
    module, plan = await make_module(admin_rest, namespace, "acme", unique_image())
    ref = await backend.start(module, plan)
    first_uid = (await api.get(JOBS, ref.name, namespace))["metadata"]["uid"]
    kubelet.set_job_outcome(ref.name, "Failed")

    async def failed() -> Any:
        observation = backend.observe(await api.get(JOBS, ref.name, namespace))
        return observation if observation.phase == "Failed" else None

    observation = await eventually(failed, timeout=60)
    assert observation.image == plan.image and observation.module == "acme"
    assert plan.image in observation.message
    # No kubelet serves logs here: the API server answers an error, which becomes a sentence.
    for reads in (KubeApiReads(api), ApiClientReads(admin_client)):
        tail = await KanikoJobBackend(api, reads).log_tail(namespace, ref.name)
        assert tail.startswith("(build log unavailable"), tail
    kubelet.set_job_outcome(ref.name, "Running")
    retry = await backend.start(module, plan)
    assert (retry.name, retry.adopted) == (ref.name, False)
    job = await api.get(JOBS, ref.name, namespace)
    assert job["metadata"]["uid"] != first_uid
    assert observe_job(job).phase == "Running"


async def test_succeeded_build_then_delete_removes_job_and_dockerfile(
    api: KubeApi, admin_rest: KubeRest, namespace: str, crd: str, kubelet: SimulatedKubelet
) -> None:
    await kubelet.add_node(f"builder-{secrets.token_hex(3)}", KERNEL)
    backend = KanikoJobBackend(api, KubeApiReads(api))
    module, plan = await make_module(admin_rest, namespace, "acme", unique_image())
    ref = await backend.start(module, plan)

    async def succeeded() -> bool:
        return backend.observe(await api.get(JOBS, ref.name, namespace)).phase == "Succeeded"

    await eventually(succeeded, timeout=60)
    await backend.delete(namespace, ref.name)
    await backend.delete(namespace, ref.name)  # idempotent
    for resource in (JOBS, CONFIGMAPS):
        with pytest.raises(NotFound):
            await api.get(resource, ref.name, namespace)


async def test_kaniko_git_build_and_no_log_without_pods(
    api: KubeApi, admin_rest: KubeRest, namespace: str, crd: str
) -> None:
    backend = KanikoJobBackend(api, KubeApiReads(api))
    git = {
        "url": "https://git.example.com/acme/kmod.git",
        "ref": "v${KERNEL_XYZ}",
        "contextDir": "k",
    }
    module, plan = await make_module(admin_rest, namespace, "acme", unique_image(), {"git": git})
    ref = await backend.start(module, plan)
    args = (await api.get(JOBS, ref.name, namespace))["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--context=git://git.example.com/acme/kmod.git#refs/heads/v5.14.0" in args
    assert "--context-sub-path=k" in args
    with pytest.raises(NotFound):
        await api.get(CONFIGMAPS, ref.name, namespace)
    assert (await backend.log_tail(namespace, "no-such-build")).startswith("(no pod left")


# -- OpenShift BuildConfig backend -----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def openshift_builds(api: KubeApi) -> AsyncIterator[None]:
    """BuildConfig and Build CRDs, removed afterwards so "auto" picks Kaniko in other tests."""
    reads = KubeApiReads(api)
    crds = yaml.safe_load(CRD_FILE.read_text())["items"]
    for body in crds:
        await api.create(CRDS, body)

    async def served() -> bool:
        resources = await reads.served_resources("build.openshift.io", "v1")
        return resources is not None and {"buildconfigs", "builds"} <= resources

    await eventually(served, timeout=30)
    yield
    for body in crds:
        await api.delete(CRDS, body["metadata"]["name"])

    async def gone() -> bool:
        return await reads.served_resources("build.openshift.io", "v1") is None

    await eventually(gone, timeout=60)


async def test_auto_selects_buildah_without_openshift_builds(api: KubeApi) -> None:
    reads = KubeApiReads(api)

    async def no_openshift_builds() -> bool:  # the fixture that adds them waits for their removal
        return await reads.served_resources("build.openshift.io", "v1") is None

    await eventually(no_openshift_builds, timeout=60)
    assert isinstance(await backend_for(api, "auto", reads), BuildahJobBackend)
    assert isinstance(await select_backend(api, Settings.load({})), BuildahJobBackend)
    assert isinstance(await backend_for(api, "kaniko", reads), KanikoJobBackend)
    forced = await backend_for(api, "buildconfig", reads)
    assert isinstance(forced, BuildConfigBackend)


async def set_build_phase(
    api: KubeApi, namespace: str, name: str, phase: str, **status: str
) -> None:
    """What OpenShift's build controller would write."""
    await api.patch_status(BUILDS, name, {"status": {"phase": phase, **status}}, namespace)


async def test_buildconfig_backend_on_build_crds(
    api: KubeApi, admin_rest: KubeRest, namespace: str, crd: str, openshift_builds: None
) -> None:
    backend = await select_backend(api, Settings.load({"build_backend": "auto"}))
    assert isinstance(backend, BuildConfigBackend)
    assert backend.resource == BUILDS
    module, plan = await make_module(
        admin_rest,
        namespace,
        "acme",
        unique_image(),
        {"dockerfile": DOCKERFILE, "buildArgs": [{"name": "A", "value": "1"}]},
    )
    ref = await backend.start(module, plan)
    config = await api.get(BUILDCONFIGS, ref.name.rsplit("-", 1)[0], namespace)
    assert config["spec"]["strategy"]["dockerStrategy"]["buildArgs"][-1] == {
        "name": "A",
        "value": "1",
    }
    assert ref.name == f"{config['metadata']['name']}-1" and not ref.adopted
    build = await api.get(BUILDS, ref.name, namespace)
    assert build["metadata"]["labels"][BUILD_CONFIG_LABEL] == config["metadata"]["name"]
    assert build["metadata"]["ownerReferences"][0]["uid"] == config["metadata"]["uid"]
    assert backend.observe(build).phase == "Running"
    assert await backend.start(module, plan) == dataclasses.replace(ref, adopted=True)

    await set_build_phase(api, namespace, ref.name, "Failed", reason="DockerBuildFailed")
    failed = backend.observe(await api.get(BUILDS, ref.name, namespace))
    assert failed.phase == "Failed" and "DockerBuildFailed" in failed.message
    assert (await backend.log_tail(namespace, ref.name)).startswith("(no pod left")

    retry = await backend.start(module, plan)
    assert retry.name == f"{config['metadata']['name']}-2" and not retry.adopted
    await set_build_phase(api, namespace, retry.name, "Complete")
    done = backend.observe(await api.get(BUILDS, retry.name, namespace))
    assert (done.phase, done.image, done.module) == ("Succeeded", plan.image, "acme")
    listed = await api.list(BUILDS, namespace, label_selector=BUILD_SELECTOR)
    assert sorted(b["metadata"]["name"] for b in listed.items) == [ref.name, retry.name]

    await backend.delete(namespace, retry.name)
    with pytest.raises(NotFound):
        await api.get(BUILDS, retry.name, namespace)


async def test_buildconfig_is_replaced_when_the_module_changes_its_build(
    api: KubeApi, admin_rest: KubeRest, namespace: str, crd: str, openshift_builds: None
) -> None:
    backend = BuildConfigBackend(api, KubeApiReads(api), instantiate=False)
    module, plan = await make_module(admin_rest, namespace, "acme", unique_image())
    ref = await backend.start(module, plan)
    config_name = ref.name.rsplit("-", 1)[0]
    old_uid = (await api.get(BUILDCONFIGS, config_name, namespace))["metadata"]["uid"]
    await set_build_phase(api, namespace, ref.name, "Failed")
    mapping = module.spec.kernel_mappings[0].model_dump(by_alias=True, exclude_none=True)
    mapping["build"] = {"dockerfile": DOCKERFILE + "RUN true\n"}
    patched = await patch_module(
        admin_rest, namespace, "acme", {"spec": {"kernelMappings": [mapping]}}
    )
    changed = Module.model_validate(patched)
    changed_plan = plan_kernel(changed, KERNEL)
    assert changed_plan is not None and changed_plan.image == plan.image
    retry = await backend.start(changed, changed_plan)
    config = await api.get(BUILDCONFIGS, config_name, namespace)
    assert config["spec"]["source"]["dockerfile"].endswith("RUN true\n")
    assert config["metadata"]["uid"] != old_uid
    assert retry.name.startswith(f"{config_name}-") and not retry.adopted
    build = await api.get(BUILDS, retry.name, namespace)
    assert build["metadata"]["ownerReferences"][0]["uid"] == config["metadata"]["uid"]
