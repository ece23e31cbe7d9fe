"""Pure build objects: the Kaniko Job (args, insecure flags, contexts, secret, scheduling,
ownership, deterministic names), the BuildConfig and the Build that stands in for instantiate,
and how Job and Build statuses read as build phases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ooto.builds.buildconfig import (
    BUILD_CONFIG_LABEL,
    build_number,
    observe_build,
    render_build,
    render_build_request,
    render_buildconfig,
)
from ooto.builds.kaniko import (
    DEFAULT_EXECUTOR_IMAGE,
    KanikoOptions,
    git_context,
    observe_job,
    render_dockerfile_configmap,
    render_kaniko_job,
)
from ooto.builds.model import BUILD_SELECTOR, IMAGE_ANNOTATION, LABEL_IMAGE_HASH
from ooto.domain.api.module import Module
from ooto.domain.kernels import KernelPlan, build_job_name, kernel_hash, plan_kernel
from ooto.domain.render import SPEC_HASH_ANNOTATION

KERNEL = "5.14.0-70.13.1.el9_0.x86_64"
REPO = "registry.example.com:5000/acme/mod"
DOCKERFILE = "FROM alpine\nARG KERNEL_FULL_VERSION\nRUN echo ${KERNEL_FULL_VERSION}\n"


def module(build: dict[str, Any], **spec: Any) -> Module:
    return Module.model_validate(
        {
            "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
            "kind": "Module",
            "metadata": {"name": "acme", "namespace": "drivers", "uid": "uid-1"},
            "spec": {
                "moduleLoader": {"name": "x", "image": "x"},
                "kernelMappings": [
                    {
                        "regexp": r"^(?P<xyz>\d+\.\d+\.\d+)-(?P<rel>[\d.]+)\.el9",
                        "containerImage": REPO + ":${KERNEL_FULL_VERSION}",
                        "build": build,
                    }
                ],
                **spec,
            },
        }
    )


def plan_for(mod: Module) -> KernelPlan:
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None and plan.build is not None
    return plan


INLINE = {"dockerfile": DOCKERFILE, "buildArgs": [{"name": "FLAVOR", "value": "${rel}-x"}]}
IMAGE = f"registry.example.com:5000/acme/mod:{KERNEL}"


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def test_inline_dockerfile_job_builds_from_the_configmap_and_pushes_the_image() -> None:
    mod = module(INLINE)
    plan = plan_for(mod)
    job = render_kaniko_job(mod, plan)
    args = container(job)["args"]
    assert args[:3] == [
        "--dockerfile=/workspace/Dockerfile",
        "--context=dir:///workspace",
        f"--destination={IMAGE}",
    ]
    assert f"--build-arg=KERNEL_FULL_VERSION={KERNEL}" in args
    assert "--build-arg=KERNEL_XYZ=5.14.0" in args
    assert "--build-arg=MOD_NAMESPACE=drivers" in args
    assert "--build-arg=FLAVOR=70.13.1-x" in args
    assert not [a for a in args if "insecure" in a or "skip-tls" in a]
    assert container(job)["image"] == DEFAULT_EXECUTOR_IMAGE
    mounts = {m["name"]: m["mountPath"] for m in container(job)["volumeMounts"]}
    assert mounts == {"dockerfile": "/workspace"}
    configmap = render_dockerfile_configmap(mod, plan)
    assert configmap is not None
    assert configmap["data"] == {"Dockerfile": DOCKERFILE}  # never substituted
    assert configmap["metadata"]["name"] == job["metadata"]["name"]
    assert (
        job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        == job["metadata"]["name"]
    )


def test_job_is_named_labelled_and_owned_for_adoption_and_garbage_collection() -> None:
    mod = module(INLINE)
    job = render_kaniko_job(mod, plan_for(mod))
    meta = job["metadata"]
    assert meta["name"] == build_job_name("acme", IMAGE)
    assert meta["namespace"] == "drivers"
    assert meta["labels"] == {
        "ooto.sigs.k8s.io/module": "acme",
        "ooto.sigs.k8s.io/role": "build",
        LABEL_IMAGE_HASH: kernel_hash(IMAGE),
        "app.kubernetes.io/managed-by": "ooto",
    }
    for pair in BUILD_SELECTOR.split(","):
        key, value = pair.split("=")
        assert meta["labels"][key] == value
    assert meta["annotations"][IMAGE_ANNOTATION] == IMAGE
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
            "kind": "Module",
            "name": "acme",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


def test_same_input_gives_byte_identical_job_and_other_kernels_same_image_same_name() -> None:
    mod = module(INLINE)
    first = json.dumps(render_kaniko_job(mod, plan_for(mod)))
    assert first == json.dumps(render_kaniko_job(mod, plan_for(mod)))
    fixed = module({"dockerfile": DOCKERFILE})
    fixed = fixed.model_copy(
        update={
            "spec": fixed.spec.model_copy(
                update={
                    "kernel_mappings": [
                        fixed.spec.kernel_mappings[0].model_copy(
                            update={"container_image": "registry.example.com:5000/acme/mod:one"}
                        )
                    ]
                }
            )
        }
    )
    a = plan_kernel(fixed, KERNEL)
    b = plan_kernel(fixed, "5.14.0-162.6.1.el9_1.x86_64")
    assert a is not None and b is not None
    job_a, job_b = render_kaniko_job(fixed, a), render_kaniko_job(fixed, b)
    assert job_a["metadata"]["name"] == job_b["metadata"]["name"]
    assert "ooto.sigs.k8s.io/kernel" not in job_a["metadata"]["labels"]


def test_insecure_pull_and_push_map_to_kaniko_flags() -> None:
    push = module({**INLINE, "push": {"insecure": True}})
    pull = module({**INLINE, "pull": {"insecure": True}})
    push_args = container(render_kaniko_job(push, plan_for(push)))["args"]
    pull_args = container(render_kaniko_job(pull, plan_for(pull)))["args"]
    assert {"--insecure", "--skip-tls-verify"} <= set(push_args)
    assert not {"--insecure-pull", "--skip-tls-verify-pull"} & set(push_args)
    assert {"--insecure-pull", "--skip-tls-verify-pull"} <= set(pull_args)
    assert not {"--insecure", "--skip-tls-verify"} & set(pull_args)


def test_git_context_with_substituted_ref_sub_path_and_dockerfile() -> None:
    git = {
        "url": "https://git.example.com/acme/drivers.git",
        "ref": "release-${KERNEL_XYZ}",
        "contextDir": "mod/build",
        "dockerfilePath": "Containerfile",
    }
    mod = module({"git": git})
    job = render_kaniko_job(mod, plan_for(mod))
    args = container(job)["args"]
    assert "--context=git://git.example.com/acme/drivers.git#refs/heads/release-5.14.0" in args
    assert "--context-sub-path=mod/build" in args
    assert "--dockerfile=Containerfile" in args
    assert "dockerfile" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert render_dockerfile_configmap(mod, plan_for(mod)) is None


@pytest.mark.parametrize(
    ("url", "ref", "context", "env"),
    [
        ("https://h/r.git", "", "git://h/r.git", []),
        ("https://h/r.git", "refs/tags/v1", "git://h/r.git#refs/tags/v1", []),
        ("https://h/r.git", "0123abcd", "git://h/r.git##0123abcd", []),
        (
            "http://h:8080/r.git",
            "main",
            "git://h:8080/r.git#refs/heads/main",
            [{"name": "GIT_PULL_METHOD", "value": "http"}],
        ),
        ("git://h/r.git", "main", "git://h/r.git#refs/heads/main", []),
        (
            "git@h.example.com:org/r.git",
            "main",
            "git://h.example.com/org/r.git#refs/heads/main",
            [],
        ),
    ],
)
def test_git_urls_and_refs_in_kaniko_syntax(
    url: str, ref: str, context: str, env: list[dict[str, str]]
) -> None:
    from ooto.domain.api.module import GitSource

    assert git_context(GitSource(url=url, ref=ref)) == (context, env)


def test_registry_secret_becomes_kaniko_docker_config_and_module_scheduling_applies() -> None:
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    mod = module(
        INLINE,
        imageRepoSecret={"name": "push-creds"},
        tolerations=[toleration],
        priorityClassName="build-low",
        serviceAccountName="builder",
    )
    options = KanikoOptions(
        executor_image="mirror.local/kaniko:v1.23.2", active_deadline_seconds=60
    )
    job = render_kaniko_job(mod, plan_for(mod), options)
    pod = job["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "registry-secret")
    assert secret_volume["secret"] == {
        "secretName": "push-creds",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    mount = next(m for m in container(job)["volumeMounts"] if m["name"] == "registry-secret")
    assert mount["mountPath"] == "/kaniko/.docker"
    assert pod["tolerations"] == [toleration]
    assert pod["priorityClassName"] == "build-low"
    assert pod["serviceAccountName"] == "builder"
    assert container(job)["image"] == "mirror.local/kaniko:v1.23.2"
    assert job["spec"]["activeDeadlineSeconds"] == 60


def job_status(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "acme-build-x",
            "namespace": "drivers",
            "labels": {"ooto.sigs.k8s.io/module": "acme"},
            "annotations": {IMAGE_ANNOTATION: IMAGE},
        },
        "spec": {"backoffLimit": 0},
        "status": status,
    }


def test_job_status_reads_as_build_phase() -> None:
    running = observe_job(job_status(active=1))
    assert (running.phase, running.finished, running.module, running.image) == (
        "Running",
        False,
        "acme",
        IMAGE,
    )
    assert observe_job(job_status()).phase == "Running"
    done = observe_job(job_status(succeeded=1, conditions=[{"type": "Complete", "status": "True"}]))
    assert done.phase == "Succeeded" and done.finished
    failed = observe_job(
        job_status(
            failed=1,
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        )
    )
    assert failed.phase == "Failed"
    assert "backoff limit" in failed.message and IMAGE in failed.message
    deadline = observe_job(
        job_status(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])
    )
    assert deadline.phase == "Failed" and "DeadlineExceeded" in deadline.message
    counted = observe_job(job_status(failed=1))  # condition not written yet
    assert counted.phase == "Failed"


def test_buildconfig_docker_strategy_with_dockerfile_args_output_and_secrets() -> None:
    mod = module(INLINE, imageRepoSecret={"name": "push-creds"})
    config = render_buildconfig(mod, plan_for(mod))
    assert config["apiVersion"] == "build.openshift.io/v1"
    assert config["kind"] == "BuildConfig"
    assert config["metadata"]["name"] == build_job_name("acme", IMAGE)
    assert SPEC_HASH_ANNOTATION in config["metadata"]["annotations"]
    spec = config["spec"]
    assert spec["source"] == {"type": "Dockerfile", "dockerfile": DOCKERFILE}
    strategy = spec["strategy"]["dockerStrategy"]
    assert spec["strategy"]["type"] == "Docker"
    assert {"name": "KERNEL_FULL_VERSION", "value": KERNEL} in strategy["buildArgs"]
    assert {"name": "FLAVOR", "value": "70.13.1-x"} in strategy["buildArgs"]
    assert strategy["noCache"] is False
    assert strategy["pullSecret"] == {"name": "push-creds"}
    assert spec["output"] == {
        "to": {"kind": "DockerImage", "name": IMAGE},
        "pushSecret": {"name": "push-creds"},
    }
    assert spec["triggers"] == [] and spec["runPolicy"] == "Serial"
    assert json.dumps(config) == json.dumps(render_buildconfig(mod, plan_for(mod)))


def test_buildconfig_git_source() -> None:
    git = {"url": "https://git.example.com/a.git", "ref": "v${KERNEL_X}", "contextDir": "sub"}
    mod = module({"git": git})
    spec = render_buildconfig(mod, plan_for(mod))["spec"]
    assert spec["source"] == {
        "type": "Git",
        "git": {"uri": "https://git.example.com/a.git", "ref": "v5"},
        "contextDir": "sub",
    }
    assert spec["strategy"]["dockerStrategy"]["dockerfilePath"] == "Dockerfile"


def test_build_stands_in_for_instantiate() -> None:
    mod = module(INLINE)
    config = render_buildconfig(mod, plan_for(mod))
    config["metadata"]["uid"] = "bc-uid"
    build = render_build(config, 3, KERNEL)
    name = config["metadata"]["name"]
    assert build["metadata"]["name"] == f"{name}-3"
    assert build["metadata"]["labels"][BUILD_CONFIG_LABEL] == name
    assert build["metadata"]["labels"][LABEL_IMAGE_HASH] == kernel_hash(IMAGE)
    assert build["metadata"]["annotations"]["openshift.io/build.number"] == "3"
    assert build["metadata"]["ownerReferences"][0]["uid"] == "bc-uid"
    assert build["spec"]["strategy"] == config["spec"]["strategy"]
    assert "runPolicy" not in build["spec"] and "triggers" not in build["spec"]
    assert build_number(build) == 3
    assert build_number({"metadata": {"name": "x-build-abc-12"}}) == 12
    request = render_build_request(name, KERNEL)
    assert request["kind"] == "BuildRequest" and request["metadata"] == {"name": name}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("New", "Running"),
        ("Pending", "Running"),
        ("Running", "Running"),
        (None, "Running"),
        ("Complete", "Succeeded"),
        ("Failed", "Failed"),
        ("Error", "Failed"),
        ("Cancelled", "Failed"),
    ],
)
def test_build_phase_reads_as_build_phase(phase: str | None, expected: str) -> None:
    build = {
        "metadata": {"name": "b-1", "namespace": "n", "labels": {"ooto.sigs.k8s.io/module": "m"}},
        "spec": {"output": {"to": {"kind": "DockerImage", "name": IMAGE}}},
        "status": {"phase": phase, "reason": "DockerBuildFailed"} if phase else {},
    }
    observation = observe_build(build)
    assert observation.phase == expected
    assert observation.image == IMAGE  # from spec.output when OpenShift created the Build
    if expected == "Failed":
        assert "DockerBuildFailed" in observation.message
