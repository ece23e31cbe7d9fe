"""`ooto render -f module.yaml --kernel K`: what the operator would create for one kernel.

No cluster needed. Stdout stays valid YAML (explanations are `#` comments), so it can be piped to
`kubectl apply --dry-run=server -f -`. Exit codes: 0 rendered, 1 no mapping matches the kernel,
2 bad input (the message names the file and the field path).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from ooto.api.module import KIND, Module
from ooto.kernels import (
    MAX_KERNEL_LENGTH,
    BuildPlan,
    KernelPlan,
    SpecError,
    build_job_name,
    mapping_path,
    plan_kernel,
    validate_module,
)
from ooto.render import node_kernel_labels, render_daemonsets


class InputError(Exception):
    """Bad input: the message already names the file and what is wrong."""


def render_command(args: argparse.Namespace) -> int:
    filename, kernel = str(args.filename), str(args.kernel)
    try:
        module = load_module(filename)
        errors = validate_module(module)
        if errors:
            raise InputError("\n".join(f"{filename}: {error}" for error in errors))
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
    write_plan(module, plan, sys.stdout)
    return 0


def load_module(filename: str) -> Module:
    """The Module in a YAML file; InputError naming the file and field path otherwise."""
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
    try:
        return Module.model_validate(modules[0])
    except ValidationError as error:
        lines = [f"{filename}: {field_path(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise InputError("\n".join(lines)) from None


def field_path(location: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: `spec.kernelMappings[0].containerImage`."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


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


def write_plan(module: Module, plan: KernelPlan, out: TextIO) -> None:
    mapping = module.spec.kernel_mappings[plan.mapping_index]
    matcher = f"literal {mapping.literal!r}" if mapping.literal else f"regexp {mapping.regexp!r}"
    labels, _ = node_kernel_labels(plan.kernel)
    out.write(f"# kernel {plan.kernel!r} matches {mapping_path(plan.mapping_index)} ({matcher})\n")
    out.write(f"# image: {plan.image}\n")
    out.write(f"# nodes running it are labelled {_inline(labels)}\n")
    if not module.metadata.uid:
        out.write("# ownerReferences get the Module's uid once the Module exists in a cluster\n")
    if plan.build is not None:
        out.write(_comment_block(_build_description(module, plan.build)))
    out.write(yaml.safe_dump_all(render_daemonsets(module, plan), explicit_start=True))


def _build_description(module: Module, build: BuildPlan) -> str:
    job = build_job_name(module.metadata.name, build.image)
    source: dict[str, Any] = {}
    if build.git is not None:
        source = {"git": build.git.model_dump(by_alias=True)}
    description = {
        "image": build.image,
        "job": job,
        "buildArgs": [{"name": name, "value": value} for name, value in build.build_args],
        "pullInsecure": build.pull_insecure,
        "pushInsecure": build.push_insecure,
        **source,
    }
    header = "when the registry does not have the image, ooto builds it first:\n"
    text = header + yaml.safe_dump(description, sort_keys=False)
    if build.dockerfile is not None:
        # Shown as written: the Dockerfile is never substituted, it reads the build args.
        text += "dockerfile: |\n" + "".join(f"  {line}\n" for line in build.dockerfile.splitlines())
    return text


def _comment_block(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def _inline(mapping: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in mapping.items())
