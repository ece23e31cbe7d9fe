"""The Module CustomResourceDefinition, generated from the pydantic models (`ooto crds`).

The models' JSON schema becomes a structural schema Kubernetes 1.20 accepts: references inlined,
titles dropped, descriptions (the field docstrings, for `kubectl explain`), defaults, enums and
length limits kept, `oneOf` + `required` where exactly one of two fields must be set (allowed in a
structural schema as long as no `type` sits inside it), and the real core/v1 schemas wherever a
field carries the `x-ooto-k8s-ref` marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ooto.domain.api.k8s_schemas import structural_schema
from ooto.domain.api.module import (
    GROUP,
    K8S_REF,
    KIND,
    PLURAL,
    VERSION,
    Module,
    ModuleSpec,
    ModuleStatus,
)
from ooto.domain.api.preflight import (
    PREFLIGHT_KIND,
    PREFLIGHT_PLURAL,
    PreflightSpec,
    PreflightStatus,
    PreflightValidation,
)

Schema = dict[str, Any]

CRD_FILENAME = f"{GROUP}_{PLURAL}.yaml"
PREFLIGHT_CRD_FILENAME = f"{GROUP}_{PREFLIGHT_PLURAL}.yaml"
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
APPROVAL = "unapproved, experimental-only"
# Pairs of which a model needs exactly one (its model validator says so; the schema must too).
EXACTLY_ONE: dict[str, tuple[str, str]] = {
    "KernelMapping": ("literal", "regexp"),
    "Build": ("dockerfile", "git"),
}
# Node selector values: strings, or unquoted numbers the Module model reads as their label text.
# Not an untyped value: on Kubernetes 1.20 an untyped (preserve-unknown-fields) subtree here costs
# the API server time exponential in its depth before any validation runs (18 levels: 10 s of
# CPU; 100: a request that times out and keeps a core busy), so a YAML boolean must be quoted.
_ANY_SCALAR_MAPS = {("ModuleSpec", "selector")}
_SCALAR: Schema = {"x-kubernetes-int-or-string": True}
_NAME_OPTIONAL = {("ModuleSpec", "moduleLoader")}
_KEPT = (
    "description",
    "enum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "minimum",
    "maximum",
    "required",
    "format",
)
_SPEC_DESCRIPTION = "Which kernel module to load on which nodes, and the image for each kernel."
_STATUS_DESCRIPTION = (
    "What ooto observed: conditions, and one entry per kernel on the selected nodes."
)
_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Kernels", "type": "integer", "jsonPath": ".status.kernelCount"},
    {"name": "Nodes Ready", "type": "integer", "jsonPath": ".status.nodesReady"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.nodesDesired"},
    {"name": "Up-to-date", "type": "integer", "jsonPath": ".status.upgrade.nodesUpToDate"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # `kubectl get modules -o wide`: the Node label key workloads select on.
    {"name": "Ready Label", "type": "string", "priority": 1, "jsonPath": ".status.readyLabel"},
]
_PREFLIGHT_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Complete",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Complete")].status',
    },
    {"name": "Ready", "type": "integer", "jsonPath": ".status.ready"},
    {"name": "Decided", "type": "integer", "jsonPath": ".status.decided"},
    {"name": "Total", "type": "integer", "jsonPath": ".status.total"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Complete")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class _Converter:
    """Pydantic JSON schema (with `$defs`) to a structural OpenAPI v3 schema."""

    def __init__(self, defs: dict[str, Schema]) -> None:
        self.defs = defs

    def model(self, name: str) -> Schema:
        schema = self.defs[name]
        out = self._object(schema, name)
        if name in EXACTLY_ONE:
            out["oneOf"] = [{"required": [field]} for field in EXACTLY_ONE[name]]
        return out

    def _object(self, schema: Schema, model: str) -> Schema:
        out: Schema = {"type": "object", **_keywords(schema)}
        properties = {
            key: self.node(value, (model, key))
            for key, value in schema.get("properties", {}).items()
        }
        if properties:
            out["properties"] = properties
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = self.node(extra, (model, ""))
        return out

    def node(self, schema: Schema, where: tuple[str, str]) -> Schema:
        outer = _keywords(schema)
        # Kubernetes 1.20 reads an empty-string default as null and rejects the CRD; the models
        # apply those defaults anyway.
        if schema.get("default") not in (None, ""):
            outer["default"] = schema["default"]
        return {**self._inner(schema, where), **outer}

    def _inner(self, schema: Schema, where: tuple[str, str]) -> Schema:
        if K8S_REF in schema:
            return _k8s(schema[K8S_REF], name_optional=where in _NAME_OPTIONAL)
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/$defs/")
            target = self.defs[name]
            return self.model(name) if target.get("type") == "object" else self.node(target, where)
        if "anyOf" in schema:
            return self._any_of(schema["anyOf"], where)
        if schema.get("type") == "array":
            return {"type": "array", "items": self.node(schema["items"], where)}
        if schema.get("type") == "object":
            if where in _ANY_SCALAR_MAPS:
                return {"type": "object", "additionalProperties": dict(_SCALAR)}
            return self._object(schema, where[0])
        return {"type": schema["type"]}

    def _any_of(self, options: list[Schema], where: tuple[str, str]) -> Schema:
        present = [option for option in options if option.get("type") != "null"]
        if len(present) == 1:
            return self.node(present[0], where)
        if sorted(option.get("type", "") for option in present) == ["integer", "string"]:
            return {"x-kubernetes-int-or-string": True}
        raise ValueError(f"{where}: no structural schema for anyOf {options}")


def _keywords(schema: Schema) -> Schema:
    kept = {key: schema[key] for key in _KEPT if key in schema}
    if "description" in kept:  # docstrings wrap at 100 columns; kubectl explain rewraps
        kept["description"] = " ".join(kept["description"].split())
    return kept


def _k8s(definition: str, *, name_optional: bool) -> Schema:
    schema = structural_schema(definition)
    if name_optional and "required" in schema:
        required = [field for field in schema["required"] if field != "name"]
        schema = {key: value for key, value in schema.items() if key != "required"}
        if required:
            schema["required"] = required
    return schema


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of one pydantic model."""
    full = model.model_json_schema(by_alias=True)
    defs = {**full.pop("$defs", {}), model.__name__: full}
    return _Converter(defs).model(model.__name__)


def _resource_schema(
    model: type[BaseModel], spec: type[BaseModel], status: type[BaseModel], texts: tuple[str, str]
) -> Schema:
    return {
        "type": "object",
        "description": " ".join((model.__doc__ or "").split()),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"{GROUP}/{VERSION}"},
            "kind": {"type": "string", "description": model.__name__},
            "metadata": {"type": "object"},
            "spec": {**model_schema(spec), "description": texts[0]},
            "status": {**model_schema(status), "description": texts[1]},
        },
    }


def module_schema() -> Schema:
    """The CRD's openAPIV3Schema for Module. The status is parsed leniently by Module (a bad
    status must never make a Module unreadable), but the API server checks ModuleStatus."""
    return _resource_schema(
        Module, ModuleSpec, ModuleStatus, (_SPEC_DESCRIPTION, _STATUS_DESCRIPTION)
    )


def _crd(kind: str, plural: str, scope: str, columns: list[Schema], schema: Schema) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {APPROVAL_ANNOTATION: APPROVAL},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def module_crd() -> Schema:
    """The Module CustomResourceDefinition object."""
    return _crd(KIND, PLURAL, "Namespaced", _PRINTER_COLUMNS, module_schema())


def preflight_crd() -> Schema:
    """The PreflightValidation CustomResourceDefinition object (cluster-scoped)."""
    texts = (
        "The kernels to check and whether to build missing images now.",
        "One verdict per (Module, kernel), and the Complete condition.",
    )
    schema = _resource_schema(PreflightValidation, PreflightSpec, PreflightStatus, texts)
    return _crd(PREFLIGHT_KIND, PREFLIGHT_PLURAL, "Cluster", _PREFLIGHT_PRINTER_COLUMNS, schema)


def render_crd_yaml(crd: Schema | None = None) -> str:
    """One CRD as YAML (default: Module's)."""
    header = "# Generated by `ooto crds` from ooto/domain/api/. Do not edit.\n"
    # A JSON round trip drops shared references, so YAML has no anchors or aliases.
    plain = json.loads(json.dumps(crd if crd is not None else module_crd()))
    return header + yaml.safe_dump(plain, sort_keys=True, width=100)


def all_crds() -> dict[str, Schema]:
    """File name -> CRD, for every resource ooto defines."""
    return {CRD_FILENAME: module_crd(), PREFLIGHT_CRD_FILENAME: preflight_crd()}


def write_crds(output_dir: str | Path) -> list[Path]:
    """Write every CRD's YAML into `output_dir` (created if missing); returns the files written."""
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, crd in all_crds().items():
        path = directory / filename
        path.write_text(render_crd_yaml(crd), encoding="utf-8")
        written.append(path)
    return written
