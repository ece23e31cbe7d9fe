"""One validation of a Module, behind `ooto render`, the admission webhook and the operator.

Pure: no I/O. `validate_module(module_or_raw, policy)` returns every problem found without a
kernel, each with the field path it is about (`spec.kernelMappings[2].regexp`). It accepts a
parsed `Module` (the operator) or the raw object (the webhook, `ooto render`): a raw object's size
and nesting are checked before it is parsed, so an absurd object is refused without ever being
walked recursively.

Each rule is a small check `(Module, ModulePolicy) -> Iterable[FieldError]` listed in `CHECKS`; a
new field of the spec adds its check there. What a kernel decides (which mapping matches, the
image once substituted) stays in `ooto.domain.kernels`, which reports it per kernel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ooto.domain.api.module import KernelMapping, Module
from ooto.domain.kernels import SpecError, group_names, mapping_path, mapping_templates
from ooto.domain.modprobe import modprobe_errors
from ooto.domain.sign_collisions import static_collisions
from ooto.domain.signing import sign_problems
from ooto.domain.variables import (
    BUILTIN_VARIABLES,
    MOD_NAME,
    MOD_NAMESPACE,
    TemplateError,
    image_reference_problem,
    substitute,
    template_variables,
    unknown_variable_message,
)

MAX_DEPTH = 32
"""Deepest nesting of objects and lists in a spec. The deepest real field (a volume's
ephemeral.volumeClaimTemplate.spec.selector.matchExpressions[].values[]) is 11 levels down."""
MAX_VALUES = 100_000
"""Objects, lists and scalars in one spec, all together."""
MAX_ITEMS = 1024
"""Entries in any one list or object of a spec (kernelMappings, tolerations, env, ...)."""
MAX_STRING = 128 * 1024
"""Characters in any one string of a spec (an inline Dockerfile is the longest real one)."""
MAX_REPORTED = 20
"""Problems quoted in one message; the rest are counted."""

ANY_SERVICE_ACCOUNT = "*"
DEFAULT_SERVICE_ACCOUNT = "default"
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Every variable stands for this while checking an image without a kernel: "0" is valid in every
# part of a reference (host, port, path component, tag), so an image refused with it is refused
# for every kernel; the others are checked again per kernel, once the values are known.
_PLACEHOLDER = "0"
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class FieldError:
    """One problem with a Module, at `path` (e.g. `spec.tolerations[0].operator`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ModulePolicy:
    """What this operator's admin accepts in a Module beyond what the schema allows."""

    allow_privileged_module_loader: bool = False
    """A module loader may ask for `privileged` or capabilities beyond SYS_MODULE."""
    allow_host_path_volumes: bool = False
    """`additionalVolumes` may mount host paths (into the device plugin, which is privileged)."""
    allowed_service_accounts: frozenset[str] = frozenset()
    """Service accounts a Module may name for its pods: `name`, `namespace/name` or `*` (any).
    Empty: only the namespace's `default` account (what a Module without one gets)."""


Check = Callable[[Module, ModulePolicy], Iterable[FieldError]]


def validate_module(module: Module | Mapping[str, Any], policy: ModulePolicy) -> list[FieldError]:
    """Every problem of `module` (a parsed Module or the raw object) under `policy`."""
    if isinstance(module, Module):
        errors = structure_errors(_spec_tree(module))
        parsed = module
    else:
        errors = structure_errors(module.get("spec"))
        if errors:
            return errors  # never parse what is too big or too deep
        try:
            parsed = Module.model_validate(module)
        except ValidationError as error:
            return parse_errors(error)
    for check in CHECKS:
        errors.extend(check(parsed, policy))
    return errors


def summary(errors: Sequence[FieldError]) -> str:
    """One line quoting the first problems: the message of an Event, a condition or a denial."""
    quoted = "; ".join(str(error) for error in errors[:MAX_REPORTED])
    more = len(errors) - MAX_REPORTED
    return f"{quoted}; and {more} more" if more > 0 else quoted


def field_path(location: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: `spec.kernelMappings[0].containerImage`."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def parse_errors(error: ValidationError) -> list[FieldError]:
    return [FieldError(field_path(e["loc"]), e["msg"]) for e in error.errors()]


# --- size and nesting -------------------------------------------------------------------------


def structure_errors(spec: Any, root: str = "spec") -> list[FieldError]:
    """Nesting, counts and string lengths beyond the bounds, walked without recursion."""
    errors: list[FieldError] = []
    todo: list[tuple[str, Any, int]] = [(root, spec, 1)]
    values = 0
    while todo:
        path, node, depth = todo.pop()
        values += 1
        if values > MAX_VALUES:
            return [*errors, FieldError(root, f"more than {MAX_VALUES} values")]
        if isinstance(node, str) and len(node) > MAX_STRING:
            errors.append(FieldError(path, f"longer than {MAX_STRING} characters"))
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            return [*errors, FieldError(path, f"nested deeper than {MAX_DEPTH} levels")]
        if len(node) > MAX_ITEMS:
            errors.append(FieldError(path, f"more than {MAX_ITEMS} entries"))
            continue
        todo.extend(_children(path, node, depth + 1))
    return errors


def _children(path: str, node: dict[Any, Any] | list[Any], depth: int) -> Iterator[Any]:
    if isinstance(node, list):
        return ((f"{path}[{i}]", item, depth) for i, item in enumerate(node))
    return ((f"{path}.{key}", value, depth) for key, value in node.items())


def _spec_tree(module: Module) -> dict[str, Any]:
    """The spec as plain data; the free-form fields by reference, never copied recursively."""
    spec = module.spec
    free_form = {
        "moduleLoader": spec.module_loader,
        "devicePlugin": spec.device_plugin,
        "additionalVolumes": spec.additional_volumes,
        "tolerations": spec.tolerations,
    }
    typed = spec.model_dump(
        mode="json",
        by_alias=True,
        exclude={"module_loader", "device_plugin", "additional_volumes", "tolerations"},
    )
    return {**typed, **free_form}


# --- kernel mappings ----------------------------------------------------------------------------


def kernel_mapping_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """Regexps compile on RE2, templates parse and name known variables, images can be valid."""
    for index, mapping in enumerate(module.spec.kernel_mappings):
        yield from _mapping_errors(module, mapping, mapping_path(index))


def _mapping_errors(module: Module, mapping: KernelMapping, path: str) -> Iterator[FieldError]:
    try:
        known = {*BUILTIN_VARIABLES, *group_names(mapping, path)}
    except SpecError as error:
        yield FieldError(error.field_path, error.message)
        return
    for where, template in mapping_templates(mapping, path):
        try:
            unknown = [name for name in template_variables(template) if name not in known]
        except TemplateError as error:
            yield FieldError(where, str(error))
            continue
        if unknown:
            yield FieldError(where, unknown_variable_message(unknown[0], dict.fromkeys(known, "")))
        elif where.endswith(".containerImage"):
            yield from _image_errors(module, template, known, where)


def _image_errors(
    module: Module, template: str, known: set[str], path: str
) -> Iterator[FieldError]:
    """An image no kernel can make valid (no tag, uppercase repository, spaces, ...)."""
    _, at, digest = template.rpartition("@")
    if at and "$" in digest:
        return  # a digest from a variable: only a kernel's values can tell
    values = dict.fromkeys(known, _PLACEHOLDER)
    values |= {MOD_NAME: module.metadata.name, MOD_NAMESPACE: module.metadata.namespace}
    problem = image_reference_problem(substitute(template, values))
    if problem is not None:
        yield FieldError(path, f"no kernel can make this a valid image: {problem}")


def modprobe_check(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """`spec.modprobe`: its rules live beside the scripts they generate (domain/modprobe.py)."""
    for path, message in modprobe_errors(module):
        yield FieldError(path, message)


# --- the operator's policy ----------------------------------------------------------------------


_SECURITY = "spec.moduleLoader.securityContext"


def loader_shape_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """securityContext and its capabilities are objects: `ooto render` reads files that no
    schema checked, and the privilege check must see what it judges."""
    security = module.spec.module_loader.get("securityContext") or {}
    if not isinstance(security, Mapping):
        yield FieldError(_SECURITY, "must be an object")
    elif not isinstance(security.get("capabilities") or {}, Mapping):
        yield FieldError(f"{_SECURITY}.capabilities", "must be an object")


def loader_privilege_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """The module loader needs CAP_SYS_MODULE only: `privileged`, or any capability beyond it
    (SYS_ADMIN or ALL are as good as privileged), runs only where the policy allows it."""
    if policy.allow_privileged_module_loader:
        return
    security = _mapping(module.spec.module_loader.get("securityContext"))
    refusal = (
        "the module loader needs only CAP_SYS_MODULE; this operator is configured to refuse "
        "privileged module loaders (chart value allowPrivilegedModuleLoader)"
    )
    if security.get("privileged"):
        yield FieldError(f"{_SECURITY}.privileged", refusal)
    added = _mapping(security.get("capabilities")).get("add")
    listed = added if isinstance(added, list) else [added] if added else []
    more = [str(c) for c in listed if str(c).upper().removeprefix("CAP_") != "SYS_MODULE"]
    if more:
        yield FieldError(f"{_SECURITY}.capabilities.add", f"{', '.join(more)}: {refusal}")


def host_path_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """A hostPath volume reaches every file of the node from the privileged device plugin."""
    if policy.allow_host_path_volumes:
        return
    for index, volume in enumerate(module.spec.additional_volumes):
        if _mapping(volume).get("hostPath") is not None:
            yield FieldError(
                f"spec.additionalVolumes[{index}].hostPath",
                "this operator is configured to refuse hostPath volumes "
                "(chart value allowHostPathVolumes)",
            )


def service_account_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """The pods ooto creates run as an account the admin listed (or the namespace's default)."""
    name = module.spec.service_account_name
    if not name or name == DEFAULT_SERVICE_ACCOUNT:
        return
    allowed = policy.allowed_service_accounts
    scoped = f"{module.metadata.namespace}/{name}"
    if ANY_SERVICE_ACCOUNT in allowed or name in allowed or scoped in allowed:
        return
    yield FieldError(
        "spec.serviceAccountName",
        f"service account {name!r} is not allowed by this operator "
        f"(chart value allowedServiceAccounts: {_listed(allowed)})",
    )


def _listed(allowed: frozenset[str]) -> str:
    return ", ".join(sorted(allowed)) if allowed else "empty, only the namespace's default"


def _mapping(value: Any) -> Mapping[str, Any]:
    """A free-form field as a mapping: without the API server's schema (`ooto render` reads a
    file) a field may hold anything, and a check must judge it, not crash on it."""
    return value if isinstance(value, Mapping) else {}


# --- tolerations (the rules of the API server's pod validation, as KMM's webhook applies) -------


def toleration_errors(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    for index, toleration in enumerate(module.spec.tolerations):
        yield from _toleration_errors(_mapping(toleration), f"spec.tolerations[{index}]")


def _toleration_errors(toleration: Mapping[str, Any], path: str) -> Iterator[FieldError]:
    key, value = str(toleration.get("key") or ""), str(toleration.get("value") or "")
    operator, effect = str(toleration.get("operator") or ""), str(toleration.get("effect") or "")
    if key and not is_qualified_name(key):
        yield FieldError(f"{path}.key", f"{key!r} is not a valid key (a label key)")
    if not key and operator != "Exists":
        yield FieldError(f"{path}.operator", "must be Exists when key is empty")
    if operator and operator not in TOLERATION_OPERATORS:
        yield FieldError(f"{path}.operator", f"{operator!r} is not one of Equal, Exists")
    if operator == "Exists" and value:
        yield FieldError(f"{path}.value", "must be empty when operator is Exists")
    if operator in ("", "Equal") and value and not _is_label_value(value):
        yield FieldError(f"{path}.value", f"{value!r} is not a valid label value")
    if effect and effect not in TAINT_EFFECTS:
        yield FieldError(f"{path}.effect", f"{effect!r} is not one of {', '.join(TAINT_EFFECTS)}")
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        yield FieldError(f"{path}.tolerationSeconds", "needs effect NoExecute")


def is_qualified_name(key: str) -> bool:
    """A label key: an optional DNS-subdomain prefix and `/`, then a name of up to 63 chars."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= 63 and _NAME_PART.fullmatch(name) is not None


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and _NAME_PART.fullmatch(value) is not None


def sign_check(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """Signing fields no kernel can use (ooto.domain.signing.sign_problems)."""
    for path, message in sign_problems(module):
        yield FieldError(path, message)


def sign_collision_check(module: Module, policy: ModulePolicy) -> Iterator[FieldError]:
    """Two mappings giving one signed image two sign Secrets (ooto.domain.sign_collisions)."""
    for path, message in static_collisions(module):
        yield FieldError(path, message)


CHECKS: tuple[Check, ...] = (
    kernel_mapping_errors,
    sign_check,
    sign_collision_check,
    modprobe_check,
    loader_shape_errors,
    loader_privilege_errors,
    host_path_errors,
    service_account_errors,
    toleration_errors,
)
