"""Buildah build objects, pure: a batch/v1 Job (plus the Dockerfile ConfigMap Kaniko also uses).
Same input, byte-identical output.

The Job's pod runs the upstream Buildah image twice, by absolute path with plain arguments (no
shell), so any host with the same Buildah can replay a build from the Job spec alone:

- init container `build`: `buildah build` into containers-storage on an emptyDir, from the
  ConfigMap's Dockerfile or from a Git URL (`url#ref:contextDir`, Buildah's own syntax), with the
  kernel variables as `--build-arg`s; `--tls-verify=false` only when `pull.insecure`.
- container `push`: `buildah push` of that image to the registry; `--tls-verify=false` only when
  `push.insecure`. Two steps keep the pull and push TLS settings apart (one `buildah build
  -t docker://...` would apply one flag to both).

Both use the Module's registry Secret as Buildah's `--authfile` (a `dockerconfigjson` Secret is
the auth-file format). Least privilege, as verified on Debian's Buildah 1.28 (the simulated kubelet
of ooto.testing runs these containers under exactly this capability bounding set): root in the
container, not privileged, no privilege escalation, all capabilities dropped but CHOWN,
DAC_OVERRIDE, FOWNER, FSETID (unpacking base-image layers owned by other users), SETUID, SETGID
and SETFCAP (`--isolation chroot` runs `RUN` steps in a user namespace it maps itself);
`--storage-driver vfs` needs no fuse device and no overlay mount. Buildah makes namespaces and
mounts, which the runtime's default seccomp and AppArmor profiles refuse without CAP_SYS_ADMIN, so
both are Unconfined for these two containers (the Buildah project's advice for Buildah in a
container without `privileged`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ooto.builds.kaniko import DOCKERFILE_KEY
from ooto.builds.model import (
    BuildPodLimits,
    build_metadata,
    build_name,
    plan_build,
    sign_of_build,
    sign_secret_volumes,
    sorted_keys,
)
from ooto.domain.api.module import GitSource, Module
from ooto.domain.kernels import BuildPlan, KernelPlan
from ooto.domain.signing import (
    CERT_SECRET_ID,
    KEY_SECRET_ID,
    MOUNTED_CERT,
    MOUNTED_KEY,
    SignPlan,
    sign_dockerfile,
)

DEFAULT_BUILDAH_IMAGE = "quay.io/buildah/stable:v1.35.4"
"""An upstream Buildah release; pinned so a build never changes under us. Override in settings."""
BUILDAH = "/usr/bin/buildah"
CONTEXT_DIR = "/run/ooto/context"
AUTH_DIR = "/run/ooto/registry"
AUTH_FILE = f"{AUTH_DIR}/auth.json"
STORAGE_DIR = "/var/lib/containers"
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP", "SETGID", "SETUID")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io"


@dataclass(frozen=True)
class BuildahOptions(BuildPodLimits):
    image: str = DEFAULT_BUILDAH_IMAGE


DEFAULT_BUILDAH = BuildahOptions()


def render_buildah_job(
    module: Module, plan: KernelPlan, options: BuildahOptions | None = None
) -> dict[str, Any]:
    build = plan_build(plan)
    options = options or DEFAULT_BUILDAH
    name = build_name(plan)
    metadata = build_metadata(module, plan, name)
    annotations = {
        **metadata["annotations"],
        f"{APPARMOR_ANNOTATION}/build": "unconfined",
        f"{APPARMOR_ANNOTATION}/push": "unconfined",
    }
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "template": {
                "metadata": {"labels": metadata["labels"], "annotations": annotations},
                "spec": _pod_spec(module, build, name, options, sign_of_build(plan)),
            },
        },
    }
    result: dict[str, Any] = sorted_keys(manifest)
    return result


def _pod_spec(
    module: Module,
    build: BuildPlan,
    name: str,
    options: BuildahOptions,
    signing: SignPlan | None = None,
) -> dict[str, Any]:
    authenticated = module.spec.image_repo_secret is not None
    mounts: list[dict[str, Any]] = [{"name": "containers", "mountPath": STORAGE_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "containers", "emptyDir": {}}]
    secret = module.spec.image_repo_secret
    if secret is not None:
        mounts.append({"name": "registry-auth", "mountPath": AUTH_DIR, "readOnly": True})
        items = [{"key": ".dockerconfigjson", "path": "auth.json"}]
        volumes.append(
            {"name": "registry-auth", "secret": {"secretName": secret.name, "items": items}}
        )
    build_mounts = list(mounts)
    if build.dockerfile is not None:
        build_mounts.append({"name": "dockerfile", "mountPath": CONTEXT_DIR, "readOnly": True})
        volumes.append({"name": "dockerfile", "configMap": {"name": name}})
    args = build_args(build, authenticated)
    if signing is not None:
        args[-1:-1] = _sign_secrets(signing, build_mounts, volumes)
    builder = _container("build", args, build_mounts, options)
    pusher = _container("push", push_args(build, authenticated), mounts, options)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [builder],
        "containers": [pusher],
        "volumes": volumes,
        "tolerations": list(module.spec.tolerations),
        "priorityClassName": module.spec.priority_class_name,
    }
    if module.spec.service_account_name:
        spec["serviceAccountName"] = module.spec.service_account_name
    return spec


def _container(
    name: str, args: list[str], mounts: list[dict[str, Any]], options: BuildahOptions
) -> dict[str, Any]:
    return {
        "name": name,
        "image": options.image,
        "command": [BUILDAH],
        "args": args,
        "resources": options.resources(),
        "securityContext": {
            "runAsUser": 0,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
            "seccompProfile": {"type": "Unconfined"},
        },
        # A real kubelet puts the end of a failed container's log here: the Event needs no
        # pods/log read, and it survives the pod's log rotation.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def build_args(build: BuildPlan, authenticated: bool) -> list[str]:
    """`buildah` arguments of the build step."""
    args = ["--storage-driver=vfs", "build", "--isolation=chroot"]
    args.append(f"--tls-verify={str(not build.pull_insecure).lower()}")
    if authenticated:
        args.append(f"--authfile={AUTH_FILE}")
    args += [f"--build-arg={name}={value}" for name, value in build.build_args]
    if build.git is not None:
        args += [f"--file={build.git.dockerfile_path}", f"--tag={build.image}"]
        args.append(git_context(build.git))
    else:
        args += [f"--file={CONTEXT_DIR}/{DOCKERFILE_KEY}", f"--tag={build.image}", CONTEXT_DIR]
    return args


def push_args(build: BuildPlan, authenticated: bool) -> list[str]:
    """`buildah` arguments of the push step."""
    args = ["--storage-driver=vfs", "push"]
    args.append(f"--tls-verify={str(not build.push_insecure).lower()}")
    if authenticated:
        args.append(f"--authfile={AUTH_FILE}")
    return [*args, build.image, f"docker://{build.image}"]


def git_context(git: GitSource) -> str:
    """Buildah's Git context `url#ref:dir` (`url#:dir` on the default branch).

    Buildah 1.28 fetches the ref with `git fetch --depth=1 origin REF` and checks out REF: a branch
    name or a commit id works, a tag does not. `refs/heads/X` is given as `X` (what checkout
    understands); `-f` is relative to the context directory.
    """
    ref = git.ref.removeprefix("refs/heads/")
    url = git.url.strip()
    if not ref and not git.context_dir:
        return url
    return f"{url}#{ref}:{git.context_dir.strip('/')}"


def sign_build(
    plan: KernelPlan, signer_image: str, signed_by: str, mounted: bool = False, signed_for: str = ""
) -> KernelPlan:
    """The plan of the build that signs `plan.sign.unsigned_image` into `plan.image`: a
    generated Dockerfile (`ooto.domain.signing.sign_dockerfile`; `mounted` for builders without
    build
    secrets; `signed_for`: the Module's `namespace/name`), no build args (nothing secret can leak
    through one). Its Job and ConfigMap are
    named after the signed image."""
    sign = plan.sign
    if sign is None:
        raise ValueError(f"kernel {plan.kernel}: its mapping does not sign")
    build = BuildPlan(
        image=plan.image,
        dockerfile=sign_dockerfile(sign, signer_image, signed_by, mounted, signed_for),
        git=None,
        build_args=(),
        pull_insecure=sign.pull_insecure,
        push_insecure=sign.push_insecure,
    )
    return dataclasses.replace(plan, build=build)


def _sign_secrets(
    sign: SignPlan, mounts: list[dict[str, Any]], volumes: list[dict[str, Any]]
) -> list[str]:
    """Mount the key and certificate Secrets (read-only, one item each) and hand them to the
    build as build secrets: `RUN --mount=type=secret` sees them, no layer keeps them."""
    sign_mounts, sign_volumes = sign_secret_volumes(sign)
    mounts += sign_mounts
    volumes += sign_volumes
    return [
        f"--secret=id={KEY_SECRET_ID},src={MOUNTED_KEY}",
        f"--secret=id={CERT_SECRET_ID},src={MOUNTED_CERT}",
    ]
