"""`ooto render -f module.yaml --kernel K`: every object the operator would create for one kernel.

No cluster needed. Stdout is YAML documents one can apply (explanations are `#` comments): the
DaemonSets and, when the mapping builds its image, the build objects of the chosen backend
(Kaniko or Buildah Job and its Dockerfile ConfigMap, or BuildConfig), and when it signs, the
sign build's objects, rendered by the very functions the operator uses. Strings are quoted
wherever Go's YAML 1.1 (kubectl) would read something else, so
`ooto render ... | kubectl apply --dry-run=server -f -` checks them against a real API server.
Exit codes: 0 rendered, 1 no mapping matches the kernel, 2 bad input (the message names the file
and the field path). The Module is validated exactly as the admission webhook and the operator
do, under the policy the `OOTO_*` environment sets (the chart's defaults when unset).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

from ooto.builds.buildah import BuildahOptions, render_buildah_job, sign_build
from ooto.builds.buildconfig import render_buildconfig
from ooto.builds.kaniko import KanikoOptions, render_dockerfile_configmap, render_kaniko_job
from ooto.domain.api.module import KIND, Module
from ooto.domain.kernels import (
    MAX_KERNEL_LENGTH,
    KernelPlan,
    SpecError,
    mapping_path,
    plan_kernel,
)
from ooto.domain.manifest_yaml import dump_manifests
from ooto.domain.modprobe import NO_UNLOAD_HOOK, NO_UNLOAD_HOOK_MESSAGE, unload_hook_missing
from ooto.domain.render import RenderOptions, node_kernel_labels, render_daemonsets
from ooto.domain.signing import CertificateError, fingerprint
from ooto.domain.validation import ModulePolicy, field_path, validate_module
from ooto.settings import Settings, SettingsError

__all__ = ["field_path", "load_module", "render_command"]

UNKNOWN_SIGNER = "sha256:<fingerprint of the signing certificate: see --sign-cert>"


class InputError(Exception):
    """Bad input: the message already names the file and what is wrong."""


def render_command(args: argparse.Namespace) -> int:
    filename, kernel = str(args.filename), str(args.kernel)
    try:
        settings = _settings(args)
        signed_by = sign_certificate(getattr(args, "sign_cert", None))
        module = load_module(filename, settings.module_policy())
        plan = plan_kernel(module, kernel)
    except InputError as error:
        print(error, file=sys.stderr)
        return 2
    except SpecError as error:
        print(f"{filename}: {error}", file=sys.stderr)
        return 2
    if plan is None:
        explain_no_match(module, kernel, sys.stdout)
        return 1
    write_plan(module, plan, sys.stdout, settings, signed_by)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """The operator settings that shape rendering: OOTO_* variables, then these flags."""
    flags = {
        "build_backend": getattr(args, "build_backend", None),
        "firmware_host_dir": getattr(args, "firmware_host_dir", None),
    }
    try:
        return Settings.load(flags)
    except SettingsError as error:
        raise InputError(str(error)) from None


def load_module(filename: str, policy: ModulePolicy) -> Module:
    """The valid Module in a YAML file; InputError naming the file and each field path otherwise."""
    try:
        text = Path(filename).read_text(encoding="utf-8")
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{filename}: cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{filename}: invalid YAML: {error}") from None
    modules = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if len(modules) != 1:
        raise InputError(f"{filename}: expected one document of kind {KIND}, found {len(modules)}")
    errors = validate_module(modules[0], policy)
    if errors:
        raise InputError("\n".join(f"{filename}: {error}" for error in errors))
    return Module.model_validate(modules[0])


def explain_no_match(module: Module, kernel: str, out: TextIO) -> None:
    out.write(f"# no kernel mapping matches kernel {kernel!r}; nothing would be created.\n")
    if len(kernel) > MAX_KERNEL_LENGTH:
        out.write(f"# kernels longer than {MAX_KERNEL_LENGTH} characters never match.\n")
        return
    for index, mapping in enumerate(module.spec.kernel_mappings):
        if mapping.literal is not None:
            reason = f"literal {mapping.literal!r} is not exactly the kernel"
        else:
            reason = f"regexp {mapping.regexp!r} finds no match in the kernel"
        out.write(f"#   {mapping_path(index)}: {reason}\n")


def write_plan(
    module: Module,
    plan: KernelPlan,
    out: TextIO,
    settings: Settings,
    signed_by: str | None = None,
) -> None:
    """`signed_by`: the fingerprint of the signing certificate, when known (--sign-cert)."""
    mapping = module.spec.kernel_mappings[plan.mapping_index]
    matcher = f"literal {mapping.literal!r}" if mapping.literal else f"regexp {mapping.regexp!r}"
    labels, _ = node_kernel_labels(plan.kernel)
    out.write(f"# kernel {plan.kernel!r} matches {mapping_path(plan.mapping_index)} ({matcher})\n")
    out.write(f"# image: {plan.image}\n")
    out.write(f"# nodes running it are labelled {_inline(labels)}\n")
    if unload_hook_missing(module):
        out.write(_comment_block(f"warning {NO_UNLOAD_HOOK}: {NO_UNLOAD_HOOK_MESSAGE}"))
    options = RenderOptions(firmware_host_dir=settings.firmware_host_dir)
    objects = render_daemonsets(module, plan, options)
    backend = _build_backend(settings)
    if plan.build is not None:
        out.write(
            f"# when the registry does not have {plan.build.image}, ooto first creates the "
            f"build objects below ({backend} backend; --build-backend picks another)\n"
        )
        objects += build_objects(module, plan, backend, settings)
    if plan.sign is not None:
        out.write(_sign_comment(plan, signed_by))
        objects += sign_objects(module, plan, backend, settings, signed_by or UNKNOWN_SIGNER)
    if not module.metadata.uid:
        out.write(
            "# no ownerReferences: the Module has no uid yet (render the Module as the cluster "
            "returns it, `kubectl get module NAME -o yaml`, to see them)\n"
        )
        objects = [_without_owner(obj) for obj in objects]
    out.write(dump_manifests(objects))


Backend = Literal["kaniko", "buildah", "buildconfig"]


def _build_backend(settings: Settings) -> Backend:
    # "auto" asks the API server (BuildConfig on OpenShift); with no cluster, show what upstream
    # Kubernetes gets: Buildah.
    return "buildah" if settings.build_backend == "auto" else settings.build_backend


def build_objects(
    module: Module, plan: KernelPlan, backend: Backend, settings: Settings
) -> list[dict[str, Any]]:
    """The build objects the operator's backend creates for the plan, by the backend's own
    render functions (the options as `ooto.builds.select.select_backend` sets them)."""
    configmap = render_dockerfile_configmap(module, plan)
    if backend == "buildconfig":
        objects = [render_buildconfig(module, plan, settings.build_deadline_seconds)]
    elif backend == "buildah":
        buildah = BuildahOptions(
            image=settings.buildah_image, active_deadline_seconds=settings.build_deadline_seconds
        )
        objects = [*([configmap] if configmap else []), render_buildah_job(module, plan, buildah)]
    else:
        kaniko = KanikoOptions(
            executor_image=settings.kaniko_image,
            active_deadline_seconds=settings.build_deadline_seconds,
        )
        objects = [*([configmap] if configmap else []), render_kaniko_job(module, plan, kaniko)]
    return objects


def sign_objects(
    module: Module, plan: KernelPlan, backend: Backend, settings: Settings, signed_by: str
) -> list[dict[str, Any]]:
    """The sign build's objects, as `ooto.signing_io` starts them: the backend's build of the
    generated sign Dockerfile (build secrets for Buildah, mounted Secrets for the others)."""
    mounted = backend != "buildah"
    signing = sign_build(plan, settings.signer_image, signed_by, mounted, module.key)
    return build_objects(module, signing, backend, settings)


def _sign_comment(plan: KernelPlan, signed_by: str | None) -> str:
    assert plan.sign is not None
    text = (
        f"when {plan.image} is missing or signed by another certificate, ooto signs "
        f"{plan.sign.unsigned_image} with the build objects below (Secrets "
        f"{plan.sign.key_secret} and {plan.sign.cert_secret} are mounted, never copied)"
    )
    if signed_by is None:
        text += (
            f"\nthe signed-by label shows a placeholder: --sign-cert FILE (the certificate in "
            f"Secret {plan.sign.cert_secret}) shows its real fingerprint"
        )
    return _comment_block(text)


def sign_certificate(path: str | None) -> str | None:
    """The signed-by fingerprint of the certificate file --sign-cert names (PEM or DER)."""
    if path is None:
        return None
    try:
        return fingerprint(Path(path).read_bytes())
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error}") from None
    except CertificateError as error:
        raise InputError(f"{path}: {error}") from None


def _without_owner(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}
    return {**obj, "metadata": metadata}


def _comment_block(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def _inline(mapping: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in mapping.items())
