"""The Module models read what admins write: the design example as written, and clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ooto.domain.api.module import Module, UpgradeMode
from ooto.render_cli import field_path

EXAMPLE = """
apiVersion: ooto.sigs.k8s.io/v1alpha1
kind: Module
metadata: {name: module-sample}
spec:
  additionalVolumes: [{name: some-volume, configMap: {name: some-configmap}}]
  devicePlugin: {name: overwritten-anyway, image: some-image}
  moduleLoader:
    name: overwritten-anyway
    image: overwritten-anyway
    securityContext: {capabilities: {add: [SYS_MODULE]}}
  kernelMappings:
    - literal: 5.16.11-200.fc35.x86_64
      containerImage: quay.io/vendor/module-sample:fedora-5.16.11-200.fc35.x86_64
    - regexp: '^.*\\-gke$'
      build:
        buildArgs: [{name: SOME_KEY, value: SOME_VALUE}]
        dockerfile: |
          FROM some-image
      containerImage: quay.io/vendor/module-sample:gke
  selector:
    feature.node.kubernetes.io/cpu-cpuid.VMX: true
    count: 3
"""


def raw() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE)
    return body


def locations(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Module.model_validate(body)
    return [field_path(error["loc"]) for error in caught.value.errors()]


def test_the_design_example_is_read_as_written() -> None:
    module = Module.model_validate(raw())
    assert module.spec.selector == {
        "feature.node.kubernetes.io/cpu-cpuid.VMX": "true",
        "count": "3",
    }
    assert module.metadata.namespace == "default"
    assert module.spec.priority_class_name == "system-node-critical"
    assert module.spec.upgrade_policy.mode is UpgradeMode.AUTO
    build = module.spec.kernel_mappings[1].build
    assert build is not None and build.build_args[0].name == "SOME_KEY"


def test_both_literal_and_regexp_is_refused_at_its_path() -> None:
    body = raw()
    body["spec"]["kernelMappings"][0]["regexp"] = "x"
    assert locations(body) == ["spec.kernelMappings[0]"]


def test_neither_dockerfile_nor_git_is_refused() -> None:
    body = raw()
    del body["spec"]["kernelMappings"][1]["build"]["dockerfile"]
    assert locations(body) == ["spec.kernelMappings[1].build"]


def test_unknown_spec_fields_are_refused() -> None:
    body = raw()
    body["spec"]["kernelMappings"][0]["containerimage"] = "typo"
    assert locations(body) == ["spec.kernelMappings[0].containerimage"]


def test_a_module_round_trips_through_its_wire_form() -> None:
    module = Module.model_validate(raw())
    again = Module.model_validate(module.model_dump(by_alias=True, exclude_none=True))
    assert again == module
