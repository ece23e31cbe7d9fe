"""One validation for `ooto render`, the admission webhook and the operator: every problem a Module
can have without a kernel, each reported with its field path, under the operator's policy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ooto.domain.api.module import Module
from ooto.domain.validation import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_STRING,
    FieldError,
    ModulePolicy,
    summary,
    validate_module,
)

SAFE = ModulePolicy()
IMAGE = "q.io/m:${KERNEL_FULL_VERSION}"


def raw(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "mod", "namespace": "ns"},
        "spec": {
            "moduleLoader": {"name": "loader", "image": "ignored"},
            "kernelMappings": [{"regexp": "^5", "containerImage": IMAGE}],
        },
    }
    base["spec"].update(spec)
    return base


def paths(module: dict[str, Any], policy: ModulePolicy = SAFE) -> list[str]:
    """The field paths found, both from the raw object and from the parsed Module: same answer."""
    from_raw = validate_module(module, policy)
    try:
        parsed = Module.model_validate(module)
    except ValueError:
        return [error.path for error in from_raw]
    assert validate_module(parsed, policy) == from_raw
    return [error.path for error in from_raw]


def mapping(**fields: Any) -> dict[str, Any]:
    return {"containerImage": IMAGE, **fields}


def test_a_valid_module_has_no_errors() -> None:
    build = {
        "dockerfile": "FROM x\nARG UNKNOWN\nRUN echo ${UNKNOWN} ${",  # never a template
        "buildArgs": [{"name": "A", "value": "${KERNEL_X}-${flavor}"}],
    }
    module = raw(
        kernelMappings=[
            mapping(literal="5.4"),
            mapping(regexp=r"(?P<flavor>gke)", containerImage="q.io/m:${flavor}", build=build),
        ],
        tolerations=[
            {"key": "a.example.com/b", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"operator": "Exists"},
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        additionalVolumes=[{"name": "c", "configMap": {"name": "cm"}}],
        serviceAccountName="default",
    )
    assert paths(module) == []


class TestKernelMappings:
    def test_every_problem_is_reported_with_its_field(self) -> None:
        git = {"url": "https://example.com/r.git", "ref": "${"}
        module = raw(
            kernelMappings=[
                mapping(regexp="("),
                mapping(literal="5.4", containerImage="q.io/m:${flavor}"),
                mapping(regexp="x", build={"git": git}),
                mapping(regexp="(?P<KERNEL_X>1)"),
            ]
        )
        assert paths(module) == [
            "spec.kernelMappings[0].regexp",
            "spec.kernelMappings[1].containerImage",
            "spec.kernelMappings[2].build.git.ref",
            "spec.kernelMappings[3].regexp",
        ]

    @pytest.mark.parametrize(
        "fields",
        [{"literal": "5.4", "regexp": "^5"}, {}],
        ids=["both", "neither"],
    )
    def test_literal_and_regexp_both_or_neither(self, fields: dict[str, Any]) -> None:
        errors = validate_module(raw(kernelMappings=[mapping(**fields)]), SAFE)
        assert [(e.path, e.message) for e in errors] == [
            ("spec.kernelMappings[0]", "Value error, exactly one of literal or regexp must be set")
        ]

    @pytest.mark.parametrize(
        "image",
        [
            "q.io/vendor/mod",  # no tag, no digest, whatever the kernel
            "Q.io/Vendor/Mod:${KERNEL_FULL_VERSION}",  # uppercase repository
            "q.io/m:${KERNEL_X} x",
            "q.io/m:-${KERNEL_X}",  # a tag cannot start with "-"
            "q.io/${MOD_NAMESPACE}_:v1",  # the namespace is known: "ns_" ends badly
        ],
    )
    def test_an_image_no_kernel_can_make_valid_is_refused(self, image: str) -> None:
        errors = validate_module(
            raw(kernelMappings=[mapping(regexp=".", containerImage=image)]), SAFE
        )
        assert [e.path for e in errors] == ["spec.kernelMappings[0].containerImage"]
        assert "no kernel can make this a valid image" in errors[0].message

    @pytest.mark.parametrize(
        "image",
        [
            "q.io:5000/m:${KERNEL_FULL_VERSION}",
            "q.io/m/${MOD_NAME}:${KERNEL_XYZ}",
            "q.io/m-${flavor}:v1",  # a group in the repository: valid for some kernels
            "q.io/m@sha256:" + "a" * 64,
            "q.io/m@sha256:${digest}",  # only a kernel's values can tell
        ],
    )
    def test_an_image_some_kernel_can_make_valid_is_accepted(self, image: str) -> None:
        pattern = "(?P<flavor>[a-z]+)(?P<digest>x*)"
        module = raw(kernelMappings=[mapping(regexp=pattern, containerImage=image)])
        assert paths(module) == []


class TestModuleLoaderPrivileges:
    @pytest.mark.parametrize(
        ("security", "where"),
        [
            ({"privileged": True}, "privileged"),
            ({"capabilities": {"add": ["SYS_MODULE", "SYS_ADMIN"]}}, "capabilities.add"),
        ],
    )
    def test_refused_unless_the_operator_allows_it(
        self, security: dict[str, Any], where: str
    ) -> None:
        module = raw(moduleLoader={"image": "x", "securityContext": security})
        assert paths(module) == [f"spec.moduleLoader.securityContext.{where}"]
        assert paths(module, ModulePolicy(allow_privileged_module_loader=True)) == []


class TestHostPathVolumes:
    def test_refused_by_default_accepted_when_allowed(self) -> None:
        module = raw(
            additionalVolumes=[
                {"name": "ok", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": "/etc"}},
            ]
        )
        errors = validate_module(module, SAFE)
        assert [e.path for e in errors] == ["spec.additionalVolumes[1].hostPath"]
        assert "allowHostPathVolumes" in errors[0].message
        assert paths(module, ModulePolicy(allow_host_path_volumes=True)) == []


class TestServiceAccounts:
    @pytest.mark.parametrize("name", [None, "default"])
    def test_the_namespace_default_is_always_allowed(self, name: str | None) -> None:
        assert paths(raw(serviceAccountName=name)) == []

    def test_any_other_account_is_refused_by_default(self) -> None:
        errors = validate_module(raw(serviceAccountName="cluster-admin-ish"), SAFE)
        assert [e.path for e in errors] == ["spec.serviceAccountName"]
        assert "allowedServiceAccounts" in errors[0].message

    @pytest.mark.parametrize(
        ("allowed", "ok"),
        [
            ({"loader"}, True),
            ({"ns/loader"}, True),
            ({"other-ns/loader"}, False),
            ({"*"}, True),
            ({"builder"}, False),
        ],
    )
    def test_listed_accounts_are_allowed(self, allowed: set[str], ok: bool) -> None:
        policy = ModulePolicy(allowed_service_accounts=frozenset(allowed))
        expected = [] if ok else ["spec.serviceAccountName"]
        assert paths(raw(serviceAccountName="loader"), policy) == expected


class TestTolerations:
    @pytest.mark.parametrize(
        ("toleration", "field"),
        [
            ({"key": "k", "operator": "Sometimes"}, "operator"),
            ({"key": "k", "effect": "NoRun"}, "effect"),
            ({"key": "k", "operator": "Exists", "value": "v"}, "value"),
            ({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}, "tolerationSeconds"),
            ({"key": "k", "tolerationSeconds": 5}, "tolerationSeconds"),
            ({"operator": "Equal", "value": "v"}, "operator"),  # empty key needs Exists
            ({"key": "not a key"}, "key"),
            ({"key": "UPPER.example.com/k"}, "key"),
            ({"key": "k", "value": "not a label value!"}, "value"),
        ],
    )
    def test_kmm_webhook_rules(self, toleration: dict[str, Any], field: str) -> None:
        module = raw(tolerations=[{"operator": "Exists"}, toleration])
        assert paths(module) == [f"spec.tolerations[1].{field}"]


class TestSizeAndNesting:
    def test_a_raw_object_nested_1100_levels_is_refused_without_recursion(self) -> None:
        deep: Any = "x"
        for _ in range(1100):  # built bottom-up: no recursion here either
            deep = {"a": deep}
        module = raw(moduleLoader={"image": "x", "env": [{"name": "A", "valueFrom": deep}]})
        errors = validate_module(module, SAFE)
        assert len(errors) == 1 and f"nested deeper than {MAX_DEPTH}" in errors[0].message
        assert errors[0].path.startswith("spec.moduleLoader.env[0].valueFrom.a.a")

    def test_a_parsed_module_with_deep_free_form_fields_is_refused_too(self) -> None:
        deep: Any = "x"
        for _ in range(MAX_DEPTH):
            deep = [deep]
        module = Module.model_validate(raw(additionalVolumes=[{"name": "v", "x": deep}]))
        errors = validate_module(module, SAFE)
        assert [e.path for e in errors] == ["spec.additionalVolumes[0].x" + "[0]" * (MAX_DEPTH - 3)]

    def test_the_deepest_real_field_is_far_within_bounds(self) -> None:
        values = {"key": "k", "operator": "In", "values": ["a"]}
        claim = {"spec": {"selector": {"matchExpressions": [values]}}}
        volume = {"name": "v", "ephemeral": {"volumeClaimTemplate": claim}}
        assert paths(raw(additionalVolumes=[volume])) == []

    def test_long_lists_and_strings_are_refused(self) -> None:
        module = raw(
            tolerations=[{"operator": "Exists"}] * (MAX_ITEMS + 1),
            moduleLoader={"image": "x", "command": ["a" * (MAX_STRING + 1)]},
        )
        assert sorted(paths(module)) == ["spec.moduleLoader.command[0]", "spec.tolerations"]

    def test_sizes_are_checked_before_parsing(self) -> None:
        module = raw(kernelMappings="not a list", tolerations=[{}] * (MAX_ITEMS + 1))
        assert [e.path for e in validate_module(module, SAFE)] == ["spec.tolerations"]


def test_schema_errors_of_a_raw_object_name_their_field() -> None:
    module = copy.deepcopy(raw())
    module["spec"]["kernelMappings"][0]["containerImage"] = 3
    assert validate_module(module, SAFE) == [
        FieldError("spec.kernelMappings[0].containerImage", "Input should be a valid string")
    ]


def test_summary_quotes_the_first_twenty_and_counts_the_rest() -> None:
    errors = [FieldError(f"spec.tolerations[{i}]", "bad") for i in range(25)]
    text = summary(errors)
    assert text.startswith("spec.tolerations[0]: bad; spec.tolerations[1]: bad")
    assert "spec.tolerations[19]: bad; and 5 more" in text and "[20]" not in text


LOADER = "spec.moduleLoader.securityContext"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"moduleLoader": {"image": "x", "securityContext": "privileged"}}, [LOADER]),
        (
            {"moduleLoader": {"image": "x", "securityContext": {"capabilities": "ALL"}}},
            [f"{LOADER}.capabilities"],
        ),
        (
            {"moduleLoader": {"image": "x", "securityContext": {"capabilities": {"add": "ALL"}}}},
            [f"{LOADER}.capabilities.add"],
        ),
        ({"tolerations": ["Exists"]}, ["spec.tolerations[0]"]),
        ({"additionalVolumes": [["hostPath"]]}, ["spec.additionalVolumes[0]"]),
    ],
)
def test_free_form_fields_of_the_wrong_shape_are_judged_not_crashed_on(
    spec: dict[str, Any], expected: list[str]
) -> None:
    """`ooto render` reads files the API server's schema never saw."""
    assert [e.path for e in validate_module(raw(**spec), SAFE)] == expected
