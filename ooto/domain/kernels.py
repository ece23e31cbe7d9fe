"""Kernel strings: which mapping a kernel gets, its variables, and names and labels safe for it.

Pure: no I/O. A Node can report any kernel string, so everything here is total on arbitrary
strings and bounded in time: regexps run on RE2 (linear time, as in Go and KMM), and kernels
longer than MAX_KERNEL_LENGTH never match a mapping (Linux caps a release string at 64 bytes, so
only a broken or hostile Node gets there); they still get a label value and names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

import re2

from ooto.domain.api.module import GitSource, KernelMapping, Module, RegistryAccess, Sign
from ooto.domain.signing import SignPlan, glob_problem, unsigned_tag
from ooto.domain.variables import (
    BUILTIN_VARIABLES,
    TemplateError,
    image_reference_problem,
    kernel_variables,
    substitute,
    tag_safe,
)

Role = Literal["module-loader", "device-plugin"]
ROLE_SHORT: Mapping[Role, str] = MappingProxyType({"module-loader": "ml", "device-plugin": "dp"})
MAX_KERNEL_LENGTH = 256
MAX_LABEL_LENGTH = 63
HASH_LENGTH = 10

_VALID_KERNEL = re.compile(r"[A-Za-z0-9._+~-]{1,128}")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NOT_LABEL_CHAR = re.compile(r"[^-A-Za-z0-9_.]")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NOT_DNS_CHAR = re.compile(r"[^-a-z0-9]")


class SpecError(ValueError):
    """A Module field that cannot be used; `field_path` is like `spec.kernelMappings[2].regexp`."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


@dataclass(frozen=True)
class BuildPlan:
    """What to build for one kernel, every template already substituted."""

    image: str
    dockerfile: str | None
    git: GitSource | None
    build_args: tuple[tuple[str, str], ...]
    pull_insecure: bool
    push_insecure: bool


@dataclass(frozen=True)
class KernelPlan:
    """The resolved input for one (Module, kernel): the mapping that matched and its image."""

    namespace: str
    module_name: str
    kernel: str
    kernel_label: str
    mapping_index: int
    image: str
    build: BuildPlan | None
    variables: Mapping[str, str]
    sign: SignPlan | None = None
    """Set when the image is signed: `image` is then the signed image and `build` (if any)
    builds `sign.unsigned_image`."""


def kernel_hash(value: str) -> str:
    """First 10 hex digits of sha256(value): short, stable across versions and machines."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL_LENGTH and _LABEL_VALUE.fullmatch(value) is not None


def label_safe(value: str) -> str:
    """`value` itself when it is a non-empty valid label value; otherwise a readable prefix
    (invalid characters as `_`) cut to fit, then `-` and the value's hash. Distinct values get
    distinct results unless someone crafts a value equal to another's hashed form, or the 40-bit
    hashes collide."""
    if value and is_label_value(value):
        return value
    prefix = _NOT_LABEL_CHAR.sub("_", value)[: MAX_LABEL_LENGTH - HASH_LENGTH - 1]
    prefix = prefix.strip("-_.")
    return f"{prefix}-{kernel_hash(value)}" if prefix else kernel_hash(value)


def kernel_label_value(kernel: str) -> str:
    """The node kernel label value (docs/architecture.md, "Names and labels"): the kernel
    verbatim when label-safe."""
    return label_safe(kernel)


def daemonset_name(module_name: str, role: Role, kernel: str) -> str:
    """`<module>-<ml|dp>-<10 hex of sha256(kernel)>`, a DNS-1123 label of at most 63 chars."""
    suffix = f"-{ROLE_SHORT[role]}-{kernel_hash(kernel)}"
    return _name_part(module_name, MAX_LABEL_LENGTH - len(suffix)) + suffix


def build_job_name(module_name: str, image: str) -> str:
    """`<module>-build-<10 hex of sha256(image)>`: one build per image, whoever asks for it."""
    suffix = f"-build-{kernel_hash(image)}"
    return _name_part(module_name, MAX_LABEL_LENGTH - len(suffix)) + suffix


def _name_part(module_name: str, room: int) -> str:
    """The module name when it fits as a DNS label; otherwise cut, plus a hash of the full name,
    so two Modules (`a.b` and `a-b`, or long names sharing a prefix) never share object names."""
    if len(module_name) <= room and _DNS_LABEL.fullmatch(module_name):
        return module_name
    hashed = kernel_hash(module_name)[:6]
    cut = _NOT_DNS_CHAR.sub("-", module_name.lower())[: room - len(hashed) - 1].strip("-")
    return f"{cut}-{hashed}" if cut else hashed


def mapping_path(index: int) -> str:
    return f"spec.kernelMappings[{index}]"


@lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def compile_regexp(pattern: str, field_path: str) -> Any:
    """The compiled RE2 pattern; SpecError naming `field_path` when RE2 rejects it."""
    try:
        return _compile(pattern)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise SpecError(field_path, f"invalid RE2 regexp: {text}") from None


def group_names(mapping: KernelMapping, path: str) -> list[str]:
    if mapping.regexp is None:
        return []
    names = sorted(compile_regexp(mapping.regexp, f"{path}.regexp").groupindex)
    for name in names:
        if name in BUILTIN_VARIABLES:
            raise SpecError(f"{path}.regexp", f"group name {name} shadows a built-in variable")
    return names


def mapping_templates(mapping: KernelMapping, path: str) -> list[tuple[str, str]]:
    """(field path, template) for every substituted field of a mapping."""
    found = [(f"{path}.containerImage", mapping.container_image)]
    if mapping.sign is not None:
        found += [
            (f"{path}.sign.filesToSign[{j}]", f) for j, f in enumerate(mapping.sign.files_to_sign)
        ]
        if mapping.sign.unsigned_image:
            found.append((f"{path}.sign.unsignedImage", mapping.sign.unsigned_image))
    if mapping.build is not None:
        for j, arg in enumerate(mapping.build.build_args):
            found.append((f"{path}.build.buildArgs[{j}].value", arg.value))
        if mapping.build.git is not None:
            found.append((f"{path}.build.git.ref", mapping.build.git.ref))
    return found


def _match(mapping: KernelMapping, kernel: str, path: str) -> dict[str, str] | None:
    """Named groups when the mapping matches the kernel (empty for literals), else None."""
    if mapping.literal is not None:
        return {} if mapping.literal == kernel else None
    assert mapping.regexp is not None  # the model guarantees exactly one matcher
    found = compile_regexp(mapping.regexp, f"{path}.regexp").search(kernel)
    if found is None:
        return None
    group_names(mapping, path)
    return {name: value or "" for name, value in found.groupdict().items()}


def _is_utf8(kernel: str) -> bool:
    try:
        kernel.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a hostile JSON string
        return False
    return True


def valid_kernel(kernel: str) -> bool:
    """A kernel string ooto acts on: `[A-Za-z0-9._+~-]{1,128}`.

    Nodes report their kernel themselves, so a compromised node can write anything there; a
    string outside this set (shell syntax, spaces, control characters) gets no loader and no
    build. Real release strings (`uname -r`, at most 64 bytes) always fit."""
    return _VALID_KERNEL.fullmatch(kernel) is not None


def find_mapping(module: Module, kernel: str) -> tuple[int, dict[str, str]] | None:
    """Index and named groups of the first mapping matching `kernel`, in list order."""
    if len(kernel) > MAX_KERNEL_LENGTH or not _is_utf8(kernel):
        return None
    for index, mapping in enumerate(module.spec.kernel_mappings):
        groups = _match(mapping, kernel, mapping_path(index))
        if groups is not None:
            return index, groups
    return None


def _substitute(template: str, variables: Mapping[str, str], path: str, image: bool) -> str:
    try:
        return substitute(template, variables, tag_safe if image else str)
    except TemplateError as error:
        raise SpecError(path, str(error)) from None


def _resolve_image(mapping: KernelMapping, variables: Mapping[str, str], path: str) -> str:
    field_path = f"{path}.containerImage"
    image = _substitute(mapping.container_image, variables, field_path, image=True)
    problem = image_reference_problem(image)
    if problem is not None:
        raise SpecError(field_path, problem)
    return image


def _build_plan(
    mapping: KernelMapping, image: str, variables: Mapping[str, str], path: str
) -> BuildPlan | None:
    build = mapping.build
    if build is None:
        return None
    user_args = [
        (arg.name, _substitute(arg.value, variables, f"{path}.build.buildArgs[{j}].value", False))
        for j, arg in enumerate(build.build_args)
    ]
    overridden = {name for name, _ in user_args}
    builtin = [(name, value) for name, value in variables.items() if name not in overridden]
    git = build.git
    if git is not None:
        ref = _substitute(git.ref, variables, f"{path}.build.git.ref", False)
        git = git.model_copy(update={"ref": ref})
    return BuildPlan(
        image=image,
        dockerfile=build.dockerfile,
        git=git,
        build_args=(*builtin, *user_args),
        pull_insecure=build.pull.insecure,
        push_insecure=build.push.insecure,
    )


_SECURE = RegistryAccess()


def plan_kernel(module: Module, kernel: str) -> KernelPlan | None:
    """The plan for `kernel`: None when no mapping matches; SpecError when the match is unusable."""
    found = find_mapping(module, kernel)
    if found is None:
        return None
    index, groups = found
    mapping, path = module.spec.kernel_mappings[index], mapping_path(index)
    builtin = kernel_variables(kernel, module.metadata.name, module.metadata.namespace)
    variables = MappingProxyType(dict(sorted((builtin | groups).items())))
    image = _resolve_image(mapping, variables, path)
    sign = _sign_plan(mapping, module.spec.sign, image, variables, path)
    build_image = sign.unsigned_image if sign is not None else image
    return KernelPlan(
        namespace=module.metadata.namespace,
        module_name=module.metadata.name,
        kernel=kernel,
        kernel_label=kernel_label_value(kernel),
        mapping_index=index,
        image=image,
        build=_build_plan(mapping, build_image, variables, path),
        variables=variables,
        sign=sign,
    )


def _sign_plan(
    mapping: KernelMapping,
    default: Sign | None,
    image: str,
    variables: Mapping[str, str],
    path: str,
) -> SignPlan | None:
    sign, where = (mapping.sign, f"{path}.sign") if mapping.sign else (default, "spec.sign")
    if sign is None:
        return None
    files = []
    for j, pattern in enumerate(sign.files_to_sign):
        field_path = f"{where}.filesToSign[{j}]"
        file = _substitute(pattern, variables, field_path, image=False)
        problem = glob_problem(file)
        if problem is not None:
            raise SpecError(field_path, problem)
        files.append(file)
    build = mapping.build
    return SignPlan(
        unsigned_image=_unsigned_image(sign, mapping, image, variables, where),
        files=tuple(files),
        key_secret=sign.key_secret.name,
        key_key=sign.key_secret.key,
        cert_secret=sign.cert_secret.name,
        cert_key=sign.cert_secret.key,
        hash_algorithm=sign.hash_algorithm.value,
        pull_insecure=(sign.pull or (build.pull if build else None) or _SECURE).insecure,
        push_insecure=(sign.push or (build.push if build else None) or _SECURE).insecure,
    )


def _unsigned_image(
    sign: Sign, mapping: KernelMapping, image: str, variables: Mapping[str, str], where: str
) -> str:
    field_path = f"{where}.unsignedImage"
    if sign.unsigned_image is None:
        if mapping.build is None:
            raise SpecError(field_path, "required when the mapping has no build")
        try:
            return unsigned_tag(image)
        except ValueError as error:
            raise SpecError(field_path, str(error)) from None
    unsigned = _substitute(sign.unsigned_image, variables, field_path, image=True)
    problem = image_reference_problem(unsigned)
    if problem is not None:
        raise SpecError(field_path, problem)
    if unsigned == image:
        raise SpecError(field_path, "must differ from containerImage (the signed image)")
    return unsigned
