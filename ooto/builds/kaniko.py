"""Kaniko build objects, pure: a batch/v1 Job (plus a ConfigMap for an inline Dockerfile), and
`observe_job`, which reads a Job's status as a build phase. Same input, byte-identical output.

The Job runs the Kaniko executor once (`backoffLimit: 0`: the operator retries with its own
backoff, so a failure is seen and reported), under a deadline, in the Module's namespace, owned by
the Module, with the Module's tolerations, priority class and service account. The registry secret
becomes Kaniko's `/kaniko/.docker/config.json`, used to pull base images and to push.

A sign build (Kaniko has no build secrets) mounts the key and certificate Secrets read-only into
the executor's container, where the generated Dockerfile's signer stage reads them
(`ooto.domain.signing.sign_dockerfile(..., mounted=True)`). The key never reaches a pushed layer:
Kaniko
leaves mounted paths out of its snapshots (and is told `--ignore-path` for both), the signer
stage is never pushed (only the last stage is; no `--cache`, which would push RUN layers to a
cache repository), and the last stage copies only `/signed` (the signed modules) out of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ooto.builds.model import (
    BuildObservation,
    BuildPodLimits,
    build_metadata,
    build_name,
    meta_of,
    plan_build,
    sign_of_build,
    sign_secret_volumes,
    sorted_keys,
)
from ooto.domain.api.module import GitSource, Module
from ooto.domain.kernels import BuildPlan, KernelPlan
from ooto.domain.signing import SIGN_CERT_DIR, SIGN_KEY_DIR, SignPlan

DEFAULT_EXECUTOR_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
"""The last Kaniko release; pinned so a build never changes under us. Override in settings."""
DOCKERFILE_KEY = "Dockerfile"
WORKSPACE = "/workspace"
DOCKER_CONFIG_DIR = "/kaniko/.docker"
_HEX_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class KanikoOptions(BuildPodLimits):
    executor_image: str = DEFAULT_EXECUTOR_IMAGE


DEFAULT_KANIKO = KanikoOptions()


def render_dockerfile_configmap(module: Module, plan: KernelPlan) -> dict[str, Any] | None:
    """The ConfigMap holding an inline Dockerfile (same name as the Job); None for git builds."""
    build = plan_build(plan)
    if build.dockerfile is None:
        return None
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": build_metadata(module, plan, build_name(plan)),
        "data": {DOCKERFILE_KEY: build.dockerfile},
    }
    result: dict[str, Any] = sorted_keys(manifest)
    return result


def render_kaniko_job(
    module: Module, plan: KernelPlan, options: KanikoOptions | None = None
) -> dict[str, Any]:
    build = plan_build(plan)
    options = options or DEFAULT_KANIKO
    name = build_name(plan)
    metadata = build_metadata(module, plan, name)
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "template": {
                "metadata": {"labels": metadata["labels"], "annotations": metadata["annotations"]},
                "spec": _pod_spec(module, build, name, options, sign_of_build(plan)),
            },
        },
    }
    result: dict[str, Any] = sorted_keys(manifest)
    return result


def _pod_spec(
    module: Module, build: BuildPlan, name: str, options: KanikoOptions, sign: SignPlan | None
) -> dict[str, Any]:
    args, env = kaniko_args(build)
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if sign is not None:
        mounts, volumes = sign_secret_volumes(sign)
        # Kaniko leaves mounted volumes out of its snapshots already; say so for these two.
        args += [f"--ignore-path={SIGN_KEY_DIR}", f"--ignore-path={SIGN_CERT_DIR}"]
    if build.dockerfile is not None:
        mounts.append({"name": "dockerfile", "mountPath": WORKSPACE, "readOnly": True})
        volumes.append({"name": "dockerfile", "configMap": {"name": name}})
    secret = module.spec.image_repo_secret
    if secret is not None:
        mounts.append({"name": "registry-secret", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True})
        items = [{"key": ".dockerconfigjson", "path": "config.json"}]
        volumes.append(
            {"name": "registry-secret", "secret": {"secretName": secret.name, "items": items}}
        )
    container: dict[str, Any] = {
        "name": "kaniko",
        "image": options.executor_image,
        "args": args,
        "resources": options.resources(),
        "terminationMessagePolicy": "FallbackToLogsOnError",  # the log's end, for the Event
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = env
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "tolerations": list(module.spec.tolerations),
        "priorityClassName": module.spec.priority_class_name,
    }
    if module.spec.service_account_name:
        spec["serviceAccountName"] = module.spec.service_account_name
    return spec


def kaniko_args(build: BuildPlan) -> tuple[list[str], list[dict[str, str]]]:
    """Executor arguments and environment for one build."""
    env: list[dict[str, str]] = []
    if build.git is not None:
        context, env = git_context(build.git)
        args = [f"--context={context}", f"--dockerfile={build.git.dockerfile_path}"]
        if build.git.context_dir:
            args.append(f"--context-sub-path={build.git.context_dir}")
    else:
        args = [f"--dockerfile={WORKSPACE}/{DOCKERFILE_KEY}", f"--context=dir://{WORKSPACE}"]
    args.append(f"--destination={build.image}")
    args += [f"--build-arg={name}={value}" for name, value in build.build_args]
    if build.push_insecure:
        args += ["--insecure", "--skip-tls-verify"]
    if build.pull_insecure:
        args += ["--insecure-pull", "--skip-tls-verify-pull"]
    return args, env


def git_context(git: GitSource) -> tuple[str, list[dict[str, str]]]:
    """Kaniko's `git://host/repo.git#<reference>[#<commit>]` context and the env it needs.

    Kaniko clones `https://` + the part after `git://` (plain `http://` when GIT_PULL_METHOD=http).
    A ref `refs/...` is used as is, a hex commit id is checked out on the default branch, any other
    ref is a branch name.
    """
    url = git.url.strip()
    env: list[dict[str, str]] = []
    scheme, sep, rest = url.partition("://")
    if not sep:
        scp = _SCP_LIKE.match(url)
        rest = f"{scp['host']}/{scp['path']}" if scp else url
    elif scheme == "http":
        env.append({"name": "GIT_PULL_METHOD", "value": "http"})
    context = f"git://{rest}"
    ref = git.ref
    if not ref:
        return context, env
    if ref.startswith("refs/"):
        return f"{context}#{ref}", env
    if _HEX_COMMIT.fullmatch(ref):
        return f"{context}##{ref}", env
    return f"{context}#refs/heads/{ref}", env


def observe_job(obj: Mapping[str, Any]) -> BuildObservation:
    """Succeeded/Failed from the Job's conditions (or counts), Running otherwise."""
    namespace, name, module, image = meta_of(obj)
    status = obj.get("status") or {}
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    if "Complete" in conditions or int(status.get("succeeded") or 0) > 0:
        return BuildObservation(
            namespace, name, module, image, "Succeeded", f"built and pushed {image}"
        )
    failed = conditions.get("Failed")
    backoff_limit = int((obj.get("spec") or {}).get("backoffLimit") or 0)
    if failed is not None or int(status.get("failed") or 0) > backoff_limit:
        detail = failed.get("message") or failed.get("reason") if failed else "its pod failed"
        return BuildObservation(
            namespace, name, module, image, "Failed", f"build of {image} failed: {detail}"
        )
    active = int(status.get("active") or 0)
    message = f"building {image}" if active else f"build of {image} is waiting for its pod"
    return BuildObservation(namespace, name, module, image, "Running", message)
