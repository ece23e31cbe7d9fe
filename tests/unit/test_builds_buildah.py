"""Pure Buildah build objects (the Job's two steps, their arguments, TLS and auth flags, Git
contexts, least privilege, determinism), the pure helpers that read a failed build's log, and the
loader-pod reading that triggers a rebuild. The Job really runs in
tests/integration/test_builds_buildah.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ooto.builds.buildah import (
    AUTH_FILE,
    BUILDAH,
    CONTEXT_DIR,
    BuildahOptions,
    git_context,
    render_buildah_job,
)
from ooto.builds.model import last_lines, tail_message, termination_message
from ooto.domain.api.module import GitSource
from ooto.domain.stored import pull_failures, trim_pod
from tests.unit.test_builds_render import IMAGE, INLINE, KERNEL, module, plan_for


def steps(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    (build,), (push,) = spec["initContainers"], spec["containers"]
    return build, push


def test_inline_dockerfile_builds_from_the_configmap_then_pushes() -> None:
    mod = module(INLINE)
    job = render_buildah_job(mod, plan_for(mod))
    build, push = steps(job)
    assert build["command"] == push["command"] == [BUILDAH]
    assert build["args"] == [
        "--storage-driver=vfs",
        "build",
        "--isolation=chroot",
        "--tls-verify=true",
        f"--build-arg=KERNEL_FULL_VERSION={KERNEL}",
        *[a for a in build["args"] if a.startswith("--build-arg=") and "FULL" not in a],
        f"--file={CONTEXT_DIR}/Dockerfile",
        f"--tag={IMAGE}",
        CONTEXT_DIR,
    ]
    assert "--build-arg=FLAVOR=70.13.1-x" in build["args"]
    assert push["args"] == [
        "--storage-driver=vfs",
        "push",
        "--tls-verify=true",
        IMAGE,
        f"docker://{IMAGE}",
    ]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dockerfile"] == {
        "name": "dockerfile",
        "configMap": {"name": job["metadata"]["name"]},
    }
    assert volumes["containers"] == {"name": "containers", "emptyDir": {}}
    assert job["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize(("pull", "push"), [(False, False), (True, False), (False, True)])
def test_insecure_pull_and_push_map_to_their_own_step(pull: bool, push: bool) -> None:
    mod = module({**INLINE, "pull": {"insecure": pull}, "push": {"insecure": push}})
    build, pusher = steps(render_buildah_job(mod, plan_for(mod)))
    assert f"--tls-verify={str(not pull).lower()}" in build["args"]
    assert f"--tls-verify={str(not push).lower()}" in pusher["args"]


def test_the_registry_secret_is_the_auth_file_of_both_steps() -> None:
    mod = module(INLINE, imageRepoSecret={"name": "regcred"})
    job = render_buildah_job(mod, plan_for(mod))
    for step in steps(job):
        assert f"--authfile={AUTH_FILE}" in step["args"]
        assert {"name": "registry-auth", "mountPath": "/run/ooto/registry", "readOnly": True} in (
            step["volumeMounts"]
        )
    (secret,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secret["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "auth.json"}],
    }
    assert "regcred" not in json.dumps(steps(job)[0]["args"])


def test_each_step_runs_with_least_privilege_and_keeps_its_log_end() -> None:
    mod = module(INLINE)
    job = render_buildah_job(mod, plan_for(mod), BuildahOptions(image="mirror/buildah:v1"))
    for step in steps(job):
        context = step["securityContext"]
        assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "SYS_ADMIN" not in context["capabilities"]["add"]
        assert step["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert step["image"] == "mirror/buildah:v1"


def test_rendering_is_byte_identical() -> None:
    mod = module(INLINE)
    first = json.dumps(render_buildah_job(mod, plan_for(mod)))
    assert first == json.dumps(render_buildah_job(module(INLINE), plan_for(module(INLINE))))


@pytest.mark.parametrize(
    ("ref", "context_dir", "expected"),
    [
        ("", "", "https://git.example.com/kmod.git"),
        ("", "driver", "https://git.example.com/kmod.git#:driver"),
        (
            "release-5.4",
            "driver/linux/",
            "https://git.example.com/kmod.git#release-5.4:driver/linux",
        ),
        ("refs/heads/main", "", "https://git.example.com/kmod.git#main:"),
        ("0a1b2c3d", "", "https://git.example.com/kmod.git#0a1b2c3d:"),
    ],
)
def test_git_context_is_buildahs_url_ref_and_directory(
    ref: str, context_dir: str, expected: str
) -> None:
    git = GitSource(url="https://git.example.com/kmod.git", ref=ref, context_dir=context_dir)
    assert git_context(git) == expected


def test_a_git_build_has_no_dockerfile_volume_and_a_relative_file() -> None:
    git = {"url": "git://git.example.com/kmod", "ref": "v", "dockerfilePath": "Containerfile"}
    mod = module({"git": git})
    job = render_buildah_job(mod, plan_for(mod))
    build, _ = steps(job)
    assert build["args"][-3:] == [
        "--file=Containerfile",
        f"--tag={IMAGE}",
        "git://git.example.com/kmod#v:",
    ]
    assert "dockerfile" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}


def test_an_event_keeps_the_end_of_a_long_log() -> None:
    log = "\n".join(f"line {n} " + "x" * 80 for n in range(50)) + "\nerror: the real cause"
    message = tail_message("build failed; log tail:", log, 1024)
    assert len(message) == 1024
    assert message.startswith("build failed; log tail:\n...")
    assert message.endswith("error: the real cause")
    assert tail_message("head", "short", 1024) == "head\nshort"
    assert last_lines("a\nb\nc\n", 2) == "b\nc"


def test_the_termination_message_of_the_failed_container_is_the_log_tail() -> None:
    ok = {"state": {"terminated": {"exitCode": 0, "message": "fine"}}}
    failed = {"state": {"terminated": {"exitCode": 1, "message": "error: no space"}}}
    pod = {"status": {"initContainerStatuses": [ok, failed], "containerStatuses": [ok]}}
    assert termination_message(pod) == "error: no space"
    assert termination_message({"status": {"containerStatuses": [ok]}}) == ""
    assert termination_message({}) == ""


def test_only_pull_failures_are_read_from_a_loader_pod() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}, "annotations": {"x": 1}},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"image": "img:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                {"image": "img:2", "state": {"waiting": {"reason": "ErrImagePull"}}},
                {"image": "img:3", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"image": "img:4", "state": {"running": {}}},
            ],
        },
    }
    trim_pod(pod)
    assert set(pod) == {"metadata", "status"}
    assert pod["metadata"] == {"name": "p", "namespace": "n", "labels": {"a": "b"}}
    assert pull_failures(pod) == {"img:1", "img:2"}
    assert pull_failures({"status": {}}) == frozenset()
