"""`spec.modprobe` and NoUnloadHook with the operator against the local control plane.

Scenarios: a Module with modprobe gets a module-loader DaemonSet running ooto's load command and
preStop hook, with the node's firmware directory mounted; changing a parameter rewrites the
DaemonSet (a new spec and a new load digest); a command beside modprobe is an InvalidSpec naming
both fields; a Module whose loader has no preStop hook gets the NoUnloadHook warning condition
and Event, and stays Ready.
"""

from __future__ import annotations

from typing import Any

from ooto.domain.api.module import Modprobe, Module
from ooto.domain.digest import load_digest
from ooto.domain.kernels import plan_kernel
from ooto.domain.modprobe import loader_command, prestop_command
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    events,
    eventually,
    get_module,
    literal,
    module_manifest,
    patch_module,
    ready_module,
)

KERNEL = "6.1.0-18-amd64"
GPU = {"ooto-test/gpu": "true"}
MODPROBE = {
    "moduleName": "acme",
    "parameters": ["debug=1"],
    "modulesLoadingOrder": ["acme", "acme_core"],
    "inTreeModulesToRemove": ["nouveau"],
    "firmwarePath": "/firmware",
}


def modprobe_module(modprobe: dict[str, Any]) -> dict[str, Any]:
    manifest = module_manifest("acme", [literal(KERNEL, "r.example/acme:6.1")], modprobe=modprobe)
    manifest["spec"]["moduleLoader"] = {"name": "loader", "image": "ignored"}
    return manifest


def loader(ds: dict[str, Any]) -> dict[str, Any]:
    return dict(ds["spec"]["template"]["spec"]["containers"][0])


def digest_of(stored: dict[str, Any]) -> str:
    module = Module.model_validate(stored)
    plan = plan_kernel(module, KERNEL)
    assert plan is not None
    return load_digest(module, plan)


async def test_modprobe_renders_the_loader_and_a_parameter_change_rolls_a_new_spec(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("mp-a", KERNEL, GPU)])
    await start_operator(watch_namespace=namespace, firmware_host_dir="/var/lib/firmware")
    await apply_module(admin_rest, namespace, modprobe_module(MODPROBE))
    first = await eventually(lambda: ready_module(admin_rest, namespace, "acme"))

    (ds,) = await daemonsets(admin_rest, namespace, "acme")
    container = loader(ds)
    spec = Modprobe.model_validate(MODPROBE)
    assert container["command"] == loader_command(spec)
    assert container["lifecycle"]["preStop"]["exec"]["command"] == prestop_command(spec)
    assert "modprobe -d /opt acme debug=1 ||" in container["command"][2]
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ooto-firmware"]["hostPath"] == {
        "path": "/var/lib/firmware",
        "type": "DirectoryOrCreate",
    }
    assert "NoUnloadHook" not in {c["type"] for c in first["status"]["conditions"]}

    changed = {**MODPROBE, "parameters": ["debug=2"]}
    await patch_module(admin_rest, namespace, "acme", {"spec": {"modprobe": changed}})

    async def rewritten() -> dict[str, Any] | None:
        sets = await daemonsets(admin_rest, namespace, "acme")
        command = loader(sets[0])["command"][2] if sets else ""
        return sets[0] if "modprobe -d /opt acme debug=2 ||" in command else None

    new_ds = await eventually(rewritten)
    assert new_ds["metadata"]["uid"] == ds["metadata"]["uid"], "updated in place"
    hash_key = "ooto.sigs.k8s.io/spec-hash"
    assert new_ds["metadata"]["annotations"][hash_key] != ds["metadata"]["annotations"][hash_key]
    second = await eventually(lambda: ready_module(admin_rest, namespace, "acme"))
    assert digest_of(second) != digest_of(first), "a parameter change is a new load digest"


async def test_a_command_beside_modprobe_is_an_invalid_spec_naming_both(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("mp-b", KERNEL, GPU)])
    await start_operator(watch_namespace=namespace)
    manifest = modprobe_module(MODPROBE)
    manifest["spec"]["moduleLoader"]["command"] = ["sh", "-c", "modprobe acme"]
    await apply_module(admin_rest, namespace, manifest)

    async def invalid() -> dict[str, Any] | None:
        ready = condition(await get_module(admin_rest, namespace, "acme"), "Ready")
        return ready if ready.get("reason") == "InvalidSpec" else None

    ready = await eventually(invalid)
    assert "spec.moduleLoader.command" in ready["message"]
    assert "spec.modprobe" in ready["message"]
    assert await daemonsets(admin_rest, namespace, "acme") == []
    assert await eventually(lambda: events(admin_rest, namespace, "InvalidSpec"))


async def test_a_loader_without_prestop_gets_no_unload_hook_and_stays_ready(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("mp-c", KERNEL, GPU)])
    await start_operator(watch_namespace=namespace)
    manifest = module_manifest("bare", [literal(KERNEL, "r.example/bare:6.1")])
    manifest["spec"]["moduleLoader"] = {
        "name": "loader",
        "image": "ignored",
        "command": ["sh", "-c", "modprobe bare && sleep infinity"],
    }
    await apply_module(admin_rest, namespace, manifest)

    module = await eventually(lambda: ready_module(admin_rest, namespace, "bare"))

    warning = condition(module, "NoUnloadHook")
    assert (warning["status"], warning["reason"]) == ("True", "NoUnloadHook")
    assert "preStop" in warning["message"] and "spec.modprobe" in warning["message"]
    assert condition(module, "Ready")["status"] == "True"
    (event,) = await eventually(lambda: events(admin_rest, namespace, "NoUnloadHook"))
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == "bare"

    prestop = {"preStop": {"exec": {"command": ["modprobe", "-r", "bare"]}}}
    loader_spec = {**manifest["spec"]["moduleLoader"], "lifecycle": prestop}
    await patch_module(admin_rest, namespace, "bare", {"spec": {"moduleLoader": loader_spec}})

    async def warning_gone() -> dict[str, Any] | None:
        fixed = await ready_module(admin_rest, namespace, "bare")
        return fixed if fixed and not condition(fixed, "NoUnloadHook") else None

    await eventually(warning_gone)
