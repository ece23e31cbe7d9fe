"""Per-kernel variables in Module templates (`${NAME}` or `$NAME`), and image reference checks.

Pure: no I/O. Templates are parsed once into parts, so "is every variable known?" can be checked
without a kernel (at validation time) and the same parse drives substitution. `$$` stands for a
literal `$`; a `$` followed by anything that cannot start a name is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

KERNEL_FULL_VERSION = "KERNEL_FULL_VERSION"
KERNEL_VERSION = "KERNEL_VERSION"
KERNEL_XYZ = "KERNEL_XYZ"
KERNEL_X = "KERNEL_X"
KERNEL_Y = "KERNEL_Y"
KERNEL_Z = "KERNEL_Z"
MOD_NAME = "MOD_NAME"
MOD_NAMESPACE = "MOD_NAMESPACE"
BUILTIN_VARIABLES = (
    KERNEL_FULL_VERSION,
    KERNEL_VERSION,
    KERNEL_XYZ,
    KERNEL_X,
    KERNEL_Y,
    KERNEL_Z,
    MOD_NAME,
    MOD_NAMESPACE,
)
# Only kernels that start with X.Y.Z define these; using them with any other kernel is an error.
_XYZ_VARIABLES = frozenset({KERNEL_XYZ, KERNEL_X, KERNEL_Y, KERNEL_Z})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_XYZ = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_NOT_TAG_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class TemplateError(ValueError):
    """A template that cannot be parsed or substituted; the caller adds the field path."""


@dataclass(frozen=True)
class Variable:
    name: str


TemplatePart = str | Variable


def parse_template(template: str) -> tuple[TemplatePart, ...]:
    """Split a template into literal text and variable references."""
    parts: list[TemplatePart] = []
    text: list[str] = []
    position = 0
    while (dollar := template.find("$", position)) != -1:
        text.append(template[position:dollar])
        variable, position = _read_reference(template, dollar)
        if variable is None:
            text.append(template[dollar:position].replace("$$", "$"))
            continue
        parts.extend(["".join(text), variable] if text else [variable])
        text = []
    text.append(template[position:])
    tail = "".join(text)
    if tail:
        parts.append(tail)
    return tuple(part for part in parts if part != "")


def _read_reference(template: str, dollar: int) -> tuple[Variable | None, int]:
    """Read the reference starting at `template[dollar] == "$"`; return it and the next position."""
    after = dollar + 1
    if template.startswith("$", after):
        return None, after + 1
    if template.startswith("{", after):
        close = template.find("}", after)
        if close == -1:
            raise TemplateError(f"unterminated '${{' at offset {dollar}")
        name = template[after + 1 : close]
        if not _NAME.fullmatch(name):
            raise TemplateError(f"invalid variable name {name!r} at offset {dollar}")
        return Variable(name), close + 1
    match = _NAME.match(template, after)
    if match is None:
        return None, after
    return Variable(match.group()), match.end()


def template_variables(template: str) -> list[str]:
    """Names used by a template, in order of appearance; raises TemplateError."""
    return [part.name for part in parse_template(template) if isinstance(part, Variable)]


def substitute(
    template: str,
    variables: Mapping[str, str],
    transform: Callable[[str], str] = str,
) -> str:
    """Replace every reference with `transform(value)`; an unknown name raises TemplateError."""
    out: list[str] = []
    for part in parse_template(template):
        if isinstance(part, str):
            out.append(part)
            continue
        if part.name not in variables:
            raise TemplateError(unknown_variable_message(part.name, variables))
        out.append(transform(variables[part.name]))
    return "".join(out)


def unknown_variable_message(name: str, variables: Mapping[str, str]) -> str:
    if name in _XYZ_VARIABLES:
        kernel = variables.get(KERNEL_FULL_VERSION, "")
        return f"variable {name} needs a kernel starting with X.Y.Z, got {kernel!r}"
    return f"unknown variable {name!r} (known: {', '.join(sorted(variables))})"


def tag_safe(value: str) -> str:
    """Make a value usable inside an image tag, as KMM does: `6.1.0-v8+` gives `6.1.0-v8_`."""
    return _NOT_TAG_SAFE.sub("_", value)


def kernel_variables(kernel: str, module_name: str, namespace: str) -> dict[str, str]:
    """The built-in variables for one kernel; the X.Y.Z ones only when the kernel starts so."""
    variables = {
        KERNEL_FULL_VERSION: kernel,
        KERNEL_VERSION: kernel,
        MOD_NAME: module_name,
        MOD_NAMESPACE: namespace,
    }
    xyz = _XYZ.match(kernel)
    if xyz is not None:
        x, y, z = xyz.groups()
        variables |= {KERNEL_XYZ: xyz.group(), KERNEL_X: x, KERNEL_Y: y, KERNEL_Z: z}
    return variables


# The reference grammar of distribution/reference (docker's), with a required tag or digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_NAME_REF = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME_REF})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_MAX_NAME_LENGTH = 255


def image_reference_problem(image: str) -> str | None:
    """Why `image` cannot be pulled as written (None when it is a valid reference)."""
    match = _REFERENCE.fullmatch(image)
    if match is None:
        return f"{image!r} is not a valid image reference"
    name, tag, digest = match.groups()
    if len(name) > _MAX_NAME_LENGTH:
        return f"image name in {image!r} is longer than {_MAX_NAME_LENGTH} characters"
    if tag is None and digest is None:
        return f"image {image!r} has neither a tag nor a digest"
    return None
