"""Hostile input to the pure parts, without a cluster: catastrophic regexps and huge kernel strings
are decided in bounded time; any kernel string gets a valid, distinct label value and bounded
names; the module-loader policy refuses privilege unless allowed; malformed registry Secrets are
reported without quoting their content.

The integration counterparts (through the API server and the operator) are in
tests/integration/test_reliability_*.py.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ooto.domain.api import Module
from ooto.domain.kernels import (
    MAX_KERNEL_LENGTH,
    daemonset_name,
    find_mapping,
    kernel_label_value,
    plan_kernel,
)
from ooto.domain.validation import ModulePolicy, validate_module
from ooto.registry import RegistryAuthError, auth_from_secret

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CATASTROPHIC = ["(a+)+$", "^(a|a)*!$", "(a|aa)+$", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){20}"]


def module(*mappings: dict[str, Any], loader: dict[str, Any] | None = None) -> Module:
    return Module.model_validate(
        {
            "metadata": {"name": "mod", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "moduleLoader": loader or {"name": "x", "image": "y"},
                "kernelMappings": list(mappings),
            },
        }
    )


# A backtracking engine would need ~2**255 steps on these inputs: the test timeout is the bound
# (no wall-clock assertion, these machines are shared).
@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_regexps_run_in_linear_time(pattern: str) -> None:
    mod = module({"regexp": pattern, "containerImage": "r.example/m:v1"})
    assert validate_module(mod, ModulePolicy()) == []
    for kernel in ("a" * (MAX_KERNEL_LENGTH - 1) + "!", "ab" * 100 + "!", "a" * 30 + "X"):
        find_mapping(mod, kernel)


@pytest.mark.timeout(60)
def test_a_huge_kernel_string_is_decided_and_named_in_bounded_time() -> None:
    mod = module(
        {"regexp": "(a+)+$", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"},
        {"regexp": "^.+$", "containerImage": "r.example/m:any"},
    )
    huge = "a" * 1_000_000 + "!"
    assert find_mapping(mod, huge) is None  # longer than MAX_KERNEL_LENGTH: never matches
    assert plan_kernel(mod, huge) is None
    label = kernel_label_value(huge)
    name = daemonset_name("m" * 300, "module-loader", huge)
    assert LABEL_VALUE.match(label) and len(label) <= 63
    assert len(name) <= 63


def test_kernels_that_sanitize_alike_keep_distinct_labels_and_names() -> None:
    long = "5.14.0-" + "x" * 60
    kernels = [
        "6.1.0+x",
        "6.1.0_x",
        "6.1.0-x",
        "6.1.0 x",
        "6.1.0/x",
        "_6.1.0_x_",
        long + "-a",
        long + "-b",
        long,
        "6.1.0-x" + "\u00e9",
        "",
        " ",
    ]
    labels = [kernel_label_value(k) for k in kernels]
    assert all(LABEL_VALUE.match(label) and len(label) <= 63 for label in labels)
    assert len(set(labels)) == len(kernels)
    names = {daemonset_name("module", "module-loader", k) for k in kernels}
    assert len(names) == len(kernels)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_kernel_string_gets_a_valid_label_and_distinct_kernels_distinct_labels(
    one: str, other: str
) -> None:
    for kernel in (one, other):
        label = kernel_label_value(kernel)
        assert LABEL_VALUE.match(label) and len(label) <= 63, (kernel, label)
    if one != other:
        assert kernel_label_value(one) != kernel_label_value(other)


@pytest.mark.parametrize(
    "security",
    [
        {"privileged": True},
        {"capabilities": {"add": ["SYS_ADMIN"]}},
        {"capabilities": {"add": ["SYS_MODULE", "CAP_NET_ADMIN"]}},
        {"capabilities": {"add": ["all"]}},
    ],
)
def test_a_module_loader_asking_for_more_than_sys_module_is_refused_unless_allowed(
    security: dict[str, Any],
) -> None:
    mod = module(
        {"literal": "k", "containerImage": "r.example/m:v1"},
        loader={"name": "x", "image": "y", "securityContext": security},
    )
    errors = validate_module(mod, ModulePolicy(allow_privileged_module_loader=False))
    assert errors and all("allowPrivilegedModuleLoader" in e.message for e in errors)
    assert all(e.path.startswith("spec.moduleLoader.securityContext.") for e in errors)
    assert validate_module(mod, ModulePolicy(allow_privileged_module_loader=True)) == []


@pytest.mark.parametrize(
    "security",
    [
        {},
        {"capabilities": {"add": ["SYS_MODULE"]}},
        {"capabilities": {"add": ["CAP_SYS_MODULE"], "drop": ["ALL"]}},
        {"privileged": False, "readOnlyRootFilesystem": True},
    ],
)
def test_a_module_loader_with_sys_module_only_is_accepted(security: dict[str, Any]) -> None:
    mod = module(
        {"literal": "k", "containerImage": "r.example/m:v1"},
        loader={"name": "x", "image": "y", "securityContext": security},
    )
    assert validate_module(mod, ModulePolicy()) == []


MARKER = "s3cr3t-Marker-0xDEADBEEF"


def secret_with(data: bytes) -> dict[str, Any]:
    return {"data": {".dockerconfigjson": base64.b64encode(data).decode()}}


@pytest.mark.parametrize(
    "content",
    [
        f"not json {MARKER}".encode(),
        json.dumps([MARKER]).encode(),
        json.dumps({"auths": MARKER}).encode(),
        json.dumps({"auths": {"r.example": MARKER}}).encode(),
        json.dumps({"auths": {"r.example": {"auth": MARKER}}}).encode(),
        json.dumps(
            {"auths": {"r.example": {"auth": base64.b64encode(MARKER.encode()).decode()}}}
        ).encode(),
        b"\xff\xfe" + MARKER.encode(),
    ],
)
def test_a_malformed_registry_secret_is_reported_without_quoting_it(content: bytes) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        auth_from_secret(secret_with(content))
    text = f"{caught.value} {caught.value!r} {caught.value.__cause__!r}"
    assert MARKER not in text
    assert base64.b64encode(MARKER.encode()).decode() not in text


def test_a_secret_with_data_that_is_not_base64_is_reported_without_quoting_it() -> None:
    with pytest.raises(RegistryAuthError) as caught:
        auth_from_secret({"data": {".dockerconfigjson": f"!!{MARKER}!!"}})
    assert MARKER not in f"{caught.value} {caught.value!r}"


def test_credentials_never_show_in_their_repr() -> None:
    config = {"auths": {"r.example": {"username": "u", "password": MARKER}}}
    auth = auth_from_secret(secret_with(json.dumps(config).encode()))
    assert MARKER not in repr(auth) and MARKER not in str(auth)
