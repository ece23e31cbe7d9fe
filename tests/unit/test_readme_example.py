"""The README's Module example is one ooto accepts and can load (the old one could not: it
loaded a module from the image's /lib/modules, which the node's own is mounted over)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ooto.domain.api.module import Module
from ooto.domain.kernels import plan_kernel
from ooto.domain.modprobe import unload_hook_missing
from ooto.domain.render import render_daemonsets
from ooto.domain.validation import ModulePolicy, validate_module

README = (Path(__file__).parents[2] / "README.md").read_text()


def example() -> Module:
    section = README.split("## A Module, step by step", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return Module.model_validate(yaml.safe_load(block.group(1)))


def test_the_readme_module_is_valid_and_loads_from_its_own_module_root() -> None:
    module = example()
    assert validate_module(module, ModulePolicy()) == []
    assert not unload_hook_missing(module)
    assert module.spec.modprobe is not None and module.spec.modprobe.dir_name not in ("/", "/usr")
    plan = plan_kernel(module, "6.1.0-18-amd64")
    assert plan is not None and plan.build is not None
    assert "depmod -b /opt" in (plan.build.dockerfile or "") or plan.build.git is not None
    command = render_daemonsets(module, plan)[0]["spec"]["template"]["spec"]["containers"][0]
    assert "modprobe -d /opt my_driver debug=1 ||" in command["command"][2]


def test_the_readme_dockerfile_installs_the_module_where_modprobe_d_looks() -> None:
    module = example()
    plan = plan_kernel(module, "7.0.0")
    assert plan is not None and plan.build is not None and plan.build.dockerfile is not None
    assert "/opt/lib/modules/${KERNEL_FULL_VERSION}" in plan.build.dockerfile
    assert "depmod -b /opt ${KERNEL_FULL_VERSION}" in plan.build.dockerfile
