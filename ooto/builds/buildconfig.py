"""OpenShift build objects, pure: a build.openshift.io/v1 BuildConfig with the Docker strategy, the
BuildRequest that starts it, the Build that the fallback creates directly, and `observe_build`.

On OpenShift a build is started with `POST buildconfigs/<name>/instantiate` (a BuildRequest): the
build controller numbers it (`<name>-<n>`) and copies the BuildConfig's spec into a Build. Where
that subresource is not served (the BuildConfig and Build shapes installed as CRDs, as in our
tests, where the test plays OpenShift's build controller), `render_build` produces the Build that
instantiate would have created, with the `openshift.io/build-config.name` label and annotation.

OpenShift has no per-build "insecure registry" switch (it follows the cluster's image config), so
`pull.insecure`/`push.insecure` have no effect here; tolerations and priority class likewise come
from the cluster's build defaults, and builds run as OpenShift's `builder` service account.

A sign build puts the key and certificate Secrets in build volumes (`dockerStrategy.volumes`,
OpenShift 4.10+), which its RUN steps see read-only and OpenShift never writes to the output
image; the generated Dockerfile copies only the signed modules out of its signer stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ooto.builds.model import (
    BuildObservation,
    build_metadata,
    build_name,
    meta_of,
    plan_build,
    registry_secret,
    sign_of_build,
    sorted_keys,
)
from ooto.domain.api.module import Module
from ooto.domain.kernels import BuildPlan, KernelPlan
from ooto.domain.render import SPEC_HASH_ANNOTATION, spec_hash
from ooto.domain.signing import SIGN_CERT_DIR, SIGN_KEY_DIR, SignPlan

API_VERSION = "build.openshift.io/v1"
BUILD_CONFIG_LABEL = "openshift.io/build-config.name"
LEGACY_BUILD_CONFIG_LABEL = "buildconfig"
BUILD_NUMBER_ANNOTATION = "openshift.io/build.number"
BUILD_NAME_LABEL = "openshift.io/build.name"
"""The label OpenShift puts on a build's pod."""
DEFAULT_DEADLINE_SECONDS = 3600
_RUNNING = ("New", "Pending", "Running", "")
_FAILED = ("Failed", "Error", "Cancelled")


def render_buildconfig(
    module: Module, plan: KernelPlan, deadline_seconds: int = DEFAULT_DEADLINE_SECONDS
) -> dict[str, Any]:
    build = plan_build(plan)
    spec = common_spec(module, build, deadline_seconds)
    sign = sign_of_build(plan)
    if sign is not None:
        spec["strategy"]["dockerStrategy"]["volumes"] = sign_build_volumes(sign)
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "BuildConfig",
        "metadata": build_metadata(module, plan, build_name(plan)),
        "spec": {**spec, "runPolicy": "Serial", "triggers": []},
    }
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    result: dict[str, Any] = sorted_keys(manifest)
    return result


def sign_build_volumes(sign: SignPlan) -> list[dict[str, Any]]:
    """OpenShift build volumes (`dockerStrategy.volumes`) with the key and certificate Secrets at
    MOUNTED_KEY and MOUNTED_CERT: every RUN of the build sees them, read-only, and OpenShift
    keeps them out of the output image (its build volumes are build-time only)."""
    volumes = []
    for name, secret, key, path in (
        ("sign-key", sign.key_secret, sign.key_key, SIGN_KEY_DIR),
        ("sign-cert", sign.cert_secret, sign.cert_key, SIGN_CERT_DIR),
    ):
        items = [{"key": key, "path": name}]
        source = {"type": "Secret", "secret": {"secretName": secret, "items": items}}
        volumes.append({"name": name, "source": source, "mounts": [{"destinationPath": path}]})
    return volumes


def common_spec(module: Module, build: BuildPlan, deadline_seconds: int) -> dict[str, Any]:
    """The part of a BuildConfig's spec that every Build started from it copies."""
    strategy: dict[str, Any] = {
        "buildArgs": [{"name": name, "value": value} for name, value in build.build_args],
        "noCache": False,
    }
    output: dict[str, Any] = {"to": {"kind": "DockerImage", "name": build.image}}
    secret = registry_secret(module)
    if secret is not None:
        strategy["pullSecret"] = {"name": secret}
        output["pushSecret"] = {"name": secret}
    if build.git is not None:
        git: dict[str, Any] = {"uri": build.git.url}
        if build.git.ref:
            git["ref"] = build.git.ref
        source: dict[str, Any] = {"type": "Git", "git": git}
        if build.git.context_dir:
            source["contextDir"] = build.git.context_dir
        strategy["dockerfilePath"] = build.git.dockerfile_path
    else:
        source = {"type": "Dockerfile", "dockerfile": build.dockerfile}
    return {
        "source": source,
        "strategy": {"type": "Docker", "dockerStrategy": strategy},
        "output": output,
        "completionDeadlineSeconds": deadline_seconds,
    }


def render_build_request(name: str, kernel: str) -> dict[str, Any]:
    """The body of `POST buildconfigs/<name>/instantiate`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "BuildRequest",
        "metadata": {"name": name},
        "triggeredBy": [{"message": f"ooto: image missing for kernel {kernel}"}],
    }


def render_build(buildconfig: Mapping[str, Any], number: int, kernel: str) -> dict[str, Any]:
    """The Build that instantiate would create from `buildconfig` (as read back, with its uid)."""
    meta = buildconfig["metadata"]
    name = meta["name"]
    spec = {key: value for key, value in buildconfig["spec"].items() if key not in _CONFIG_ONLY}
    labels = {
        **(meta.get("labels") or {}),
        BUILD_CONFIG_LABEL: name,
        LEGACY_BUILD_CONFIG_LABEL: name,
    }
    annotations = {
        **(meta.get("annotations") or {}),
        BUILD_CONFIG_LABEL: name,
        BUILD_NUMBER_ANNOTATION: str(number),
    }
    owner = {
        "apiVersion": API_VERSION,
        "kind": "BuildConfig",
        "name": name,
        "uid": meta.get("uid", ""),
        "controller": True,
    }
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "Build",
        "metadata": {
            "name": f"{name}-{number}",
            "namespace": meta.get("namespace", ""),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": {**spec, "triggeredBy": [{"message": f"ooto: image missing for kernel {kernel}"}]},
    }
    result: dict[str, Any] = sorted_keys(manifest)
    return result


_CONFIG_ONLY = frozenset(
    {"runPolicy", "triggers", "successfulBuildsHistoryLimit", "failedBuildsHistoryLimit"}
)


def build_number(build: Mapping[str, Any]) -> int:
    """The number of a Build (annotation, else the `-<n>` suffix of its name); 0 if none."""
    meta = build.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(BUILD_NUMBER_ANNOTATION)
    if raw is None:
        raw = str(meta.get("name") or "").rsplit("-", 1)[-1]
    return int(raw) if str(raw).isdigit() else 0


def observe_build(obj: Mapping[str, Any]) -> BuildObservation:
    """New/Pending/Running -> Running; Complete -> Succeeded; Failed/Error/Cancelled -> Failed."""
    namespace, name, module, image = meta_of(obj)
    if (
        not image
    ):  # a Build that OpenShift created from our BuildConfig carries no annotation of ours
        image = str((((obj.get("spec") or {}).get("output") or {}).get("to") or {}).get("name", ""))
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "")
    if phase == "Complete":
        return BuildObservation(
            namespace, name, module, image, "Succeeded", f"built and pushed {image}"
        )
    if phase in _FAILED:
        detail = status.get("message") or status.get("reason") or phase
        return BuildObservation(
            namespace, name, module, image, "Failed", f"build of {image} {phase.lower()}: {detail}"
        )
    waiting = f" ({phase})" if phase and phase not in _RUNNING else ""
    return BuildObservation(namespace, name, module, image, "Running", f"building {image}{waiting}")
