"""Sign builds of the backends without build secrets, against the real API server: the Kaniko
sign Job (run by the simulated kubelet as the other Kaniko tests do: it is told the pod
succeeds, no Kaniko runs) and the OpenShift BuildConfig on the BuildConfig/Build CRDs (this test
plays the build controller). What the Dockerfile they build does is checked for real with the
host's Buildah in test_signing.py (the mounted sign Dockerfile test)."""

from __future__ import annotations

import json
import secrets

from ooto.builds.backends import BuildConfigBackend, KanikoJobBackend
from ooto.builds.buildah import sign_build
from ooto.builds.cluster import KubeApiReads
from ooto.domain.api.module import Module
from ooto.domain.kernels import KernelPlan, plan_kernel
from ooto.kube.client import KubeApi
from ooto.kube.resources import BUILDCONFIGS, BUILDS, CONFIGMAPS, JOBS
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest

from .scenario_support import apply_module, eventually, module_manifest
from .test_builds import api, openshift_builds  # noqa: F401

KERNEL = "6.1.0-rpi7-rpi-v8+"
SIGN = {
    "keySecret": {"name": "signing-key"},
    "certSecret": {"name": "signing-cert"},
    "filesToSign": ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"],
}
FINGERPRINT = "sha256:" + "ab" * 32


async def sign_plan(rest: KubeRest, namespace: str) -> tuple[Module, KernelPlan]:
    image = f"registry.local:5000/acme/signed-{secrets.token_hex(3)}:${{KERNEL_FULL_VERSION}}"
    mapping = {"literal": KERNEL, "containerImage": image, "build": {"dockerfile": "FROM x\n"}}
    created = await apply_module(rest, namespace, module_manifest("acme", [mapping], sign=SIGN))
    module = Module.model_validate(created)
    plan = plan_kernel(module, KERNEL)
    assert plan is not None and plan.sign is not None
    return module, sign_build(plan, "reg.example/ooto:0.1.0", FINGERPRINT, mounted=True)


async def test_a_kaniko_sign_job_is_accepted_runs_and_names_the_secrets_only(
    api: KubeApi,  # noqa: F811
    admin_rest: KubeRest,
    namespace: str,
    crd: str,
    kubelet: SimulatedKubelet,
) -> None:
    await kubelet.add_node(f"builder-{secrets.token_hex(3)}", KERNEL)
    backend = KanikoJobBackend(api, KubeApiReads(api))
    module, signing = await sign_plan(admin_rest, namespace)
    ref = await backend.start(module, signing)
    job = await api.get(JOBS, ref.name, namespace)
    pod = job["spec"]["template"]["spec"]
    (kaniko,) = pod["containers"]
    mounted = {m["mountPath"]: m.get("readOnly") for m in kaniko["volumeMounts"]}
    assert mounted["/run/ooto/sign-key"] is True and mounted["/run/ooto/sign-cert"] is True
    secrets_used = sorted(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
    assert secrets_used == ["signing-cert", "signing-key"]
    assert f"--destination={signing.image}" in kaniko["args"]
    dockerfile = (await api.get(CONFIGMAPS, ref.name, namespace))["data"]["Dockerfile"]
    assert signing.build is not None and dockerfile == signing.build.dockerfile
    assert f'signed-by="{FINGERPRINT}"' in dockerfile

    async def succeeded() -> bool:
        return backend.observe(await api.get(JOBS, ref.name, namespace)).phase == "Succeeded"

    await eventually(succeeded, timeout=60)
    observed = backend.observe(await api.get(JOBS, ref.name, namespace))
    assert observed.image == signing.image  # what the kernel actor matches a sign build by
    assert "PRIVATE KEY" not in json.dumps(job)


async def test_a_buildconfig_sign_build_carries_its_build_volumes_into_the_build(
    api: KubeApi,  # noqa: F811
    admin_rest: KubeRest,
    namespace: str,
    crd: str,
    openshift_builds: None,  # noqa: F811
) -> None:
    backend = BuildConfigBackend(api, KubeApiReads(api), instantiate=False)
    module, signing = await sign_plan(admin_rest, namespace)
    ref = await backend.start(module, signing)
    config = await api.get(BUILDCONFIGS, ref.name.rsplit("-", 1)[0], namespace)
    build = await api.get(BUILDS, ref.name, namespace)
    for obj in (config, build):
        volumes = obj["spec"]["strategy"]["dockerStrategy"]["volumes"]
        assert [(v["name"], v["source"]["secret"]["secretName"]) for v in volumes] == [
            ("sign-key", "signing-key"),
            ("sign-cert", "signing-cert"),
        ]
        assert obj["spec"]["output"]["to"]["name"] == signing.image
    assert backend.observe(build).image == signing.image
