"""`ooto preflight --kernel K [--kernel ...]`: will every Module of the cluster work on kernel K?

Reads the cluster's Modules (and each Module's registry Secret) and asks the registries, exactly as
the operator would, without creating or changing anything. The registries are asked from where
this command runs: an in-cluster registry unreachable from here shows as ImageCheckFailed (a
PreflightValidation resource asks from inside the cluster instead).

Exit codes: 0 every Module is ready for every kernel (WillBuild counts as ready), 1 some are not,
2 bad input or the cluster could not be asked. `-o json` prints a list of
`{module, kernel, verdict, image, message}`, `-o yaml` the same as YAML, `-o table` (default) a
table for people.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from ooto.domain.api import Module
from ooto.domain.api.preflight import MAX_KERNELS, MODULE_KEY_PATTERN, Verdict
from ooto.domain.kernels import MAX_KERNEL_LENGTH
from ooto.domain.preflight_verdicts import (
    Finding,
    judge_check,
    plan_or_finding,
    selected,
    sort_findings,
)
from ooto.domain.validation import ModulePolicy
from ooto.kube.client import KubeApi
from ooto.kube.config import KubeconfigError, make_api_client, resolve_kubeconfig
from ooto.kube.resources import MODULES
from ooto.module_images import ModuleImages
from ooto.registry import RegistryClient
from ooto.settings import Settings, SettingsError

OUTPUTS = ("table", "yaml", "json")
CHECK_CONCURRENCY = 16


class InputError(Exception):
    """Bad input (exit code 2); the message says which flag and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel",
        action="append",
        default=[],
        metavar="KERNEL",
        help="kernel version string the nodes will run, as in a Node's "
        "status.nodeInfo.kernelVersion (repeatable; at least one)",
    )
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAMESPACE/NAME",
        help="check only this Module (repeatable; default: every Module)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster, else ~/.kube/config)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default="table",
        help="table (for people, the default), json or yaml: a list of "
        "{module, kernel, verdict, image, message}",
    )


def preflight_command(args: argparse.Namespace) -> int:
    try:
        kernels = checked_kernels(args.kernel)
        wanted = checked_modules(args.module)
        policy = _policy()
        findings = asyncio.run(assess(args.kubeconfig, kernels, wanted, policy))
    except InputError as error:
        print(f"ooto preflight: {error}", file=sys.stderr)
        return 2
    write_findings(findings, args.output, sys.stdout)
    return 0 if all(f.ready for f in findings) else 1


def _policy() -> ModulePolicy:
    """The operator's Module policy as `ooto render` reads it: OOTO_* variables, else defaults
    (the command cannot see the running operator's settings)."""
    try:
        return Settings.load().module_policy()
    except SettingsError as error:
        raise InputError(str(error)) from None


def checked_kernels(kernels: Sequence[str]) -> list[str]:
    if not kernels:
        raise InputError("give at least one --kernel")
    if len(kernels) > MAX_KERNELS:
        raise InputError(f"at most {MAX_KERNELS} kernels at a time (got {len(kernels)})")
    for kernel in kernels:
        if not kernel.strip() or kernel != kernel.strip():
            raise InputError(f"--kernel {kernel!r}: empty, or blank around it")
        if len(kernel) > MAX_KERNEL_LENGTH:
            raise InputError(f"--kernel: longer than {MAX_KERNEL_LENGTH} characters")
    return list(dict.fromkeys(kernels))


def checked_modules(modules: Sequence[str]) -> list[str]:
    for key in modules:
        if not re.fullmatch(MODULE_KEY_PATTERN, key):
            raise InputError(f"--module {key!r}: expected NAMESPACE/NAME")
    return list(dict.fromkeys(modules))


async def assess(
    flag: str | None, kernels: list[str], wanted: list[str], policy: ModulePolicy
) -> list[Finding]:
    """Every (Module, kernel) finding; InputError when the cluster cannot be asked. `flag` is
    --kubeconfig; without it, as `ooto run` and kubectl: KUBECONFIG, in-cluster, ~/.kube/config."""
    try:
        api = KubeApi(await make_api_client(resolve_kubeconfig(flag)))
    except KubeconfigError as error:  # one line naming the file and the fix, no traceback
        raise InputError(str(error)) from None
    try:
        raw = await _list_modules(api, wanted)
        async with RegistryClient() as registry:
            images = ModuleImages(api, registry)
            return await _findings(images, raw, kernels, wanted, policy)
    finally:
        await api.close()


async def _list_modules(api: KubeApi, wanted: list[str]) -> list[dict[str, Any]]:
    """Every Module, or with `--module` only those namespaces' Modules (so a user whose Role
    covers just those namespaces can ask)."""
    namespaces: list[str | None] = [*sorted({key.partition("/")[0] for key in wanted})] or [None]
    found: list[dict[str, Any]] = []
    for namespace in namespaces:
        try:
            found += (await api.list(MODULES, namespace)).items
        except Exception as error:
            where = f" in namespace {namespace}" if namespace else ""
            raise InputError(f"cannot list Modules{where}: {error}") from None
    return found


async def _findings(
    images: ModuleImages,
    raw: list[dict[str, Any]],
    kernels: list[str],
    wanted: list[str],
    policy: ModulePolicy,
) -> list[Finding]:
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)
    modules = {f"{m['metadata']['namespace']}/{m['metadata']['name']}": m for m in raw}
    tasks = []
    missing = [key for key in wanted if key not in modules]
    found = [
        Finding(key, kernel, Verdict.INVALID_SPEC, message="no such Module")
        for key in missing
        for kernel in kernels
    ]
    for key, obj in sorted(modules.items()):
        if not selected(key, wanted):
            continue
        try:
            module = Module.model_validate(obj)
        except ValidationError as error:
            message = f"the Module cannot be read: {error.error_count()} problem(s)"
            found += [Finding(key, k, Verdict.INVALID_SPEC, message=message) for k in kernels]
            continue
        tasks += [_one(images, module, kernel, policy, limit) for kernel in kernels]
    found += await asyncio.gather(*tasks)
    return sort_findings(found)


async def _one(
    images: ModuleImages,
    module: Module,
    kernel: str,
    policy: ModulePolicy,
    limit: asyncio.Semaphore,
) -> Finding:
    planned = plan_or_finding(module, kernel, policy)
    if isinstance(planned, Finding):
        return planned
    async with limit:
        try:
            check = await images.check(module, planned)
        except Exception as error:  # Secret missing or malformed, or not readable (403)
            return judge_check(module.key, planned, "error", str(error), push=False)
    return judge_check(module.key, planned, check.outcome, check.message, push=False)


def write_findings(findings: Sequence[Finding], output: str, out: TextIO) -> None:
    rows = [
        {
            "module": f.module,
            "kernel": f.kernel,
            "verdict": f.verdict.value if f.verdict else "",
            "image": f.image,
            "message": f.message,
        }
        for f in findings
    ]
    if output == "json":
        out.write(json.dumps(rows, indent=2) + "\n")
    elif output == "yaml":
        out.write(yaml.safe_dump(rows, sort_keys=False, width=1000))
    else:
        _table(findings, out)


def _table(findings: Sequence[Finding], out: TextIO) -> None:
    if not findings:
        out.write("no Modules found\n")
        return
    header = ("MODULE", "KERNEL", "VERDICT", "IMAGE", "MESSAGE")
    rows = [
        (f.module, f.kernel, f.verdict.value if f.verdict else "", f.image or "-", f.message)
        for f in findings
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")
    ready = sum(f.ready for f in findings)
    out.write(f"\n{ready} of {len(findings)} Module/kernel pairs ready\n")
