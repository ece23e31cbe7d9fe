"""The generated CRD: committed output is fresh, the schema is structural and says what we mean."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from ooto.domain.api.crd import (
    APPROVAL,
    CRD_FILENAME,
    PREFLIGHT_CRD_FILENAME,
    all_crds,
    module_crd,
    preflight_crd,
    render_crd_yaml,
    write_crds,
)

REPO = Path(__file__).parents[2]
COMMITTED = REPO / "crds" / CRD_FILENAME

# The design notes' example (issue 2); its selector value is quoted, as the schema requires.
EXAMPLE = (Path(__file__).parents[2] / "examples" / "module-sample.yaml").read_text()


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return module_crd()


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def example() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE)
    return body


def errors(schema: dict[str, Any], body: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]


def test_committed_crds_are_fresh() -> None:
    for filename, definition in all_crds().items():
        committed = (REPO / "crds" / filename).read_text()
        assert committed == render_crd_yaml(definition), f"crds/{filename} is stale: `ooto crds`"


def test_write_crds_writes_every_file(tmp_path: Path) -> None:
    paths = write_crds(tmp_path / "out")
    assert paths == [tmp_path / "out" / CRD_FILENAME, tmp_path / "out" / PREFLIGHT_CRD_FILENAME]
    assert yaml.safe_load(paths[0].read_text()) == yaml.safe_load(render_crd_yaml())
    assert yaml.safe_load(paths[1].read_text()) == yaml.safe_load(render_crd_yaml(preflight_crd()))


class TestPreflightDefinition:
    def test_cluster_scoped_with_status_and_progress_columns(self) -> None:
        crd = preflight_crd()
        assert crd["metadata"]["name"] == "preflightvalidations.ooto.sigs.k8s.io"
        assert crd["metadata"]["annotations"] == {"api-approved.kubernetes.io": APPROVAL}
        assert crd["spec"]["scope"] == "Cluster"
        (version,) = crd["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert columns == ["Complete", "Ready", "Decided", "Total", "Reason", "Age"]

    def test_spec_schema_bounds_what_a_user_can_ask(self) -> None:
        schema = preflight_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        spec = schema["properties"]["spec"]
        assert spec["required"] == ["kernelVersions"]
        kernels = spec["properties"]["kernelVersions"]
        assert (kernels["minItems"], kernels["maxItems"]) == (1, 64)
        assert kernels["items"]["minLength"] == 1
        assert "pattern" in spec["properties"]["modules"]["items"]
        assert spec["properties"]["pushBuiltImages"]["default"] is False
        entry = schema["properties"]["status"]["properties"]["modules"]["items"]
        assert "BuildFailed" in entry["properties"]["verdict"]["enum"]


def test_output_is_deterministic() -> None:
    assert render_crd_yaml() == render_crd_yaml()


class TestDefinition:
    def test_group_names_scope_and_approval(self, crd: dict[str, Any]) -> None:
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"] == {
            "name": "modules.ooto.sigs.k8s.io",
            "annotations": {"api-approved.kubernetes.io": APPROVAL},
        }
        assert APPROVAL == "unapproved, experimental-only"
        spec = crd["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
            "ooto.sigs.k8s.io",
            "Namespaced",
            "Module",
        )

    def test_one_served_storage_version_with_status_subresource(self, crd: dict[str, Any]) -> None:
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}

    def test_printer_columns(self, crd: dict[str, Any]) -> None:
        columns = {
            c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        }
        assert columns == {
            "Ready": '.status.conditions[?(@.type=="Ready")].status',
            "Kernels": ".status.kernelCount",
            "Nodes Ready": ".status.nodesReady",
            "Desired": ".status.nodesDesired",
            "Up-to-date": ".status.upgrade.nodesUpToDate",
            "Age": ".metadata.creationTimestamp",
            "Ready Label": ".status.readyLabel",
        }
        wide = [
            c["name"]
            for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
            if c.get("priority", 0) > 0
        ]
        assert wide == ["Ready Label"]  # only with -o wide: a label key is long


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, through properties, items and additionalProperties."""
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


class TestStructural:
    """The rules apiextensions.k8s.io/v1 enforces on a structural schema."""

    def test_every_node_has_a_type_or_an_allowed_exception(self, schema: dict[str, Any]) -> None:
        for path, node in nodes(schema):
            exempt = node.get("x-kubernetes-int-or-string") or node.get(
                "x-kubernetes-preserve-unknown-fields"
            )
            assert "type" in node or exempt, path

    def test_no_refs_titles_or_closed_objects(self, schema: dict[str, Any]) -> None:
        for path, node in nodes(schema):
            assert not {"$ref", "$defs", "title", "anyOf", "allOf", "const"} & set(node), path
            assert node.get("additionalProperties") is not False, path
            assert "default" not in node or node["default"] not in (None, ""), path

    def test_junctors_hold_only_required(self, schema: dict[str, Any]) -> None:
        for path, node in nodes(schema):
            for branch in node.get("oneOf", []):
                assert set(branch) == {"required"}, path
                for field in branch["required"]:
                    assert field in node["properties"], path

    def test_list_map_keys_are_required_or_defaulted(self, schema: dict[str, Any]) -> None:
        for path, node in nodes(schema):
            if node.get("x-kubernetes-list-type") == "map":
                items = node["items"]
                for key in node["x-kubernetes-list-map-keys"]:
                    assert (
                        key in items.get("required", []) or "default" in items["properties"][key]
                    ), path

    def test_every_field_of_our_models_has_a_description(self, schema: dict[str, Any]) -> None:
        for path, node in nodes(schema):
            if path.startswith((".metadata", ".apiVersion", ".kind")):
                continue
            assert node.get("description") or path.endswith("{}") or path.endswith("[]"), path


def spec_node(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema["properties"]["spec"]
    for key in path:
        node = node["items"] if key == "[]" else node["properties"][key]
    result: dict[str, Any] = node
    return result


class TestMeaning:
    def test_exactly_one_matcher_and_one_build_source(self, schema: dict[str, Any]) -> None:
        mapping = spec_node(schema, "kernelMappings", "[]")
        assert mapping["oneOf"] == [{"required": ["literal"]}, {"required": ["regexp"]}]
        assert mapping["required"] == ["containerImage"]
        build = spec_node(schema, "kernelMappings", "[]", "build")
        assert build["oneOf"] == [{"required": ["dockerfile"]}, {"required": ["git"]}]

    def test_real_core_v1_schemas_are_inlined(self, schema: dict[str, Any]) -> None:
        loader = spec_node(schema, "moduleLoader")
        capabilities = loader["properties"]["securityContext"]["properties"]["capabilities"]
        assert capabilities["properties"]["add"]["items"]["type"] == "string"
        assert "required" not in loader  # ooto sets the module loader's name
        assert spec_node(schema, "devicePlugin")["required"] == ["name"]
        volume = spec_node(schema, "additionalVolumes", "[]")
        assert "configMap" in volume["properties"] and volume["required"] == ["name"]
        assert "tolerationSeconds" in spec_node(schema, "tolerations", "[]")["properties"]

    def test_int_or_string_and_quantities(self, schema: dict[str, Any]) -> None:
        parallel = spec_node(schema, "upgradePolicy", "maxParallel")
        assert parallel["x-kubernetes-int-or-string"] is True and parallel["default"] == 1
        limits = spec_node(schema, "moduleLoader", "resources", "limits")
        assert limits["additionalProperties"] == {"x-kubernetes-int-or-string": True}
        port = spec_node(schema, "moduleLoader", "ports", "[]", "containerPort")
        assert port["type"] == "integer"

    def test_no_subtree_is_free_form(self, schema: dict[str, Any]) -> None:
        """Issue 13: untyped subtrees let a Module nest deeper than any decoder accepts."""
        for path, node in nodes(schema):
            assert not node.get("x-kubernetes-preserve-unknown-fields"), path
        selector = spec_node(schema, "selector")
        assert selector["additionalProperties"] == {"x-kubernetes-int-or-string": True}

    def test_enums_and_defaults(self, schema: dict[str, Any]) -> None:
        mode = spec_node(schema, "upgradePolicy", "mode")
        assert mode["enum"] == ["Auto", "Manual"]
        assert mode["default"] == "Auto"
        assert spec_node(schema, "upgradePolicy", "readyTimeoutSeconds")["minimum"] == 1
        assert spec_node(schema, "priorityClassName")["default"] == "system-node-critical"
        assert spec_node(schema, "kernelMappings")["minItems"] == 1


class TestValidation:
    """The schema, checked with jsonschema, accepts and rejects what the API server would."""

    def test_the_design_example_validates(self, schema: dict[str, Any]) -> None:
        assert errors(schema, example()) == []

    @pytest.mark.parametrize(
        ("mutate", "expected"),
        [
            (
                lambda b: b["spec"]["moduleLoader"]["securityContext"]["capabilities"].update(
                    add="SYS_MODULE"
                ),
                "spec.moduleLoader.securityContext.capabilities.add: "
                "'SYS_MODULE' is not of type 'array'",
            ),
            (
                lambda b: b["spec"]["kernelMappings"][0].update(regexp="^5"),
                "spec.kernelMappings.0: ",
            ),
            (lambda b: b["spec"]["kernelMappings"][1].pop("literal"), "spec.kernelMappings.1: "),
            (
                lambda b: b["spec"]["kernelMappings"][2]["build"].update(git={"url": "u"}),
                "spec.kernelMappings.2.build: ",
            ),
            (
                lambda b: b["spec"]["kernelMappings"][0].pop("containerImage"),
                "'containerImage' is a required",
            ),
            (
                lambda b: b["spec"].update(kernelMappings=[]),
                "spec.kernelMappings: [] should be non-empty",
            ),
            (lambda b: b["spec"].pop("moduleLoader"), "'moduleLoader' is a required property"),
            (lambda b: b["spec"]["devicePlugin"].pop("name"), "'name' is a required property"),
            (
                lambda b: b["spec"]["additionalVolumes"][0].pop("name"),
                "'name' is a required property",
            ),
        ],
    )
    def test_wrong_shapes_are_rejected(
        self, schema: dict[str, Any], mutate: Any, expected: str
    ) -> None:
        body = copy.deepcopy(example())
        mutate(body)
        found = errors(schema, body)
        assert any(expected in error for error in found), found

    def test_the_module_loader_name_may_be_left_out(self, schema: dict[str, Any]) -> None:
        body = example()
        del body["spec"]["moduleLoader"]["name"]
        assert errors(schema, body) == []
