"""Security under hostile Modules: the module loader gets CAP_SYS_MODULE and nothing more unless the
Module asks and the operator's setting allows it; registry Secrets are read only as the Module names
them, in its own namespace, and their contents never reach logs, Events, status, metrics or
exception text.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from typing import Any

import pytest

from ooto.kube.client import KubeApi
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.reliability_support import GPU, A
from tests.integration.scenario_support import (
    GROUP_PATH,
    apply_module,
    condition,
    daemonsets,
    eventually,
    get_module,
    literal,
    module_manifest,
    ready_module,
)


def loader_security(ds: dict[str, Any]) -> dict[str, Any]:
    return dict(ds["spec"]["template"]["spec"]["containers"][0].get("securityContext") or {})


def with_loader_security(name: str, image: str, security: dict[str, Any]) -> dict[str, Any]:
    manifest = module_manifest(name, [literal(A, image)])
    manifest["spec"]["moduleLoader"]["securityContext"] = security
    return manifest


async def invalid_spec(rest: KubeRest, ns: str, name: str) -> dict[str, Any] | None:
    ready = condition(await get_module(rest, ns, name), "Ready")
    return ready if ready.get("reason") == "InvalidSpec" else None


ASKING_FOR_MORE = {
    "privileged": {"privileged": True},
    "sys-admin": {"capabilities": {"add": ["SYS_MODULE", "CAP_SYS_ADMIN"]}},
    "all-caps": {"capabilities": {"add": ["all"]}},
}


async def test_the_module_loader_gets_only_sys_module_unless_asked_and_allowed(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    await kubelet.add_nodes([("x1-a", A, GPU)])
    strict = await start_operator(watch_namespace=namespace)
    await apply_module(
        admin_rest, namespace, module_manifest("plain", [literal(A, "r.example/p:1")])
    )
    for name, security in ASKING_FOR_MORE.items():
        await apply_module(
            admin_rest, namespace, with_loader_security(name, "r.example/x:1", security)
        )

    await eventually(lambda: ready_module(admin_rest, namespace, "plain"))
    [plain] = await daemonsets(admin_rest, namespace, "plain")
    assert loader_security(plain) == {"capabilities": {"add": ["SYS_MODULE"]}}
    for name in ASKING_FOR_MORE:
        ready = await eventually(lambda name=name: invalid_spec(admin_rest, namespace, name))
        assert "allowPrivilegedModuleLoader" in ready["message"], ready["message"]
        assert not await daemonsets(admin_rest, namespace, name), f"{name} must not run"
    await strict.stop()

    await start_operator(watch_namespace=namespace, allow_privileged_module_loader=True)
    for name, security in ASKING_FOR_MORE.items():
        await eventually(lambda name=name: ready_module(admin_rest, namespace, name))
        [ds] = await daemonsets(admin_rest, namespace, name)
        assert loader_security(ds) == {"capabilities": {"add": ["SYS_MODULE"]}, **security}


POLICY_CASES = {
    "host-path": (
        {"additionalVolumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        "allowHostPathVolumes",
    ),
    "service-account": ({"serviceAccountName": "powerful"}, "allowedServiceAccounts"),
}


async def test_host_paths_and_service_accounts_run_only_where_the_policy_allows(
    admin_rest: KubeRest, kubelet: SimulatedKubelet, namespace: str, start_operator: OperatorFactory
) -> None:
    """With the webhook off, such Modules get in; the operator refuses them (InvalidSpec plus a
    Warning Event naming the setting) until the admin allows them, then deploys them."""
    await kubelet.add_nodes([("x1-p", A, GPU)])
    strict = await start_operator(watch_namespace=namespace)
    for name, (spec, _) in POLICY_CASES.items():
        manifest = module_manifest(name, [literal(A, "r.example/p:1")], **spec)
        await apply_module(admin_rest, namespace, manifest)
    for name, (_, setting) in POLICY_CASES.items():
        ready = await eventually(lambda name=name: invalid_spec(admin_rest, namespace, name))
        assert setting in ready["message"], ready["message"]
        assert not await daemonsets(admin_rest, namespace, name), f"{name} must not run"
    events = await admin_rest.get(f"/api/v1/namespaces/{namespace}/events")
    warned = {e["involvedObject"]["name"] for e in events["items"] if e["reason"] == "InvalidSpec"}
    assert set(POLICY_CASES) <= warned
    await strict.stop()

    await start_operator(
        watch_namespace=namespace,
        allow_host_path_volumes=True,
        allowed_service_accounts=f"{namespace}/powerful",
    )
    for name in POLICY_CASES:
        await eventually(lambda name=name: ready_module(admin_rest, namespace, name))
    [host] = await daemonsets(admin_rest, namespace, "host-path")
    volumes = host["spec"]["template"]["spec"]["volumes"]
    assert {"name": "root", "hostPath": {"path": "/", "type": ""}} in volumes
    [account] = await daemonsets(admin_rest, namespace, "service-account")
    assert account["spec"]["template"]["spec"]["serviceAccountName"] == "powerful"


class SecretReads:
    """Wraps the operator's KubeApi: every request for Secrets, as (verb, namespace, name)."""

    def __init__(self, api: KubeApi) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        for verb in ("get", "list", "watch"):
            setattr(api, verb, self._spy(verb, getattr(api, verb)))

    def _spy(self, verb: str, call: Any) -> Any:
        def spied(resource: Any, *args: Any, **kwargs: Any) -> Any:
            if resource.plural == "secrets":
                name = args[0] if verb == "get" and args else kwargs.get("name")
                namespace = args[1] if verb == "get" and len(args) > 1 else kwargs.get("namespace")
                if verb != "get":
                    namespace = args[0] if args else kwargs.get("namespace")
                self.calls.append((verb, namespace, name))
            return call(resource, *args, **kwargs)

        return spied


def docker_secret(name: str, registry: RegistryServer, password: str) -> dict[str, Any]:
    user = (registry.credentials or ("ooto", ""))[0]
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps(
        {"auths": {registry.host: {"username": user, "password": password, "auth": token}}}
    )
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def build_mapping(image: str) -> list[dict[str, Any]]:
    build = {"dockerfile": "FROM alpine\n", "push": {"insecure": True}}
    return [{"literal": A, "containerImage": image, "build": build}]


async def test_secrets_are_read_only_as_named_and_never_leak(
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    auth_registry: RegistryServer,
    namespace: str,
    start_operator: OperatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await kubelet.add_nodes([("x2-a", A, GPU)])
    user, password = auth_registry.credentials or ("", "")
    wrong = f"WRONG-{secrets.token_hex(12)}"
    secret_path = f"/api/v1/namespaces/{namespace}/secrets"
    await admin_rest.post(secret_path, docker_secret("regcred", auth_registry, password))
    await admin_rest.post(secret_path, docker_secret("badcred", auth_registry, wrong))
    await admin_rest.post(secret_path, docker_secret("unrelated", auth_registry, wrong))
    garbled = {
        "metadata": {"name": "garbled"},
        "type": "Opaque",  # the API server validates the dockerconfigjson type's content
        "data": {".dockerconfigjson": base64.b64encode(f"{{{wrong}".encode()).decode()},
    }
    await admin_rest.post(secret_path, garbled)
    elsewhere = f"{namespace[:50]}-other"
    await admin_rest.post("/api/v1/namespaces", {"metadata": {"name": elsewhere}})
    try:
        other_path = f"/api/v1/namespaces/{elsewhere}/secrets"
        await admin_rest.post(other_path, docker_secret("onlythere", auth_registry, wrong))
        repo = f"{auth_registry.host}/sec-{secrets.token_hex(3)}"
        await auth_registry.push_manifest(repo.partition("/")[2] + "/good", "1")

        operator = await start_operator(watch_namespace=namespace, build_backend="kaniko")
        reads = SecretReads(operator.api)
        modules = {
            "good": ("regcred", f"{repo}/good:1"),
            "bad": ("badcred", f"{repo}/bad:1"),
            "missing": ("onlythere", f"{repo}/missing:1"),
            "garbled": ("garbled", f"{repo}/garbled:1"),
        }
        for name, (secret, image) in modules.items():
            manifest = module_manifest(name, build_mapping(image))
            manifest["spec"]["imageRepoSecret"] = {"name": secret}
            await apply_module(admin_rest, namespace, manifest)

        await eventually(lambda: ready_module(admin_rest, namespace, "good"), timeout=30)
        [good] = await daemonsets(admin_rest, namespace, "good")
        assert good["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        for name in ("bad", "missing", "garbled"):

            async def failed(name: str = name) -> dict[str, Any] | None:
                ready = condition(await get_module(admin_rest, namespace, name), "Ready")
                return ready if ready.get("reason") == "ImageCheckFailed" else None

            ready = await eventually(failed, timeout=30)
            print(f"\n{name}: {ready['reason']}: {ready['message']}")
        assert (
            "onlythere"
            in condition(await get_module(admin_rest, namespace, "missing"), "Ready")["message"]
        )

        assert reads.calls, "the operator read the Secrets it was told to"
        assert {(verb, ns) for verb, ns, _ in reads.calls} == {("get", namespace)}
        assert {name for _, _, name in reads.calls} <= {
            "regcred",
            "badcred",
            "onlythere",
            "garbled",
        }

        secrets_in_clear = [password, wrong]
        for value in (password, wrong):
            secrets_in_clear.append(base64.b64encode(f"{user}:{value}".encode()).decode())
        everything = await everything_said(admin_rest, namespace, operator.metrics.exposition())
        everything += caplog.text
        for record in caplog.records:
            everything += repr(record.args) + repr(record.__dict__)
        leaked = [value for value in secrets_in_clear if value in everything]
        assert not leaked, "Secret content reached logs, Events, status or metrics"
    finally:
        await admin_rest.delete(f"/api/v1/namespaces/{elsewhere}")


async def everything_said(rest: KubeRest, ns: str, metrics: bytes) -> str:
    """Events, Module status and the metrics exposition, as one text."""
    events = await rest.get(f"/api/v1/namespaces/{ns}/events")
    modules = await rest.get(f"{GROUP_PATH}/namespaces/{ns}/modules")
    return json.dumps(events) + json.dumps(modules) + metrics.decode()
