"""Structural CRD schemas for the core/v1 shapes a Module embeds (Container, Volume, Toleration).

The upstream definitions come from the Kubernetes 1.20.2 OpenAPI (swagger.json), extracted once
into `k8s_core_v1_definitions.json` next to this file, so `ooto crds` works offline. Regenerate:

    python -m ooto.domain.api.k8s_schemas ~/.cache/ooto/kubernetes-1.20.2/openapi/swagger.json

Turning them into structural schemas (what apiextensions.k8s.io/v1 demands): every `$ref`
inlined, a `type` on every node, IntOrString and Quantity as `x-kubernetes-int-or-string`,
and the strategic-merge extensions (which CRDs do not know) dropped.

No subtree is free-form: a field the API server stores without a schema can be nested as deep as
a client likes (1,100 levels were stored), deeper than ooto's JSON decoder accepts. ObjectMeta,
the only open-ended definition reached (a volume claim template's metadata), becomes what the
API server accepts there anyway: labels and annotations.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

DEFINITIONS_FILE = Path(__file__).with_name("k8s_core_v1_definitions.json")
ROOTS = (
    "io.k8s.api.core.v1.Container",
    "io.k8s.api.core.v1.Volume",
    "io.k8s.api.core.v1.Toleration",
)
_REF_PREFIX = "#/definitions/"
Schema = dict[str, Any]
_INT_OR_STRING = (
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
)


def _string_map(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


# Metadata nested in a volume claim template: "may contain labels and annotations ... no other
# fields are allowed" (core/v1 PersistentVolumeClaimTemplate); anything else is pruned.
_TEMPLATE_METADATA: Schema = {
    "type": "object",
    "description": "Labels and annotations copied into the PersistentVolumeClaim.",
    "properties": {
        "labels": _string_map("Labels of the PersistentVolumeClaim."),
        "annotations": _string_map("Annotations of the PersistentVolumeClaim."),
    },
}
_BOUNDED = {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": _TEMPLATE_METADATA}
_KEPT = ("description", "format", "enum", "required", "x-kubernetes-map-type")
# CRD formats the API server validates; others (int-or-string, ...) are dropped.
_FORMATS = frozenset({"int32", "int64", "float", "double", "byte", "date", "date-time"})
# A list-map key must be required or defaulted in a CRD; this is the upstream default.
_LIST_MAP_KEY_DEFAULTS = {("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP"}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(_REF_PREFIX)} if "$ref" in node else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def extract_definitions(swagger: Mapping[str, Any], roots: tuple[str, ...] = ROOTS) -> Schema:
    """The transitive closure of `roots` in a swagger document's definitions, sorted by name."""
    definitions = swagger["definitions"]
    todo, seen = list(roots), set[str]()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(definitions[name]))
    return {name: definitions[name] for name in sorted(seen)}


@cache
def load_definitions() -> Mapping[str, Schema]:
    loaded: Mapping[str, Schema] = json.loads(DEFINITIONS_FILE.read_text(encoding="utf-8"))
    return loaded


def structural_schema(name: str) -> Schema:
    """The structural schema of one definition (by its full name), every reference inlined."""
    return _convert_definition(name, load_definitions(), ())


def _convert_definition(
    name: str, definitions: Mapping[str, Schema], stack: tuple[str, ...]
) -> Schema:
    if name in stack:
        raise ValueError(f"recursive definition {name} cannot be inlined")
    if name in _INT_OR_STRING:
        return {"x-kubernetes-int-or-string": True}
    if name in _BOUNDED:
        return copy.deepcopy(_BOUNDED[name])
    return _convert(definitions[name], definitions, (*stack, name))


def _convert(node: Schema, definitions: Mapping[str, Schema], stack: tuple[str, ...]) -> Schema:
    if "$ref" in node:
        target = _convert_definition(node["$ref"].removeprefix(_REF_PREFIX), definitions, stack)
        return {**target, **_keywords(node)}
    out = {"type": node["type"], **_keywords(node)} if "type" in node else _keywords(node)
    if "properties" in node:
        out["properties"] = {
            key: _convert(value, definitions, stack) for key, value in node["properties"].items()
        }
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], definitions, stack)
    if "items" in node:
        out["items"] = _convert(node["items"], definitions, stack)
        out |= _list_type(node, out["items"], node["items"].get("$ref", ""))
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & set(out):
        raise ValueError(f"{stack[-1]}: an object without properties would be free-form")
    return out


def _keywords(node: Schema) -> Schema:
    kept = {key: node[key] for key in _KEPT if key in node}
    if kept.get("format") not in _FORMATS:
        kept.pop("format", None)
    return kept


def _list_type(node: Schema, items: Schema, item_ref: str) -> Schema:
    """List-type markers, kept only where the CRD rules hold (map keys required or defaulted)."""
    list_type = node.get("x-kubernetes-list-type")
    if list_type is None:
        return {}
    if list_type != "map":
        return {"x-kubernetes-list-type": list_type}
    keys = node.get("x-kubernetes-list-map-keys", [])
    required = set(items.get("required", []))
    for key in keys:
        default = _LIST_MAP_KEY_DEFAULTS.get((item_ref.removeprefix(_REF_PREFIX), key))
        if key in required:
            continue
        if default is None:
            return {}
        items["properties"][key]["default"] = default
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys}


def main(argv: list[str]) -> int:
    """Regenerate the committed definitions file from an upstream swagger.json."""
    if len(argv) != 1:
        print("usage: python -m ooto.domain.api.k8s_schemas SWAGGER_JSON", file=sys.stderr)
        return 2
    swagger = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    text = json.dumps(extract_definitions(swagger), indent=1, sort_keys=True) + "\n"
    DEFINITIONS_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {DEFINITIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
