"""`spec.modprobe` as a cluster admin writes it: what the schema refuses, what ooto calls an
InvalidSpec (naming the field), and what it renders into the module-loader DaemonSet."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ooto.domain.api.module import MODULE_PARAMETER_PATTERN, Modprobe, Module
from ooto.domain.kernels import plan_kernel
from ooto.domain.modprobe import (
    FIRMWARE_MOUNT,
    load_script,
    unload_hook_missing,
    unload_script,
)
from ooto.domain.render import RenderOptions, render_daemonsets
from ooto.domain.validation import ModulePolicy, validate_module

KERNEL = "6.1.0-18-amd64"


def module(modprobe: dict[str, Any] | None = None, **loader: Any) -> Module:
    spec: dict[str, Any] = {
        "moduleLoader": {"name": "x", "image": "x", **loader},
        "kernelMappings": [{"regexp": ".", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}],
    }
    if modprobe is not None:
        spec["modprobe"] = modprobe
    raw = {"metadata": {"name": "acme", "namespace": "drivers", "uid": "u-1"}, "spec": spec}
    return Module.model_validate(raw)


def errors(mod: Module) -> list[str]:
    return [str(error) for error in validate_module(mod, ModulePolicy())]


def loader_of(mod: Module, options: RenderOptions | None = None) -> tuple[dict[str, Any], Any]:
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None
    daemonset = render_daemonsets(mod, plan, options or RenderOptions())[0]
    pod = daemonset["spec"]["template"]["spec"]
    return pod["containers"][0], pod["volumes"]


class TestSchema:
    @pytest.mark.parametrize(
        "name", ["my driver", "a;reboot", "$(x)", "`id`", "a/b", "", "x" * 56, "naïve", "a\nb"]
    )
    def test_module_names_with_anything_but_safe_characters_are_refused(self, name: str) -> None:
        with pytest.raises(ValidationError):
            Modprobe(module_name=name)
        with pytest.raises(ValidationError):
            Modprobe(module_name="ok", in_tree_modules_to_remove=[name])

    @pytest.mark.parametrize(
        "parameter", ["a='x'", 'a="x"', "a=$(id)", "a=$$", "a=\nb", "=x", "a b=1", "a=é"]
    )
    def test_parameters_with_quotes_dollars_or_control_characters_are_refused(
        self, parameter: str
    ) -> None:
        with pytest.raises(ValidationError):
            Modprobe(module_name="ok", parameters=[parameter])

    @pytest.mark.parametrize("parameter", ["debug", "debug=1", "ids=1,2,3", "name=a b", "p=x;y"])
    def test_ordinary_parameters_are_accepted(self, parameter: str) -> None:
        assert Modprobe(module_name="ok", parameters=[parameter]).parameters == [parameter]

    @pytest.mark.parametrize("path", ["opt", "/opt dir", "/opt;x", "//x", "/a/$(x)"])
    def test_image_paths_must_be_plain_absolute_paths(self, path: str) -> None:
        with pytest.raises(ValidationError):
            Modprobe(module_name="ok", dir_name=path)
        with pytest.raises(ValidationError):
            Modprobe(module_name="ok", firmware_path=path)

    def test_defaults(self) -> None:
        spec = Modprobe(module_name="ok")
        assert (spec.dir_name, spec.parameters, spec.firmware_path) == ("/opt", [], None)


class TestInvalidSpec:
    @pytest.mark.parametrize(
        ("loader", "field"),
        [
            ({"command": ["sh"]}, "spec.moduleLoader.command"),
            ({"args": ["x"]}, "spec.moduleLoader.args"),
            ({"lifecycle": {"preStop": {"exec": {"command": ["x"]}}}}, "lifecycle.preStop"),
        ],
    )
    def test_a_command_args_or_prestop_beside_modprobe_names_both_fields(
        self, loader: dict[str, Any], field: str
    ) -> None:
        (message,) = errors(module({"moduleName": "m"}, **loader))
        assert field in message and "spec.modprobe" in message

    def test_a_poststart_hook_beside_modprobe_is_kept(self) -> None:
        mod = module({"moduleName": "m"}, lifecycle={"postStart": {"exec": {"command": ["t"]}}})
        assert errors(mod) == []
        container, _ = loader_of(mod)
        assert container["lifecycle"]["postStart"] == {"exec": {"command": ["t"]}}
        assert "preStop" in container["lifecycle"]

    @pytest.mark.parametrize("dir_name", ["/", "/usr", "/usr/"])
    def test_a_dir_name_whose_modules_the_node_mounts_over_is_refused(self, dir_name: str) -> None:
        (message,) = errors(module({"moduleName": "m", "dirName": dir_name}))
        assert message.startswith("spec.modprobe.dirName: ") and "/opt" in message

    @pytest.mark.parametrize(
        ("field", "value"),
        [("dirName", "/opt/../lib"), ("firmwarePath", "/fw/../x"), ("firmwarePath", "/")],
    )
    def test_paths_that_escape_or_take_everything_are_refused(self, field: str, value: str) -> None:
        (message,) = errors(module({"moduleName": "m", field: value}))
        assert message.startswith(f"spec.modprobe.{field}: ")

    @pytest.mark.parametrize("path", [FIRMWARE_MOUNT, "/var/lib/ooto", FIRMWARE_MOUNT + "/x"])
    def test_firmware_path_must_not_overlap_the_node_firmware_mount(self, path: str) -> None:
        (message,) = errors(module({"moduleName": "m", "firmwarePath": path}))
        assert message.startswith("spec.modprobe.firmwarePath: ")

    def test_loading_order_starts_with_module_name_and_lists_each_once(self) -> None:
        (first,) = errors(module({"moduleName": "m", "modulesLoadingOrder": ["dep", "m"]}))
        assert first.startswith("spec.modprobe.modulesLoadingOrder[0]: must be moduleName (m)")
        (twice,) = errors(module({"moduleName": "m", "modulesLoadingOrder": ["m", "d", "d"]}))
        assert twice.startswith("spec.modprobe.modulesLoadingOrder[2]: d is listed twice")
        dashes = module({"moduleName": "my-mod", "modulesLoadingOrder": ["my_mod", "x"]})
        assert errors(dashes) == [], "modprobe reads - and _ alike"

    def test_a_full_spec_is_valid(self) -> None:
        full = {
            "moduleName": "my_driver",
            "dirName": "/opt",
            "parameters": ["debug=1"],
            "modulesLoadingOrder": ["my_driver", "my_driver_core"],
            "inTreeModulesToRemove": ["nouveau"],
            "firmwarePath": "/firmware",
        }
        assert errors(module(full)) == []


class TestRender:
    def test_modprobe_writes_the_command_and_prestop(self) -> None:
        spec = {"moduleName": "m", "parameters": ["debug=1"]}
        container, volumes = loader_of(module(spec))
        modprobe = Modprobe.model_validate(spec)
        assert container["command"] == ["/bin/sh", "-c", load_script(modprobe)]
        prestop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert prestop == ["/bin/sh", "-c", unload_script(modprobe)]
        assert "modprobe -d /opt m debug=1 ||" in container["command"][2]
        assert [v["name"] for v in volumes] == ["ooto-lib-modules", "ooto-usr-lib-modules"]

    def test_the_firmware_directory_is_mounted_only_with_firmware_path(self) -> None:
        with_firmware = module({"moduleName": "m", "firmwarePath": "/firmware"})
        container, volumes = loader_of(with_firmware, RenderOptions(firmware_host_dir="/fw"))
        assert volumes[-1] == {
            "name": "ooto-firmware",
            "hostPath": {"path": "/fw", "type": "DirectoryOrCreate"},
        }
        mount = container["volumeMounts"][-1]
        assert mount == {"name": "ooto-firmware", "mountPath": FIRMWARE_MOUNT, "readOnly": False}
        default, _ = loader_of(with_firmware)
        assert default == container, "the host path is in the volume, not in the container"
        _, default_volumes = loader_of(with_firmware)
        assert default_volumes[-1]["hostPath"]["path"] == "/lib/firmware"

    def test_a_parameter_change_changes_the_daemonset_spec(self) -> None:
        def spec_hash(parameters: list[str]) -> str:
            plan = plan_kernel(mod := module({"moduleName": "m", "parameters": parameters}), KERNEL)
            assert plan is not None
            annotations = render_daemonsets(mod, plan)[0]["metadata"]["annotations"]
            return str(annotations["ooto.sigs.k8s.io/spec-hash"])

        assert spec_hash(["debug=1"]) != spec_hash(["debug=2"])
        assert spec_hash(["debug=1"]) == spec_hash(["debug=1"])

    def test_a_module_without_modprobe_renders_as_before(self) -> None:
        raw = yaml.safe_load(
            "{name: x, image: x, command: [sh, -c, 'modprobe m && sleep infinity']}"
        )
        container, _ = loader_of(module(None, **raw))
        assert container["command"] == raw["command"] and "lifecycle" not in container


@given(st.from_regex(MODULE_PARAMETER_PATTERN, fullmatch=True))
def test_no_script_holds_what_the_kubelet_would_expand(parameter: str) -> None:
    """The kubelet replaces `$(NAME)` and `$$` in a container's command before the shell runs."""
    spec = Modprobe(
        module_name="m",
        parameters=[parameter],
        modules_loading_order=["m", "d"],
        in_tree_modules_to_remove=["n"],
        firmware_path="/fw",
    )
    for script in (load_script(spec), unload_script(spec)):
        assert "$(" not in script and "$$" not in script


class TestNoUnloadHook:
    def test_neither_modprobe_nor_prestop_is_missing_an_unload_hook(self) -> None:
        assert unload_hook_missing(module(None, command=["sh", "-c", "modprobe m"]))

    def test_a_prestop_or_modprobe_is_enough(self) -> None:
        prestop = {"preStop": {"exec": {"command": ["modprobe", "-r", "m"]}}}
        assert not unload_hook_missing(module(None, lifecycle=prestop))
        assert not unload_hook_missing(module({"moduleName": "m"}))
        assert unload_hook_missing(module(None, lifecycle={"postStart": prestop["preStop"]}))
