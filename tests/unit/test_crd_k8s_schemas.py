"""Upstream core/v1 definitions turned into structural schemas, and the committed extract."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ooto.domain.api import k8s_schemas
from ooto.domain.api.k8s_schemas import (
    DEFINITIONS_FILE,
    ROOTS,
    _convert_definition,
    extract_definitions,
    structural_schema,
)

SWAGGER = Path.home() / ".cache/ooto/kubernetes-1.20.2/openapi/swagger.json"
REF = "#/definitions/"

FAKE: dict[str, Any] = {
    "definitions": {
        "a.Root": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": "Name."},
                "port": {"$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
                "meta": {"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "count": {"type": "integer", "format": "int32"},
                "kind": {"type": "string", "format": "int-or-string"},
                "items": {
                    "type": "array",
                    "items": {"$ref": REF + "a.Item"},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["key", "other"],
                    "x-kubernetes-patch-merge-key": "key",
                    "x-kubernetes-patch-strategy": "merge",
                },
            },
        },
        "a.Item": {
            "type": "object",
            "required": ["key"],
            "properties": {"key": {"type": "string"}, "other": {"type": "string"}},
        },
        "a.Loop": {"type": "object", "properties": {"self": {"$ref": REF + "a.Loop"}}},
        "a.Open": {"type": "object", "properties": {"any": {"type": "object"}}},
        "a.Unused": {"type": "string"},
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
            "type": "string",
            "format": "int-or-string",
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {}},
    }
}


def test_extract_takes_the_transitive_closure_only() -> None:
    assert list(extract_definitions(FAKE, ("a.Root",))) == [
        "a.Item",
        "a.Root",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    ]


def test_conversion_inlines_and_makes_it_structural() -> None:
    root = _convert_definition("a.Root", FAKE["definitions"], ())
    properties = root["properties"]
    assert root["type"] == "object" and root["required"] == ["name"]
    assert properties["name"] == {"type": "string", "description": "Name."}
    assert properties["port"] == {"x-kubernetes-int-or-string": True}
    # ObjectMeta in a claim template: only what the API server keeps there, nothing free-form.
    meta = properties["meta"]["properties"]
    assert sorted(meta) == ["annotations", "labels"]
    for field in meta.values():
        assert field["type"] == "object" and field["additionalProperties"] == {"type": "string"}
    assert properties["count"] == {"type": "integer", "format": "int32"}
    assert properties["kind"] == {"type": "string"}  # formats CRDs do not know are dropped
    items = properties["items"]
    assert (
        "x-kubernetes-patch-merge-key" not in items and "x-kubernetes-patch-strategy" not in items
    )
    # "other" is neither required nor has a known default: the list-map marker cannot stay.
    assert "x-kubernetes-list-type" not in items
    assert items["items"]["properties"]["key"] == {"type": "string"}


def test_an_object_without_properties_is_refused_rather_than_left_free_form() -> None:
    """A free-form subtree can be nested deeper than any JSON decoder accepts (issue 13)."""
    with pytest.raises(ValueError, match="free-form"):
        _convert_definition("a.Open", FAKE["definitions"], ())


def test_no_embedded_core_v1_schema_has_a_free_form_subtree() -> None:
    for root in ROOTS:
        assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(structural_schema(root))


def test_recursive_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="recursive"):
        _convert_definition("a.Loop", FAKE["definitions"], ())


def test_container_ports_keep_their_list_map_with_the_upstream_protocol_default() -> None:
    ports = structural_schema("io.k8s.api.core.v1.Container")["properties"]["ports"]
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    assert ports["items"]["properties"]["protocol"]["default"] == "TCP"


def test_the_committed_extract_holds_the_roots_and_only_their_closure() -> None:
    definitions = json.loads(DEFINITIONS_FILE.read_text())
    assert set(ROOTS) <= set(definitions)
    assert extract_definitions({"definitions": definitions}) == definitions


def test_the_committed_extract_matches_upstream_1_20_2() -> None:
    if not SWAGGER.exists():  # install-binaries.sh extracts it; CI (the flag below) must have it
        if os.environ.get("OOTO_REQUIRE_CLUSTER"):
            pytest.fail(f"OOTO_REQUIRE_CLUSTER is set but {SWAGGER} is missing")
        pytest.skip("upstream swagger.json not extracted (ooto cluster install)")
    swagger = json.loads(SWAGGER.read_text())
    assert extract_definitions(swagger) == json.loads(DEFINITIONS_FILE.read_text())


def test_regeneration_writes_the_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    swagger = tmp_path / "swagger.json"
    swagger.write_text(json.dumps({"definitions": json.loads(DEFINITIONS_FILE.read_text())}))
    target = tmp_path / "out.json"
    monkeypatch.setattr(k8s_schemas, "DEFINITIONS_FILE", target)
    assert k8s_schemas.main([str(swagger)]) == 0
    assert target.read_text() == DEFINITIONS_FILE.read_text()
    assert k8s_schemas.main([]) == 2
