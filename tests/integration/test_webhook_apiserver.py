"""The admission webhook behind the real API server: bad Modules refused naming the field, good ones
stored, and what happens to Module writes when the webhook cannot be reached.

The webhook (the operator's own `AdmissionServer`) runs in the test process on 127.0.0.1 with a
certificate from the harness CA; a ValidatingWebhookConfiguration with a `url` clientConfig points
the API server at it. The configuration selects only namespaces carrying this test's label, so
other tests sharing the session cluster never meet it, and it is deleted in a finally.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ooto.domain.validation import ModulePolicy
from ooto.testing.cluster import LocalCluster
from ooto.testing.pki import make_ca, make_serving_cert
from ooto.testing.rest import KubeRest, RestError
from ooto.testing.waiting import eventually
from ooto.webhook import PATH, AdmissionServer, WebhookConfig
from tests.integration.operator_process import free_port, start
from tests.integration.scenario_support import GROUP_PATH

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
SCOPE_LABEL = "ooto.sigs.k8s.io/test-webhook"


def module(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": name},
        "spec": {
            "moduleLoader": {"image": "ignored"},
            "kernelMappings": [
                {"regexp": "^5", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}
            ],
        },
    }
    body["spec"].update(spec)
    return body


def webhook_configuration(name: str, url: str, ca: bytes, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "modules.ooto.sigs.k8s.io",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca).decode()},
                "rules": [
                    {
                        "apiGroups": ["ooto.sigs.k8s.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["modules"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {SCOPE_LABEL: scope}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "admissionReviewVersions": ["v1"],
            }
        ],
    }


@dataclass
class Registered:
    server: AdmissionServer
    rest: KubeRest
    namespace: str

    @property
    def modules(self) -> str:
        return f"{GROUP_PATH}/namespaces/{self.namespace}/modules"

    async def refusal(self, body: dict[str, Any]) -> str:
        with pytest.raises(RestError) as caught:
            await self.rest.post(self.modules, body)
        return str(caught.value.body.get("message", caught.value.body))


async def _denied_by_webhook(rest: KubeRest, path: str) -> bool | None:
    """True once the API server consults our webhook (it loads configurations asynchronously)."""
    probe = module(f"probe-{secrets.token_hex(3)}", tolerations=[{"operator": "Maybe"}])
    try:
        await rest.post(path, probe)
    except RestError as error:
        return "spec.tolerations[0].operator" in str(error.body) or None
    await rest.delete(f"{path}/{probe['metadata']['name']}")
    return None


@pytest_asyncio.fixture(loop_scope="session")
async def registered(
    admin_rest: KubeRest, crd: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Registered]:
    ca = make_ca(tmp_path, "webhook-ca")
    serving = make_serving_cert(ca, tmp_path, "tls")
    server = AdmissionServer(WebhookConfig(ModulePolicy(), tmp_path, "127.0.0.1", 0))
    server.start()
    scope = secrets.token_hex(4)
    name, created = f"ooto-test-{scope}", False
    assert serving.cert == tmp_path / "tls.crt" and serving.key == tmp_path / "tls.key"
    try:
        await asyncio.wait_for(server.serving.wait(), 30)
        await admin_rest.patch(
            f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {SCOPE_LABEL: scope}}}
        )
        url = f"https://127.0.0.1:{server.port}{PATH}"
        await admin_rest.post(
            WEBHOOKS, webhook_configuration(name, url, ca.cert.read_bytes(), scope)
        )
        done = Registered(server, admin_rest, namespace)
        await eventually(lambda: _denied_by_webhook(admin_rest, done.modules), what="webhook on")
        yield done
    finally:
        try:
            if created:
                await admin_rest.delete(f"{WEBHOOKS}/{name}")
        finally:
            await server.stop()


def _sign(who: str) -> dict[str, Any]:
    return {
        "keySecret": {"name": f"{who}-key"},
        "certSecret": {"name": f"{who}-cert"},
        "filesToSign": ["/lib/modules/x.ko"],
        "unsignedImage": "r.example/m:unsigned",
    }


BAD = {
    "spec.kernelMappings[0].regexp": {
        "kernelMappings": [{"regexp": "(?<=x)", "containerImage": "r.example/m:v1"}]
    },
    "spec.kernelMappings[0].containerImage": {
        "kernelMappings": [{"literal": "5.4", "containerImage": "r.example/m:${NOPE}"}]
    },
    "spec.kernelMappings[1].containerImage": {
        "kernelMappings": [
            {"literal": "5.4", "containerImage": "r.example/m:v1"},
            {"literal": "5.5", "containerImage": "R.example/M"},
        ]
    },
    # two mappings giving one signed image two different key pairs: re-signed in turn for ever
    "spec.kernelMappings[2].containerImage": {
        "kernelMappings": [
            {"regexp": "amd64$", "containerImage": "r.example/m:v1", "sign": _sign("a")},
            {"literal": "5.4", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"},
            {"regexp": "arm64$", "containerImage": "r.example/m:v1", "sign": _sign("b")},
        ]
    },
    "spec.moduleLoader.securityContext.privileged": {
        "moduleLoader": {"image": "x", "securityContext": {"privileged": True}}
    },
    "spec.additionalVolumes[0].hostPath": {
        "additionalVolumes": [{"name": "root", "hostPath": {"path": "/"}}]
    },
    "spec.serviceAccountName": {"serviceAccountName": "kube-admin"},
    "spec.tolerations[0].value": {
        "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]
    },
    "spec.tolerations[0].tolerationSeconds": {
        "tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 3}]
    },
    "spec.tolerations[0].effect": {"tolerations": [{"key": "k", "effect": "Sometimes"}]},
}


@pytest.mark.parametrize("field", list(BAD))
async def test_a_bad_module_is_refused_naming_the_field(registered: Registered, field: str) -> None:
    message = await registered.refusal(module("bad", **BAD[field]))
    assert 'admission webhook "modules.ooto.sigs.k8s.io" denied the request' in message
    assert f"{field}: " in message, message


async def test_good_modules_are_stored_and_a_bad_update_is_refused(
    registered: Registered,
) -> None:
    good = module(
        "good",
        tolerations=[
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 9}
        ],
        additionalVolumes=[{"name": "conf", "configMap": {"name": "c"}}],
        serviceAccountName="default",
    )
    stored = await registered.rest.post(registered.modules, good)
    changed = copy.deepcopy(stored)
    changed["spec"]["tolerations"][0]["operator"] = "Equal"  # a value-less Equal on key k: fine
    stored = await registered.rest.request("PUT", f"{registered.modules}/good", changed)
    broken = copy.deepcopy(stored)
    broken["spec"]["kernelMappings"][0]["regexp"] = "("
    with pytest.raises(RestError) as caught:
        await registered.rest.request("PUT", f"{registered.modules}/good", broken)
    assert "spec.kernelMappings[0].regexp" in str(caught.value.body)
    kept = await registered.rest.get(f"{registered.modules}/good")
    assert kept["spec"]["kernelMappings"][0]["regexp"] == "^5"


async def test_with_the_webhook_down_module_writes_are_refused_only_where_it_applies(
    registered: Registered, admin_rest: KubeRest
) -> None:
    """failurePolicy Fail: no webhook answer, no Module write (docs/operations.md)."""
    await registered.server.stop()
    message = await registered.refusal(module("while-down"))
    assert "failed calling webhook" in message, message
    other = f"t-unscoped-{secrets.token_hex(3)}"
    await admin_rest.post("/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        await admin_rest.post(f"{GROUP_PATH}/namespaces/{other}/modules", module("elsewhere"))
    finally:
        await admin_rest.delete(f"/api/v1/namespaces/{other}")


async def _answer(port: int, ca_file: Path, review: dict[str, Any]) -> dict[str, Any] | None:
    tls = ssl.create_default_context(cafile=str(ca_file))
    url = f"https://127.0.0.1:{port}{PATH}"
    try:
        async with aiohttp.ClientSession() as http, http.post(url, json=review, ssl=tls) as answer:
            body: dict[str, Any] = await answer.json()
            return body["response"]
    except aiohttp.ClientConnectionError:
        return None


async def test_every_replica_of_ooto_run_serves_it_the_standby_too(
    cluster: LocalCluster, crd: str, namespace: str, tmp_path: Path
) -> None:
    """`ooto run` with leader election: the replica that does not lead answers reviews too."""
    ca = make_ca(tmp_path, "webhook-ca")
    make_serving_cert(ca, tmp_path, "tls")
    ports = [free_port(), free_port()]
    flags = [f"--operator-namespace={namespace}", f"--watch-namespace={namespace}"]
    flags += [f"--lease-name=webhook-{secrets.token_hex(3)}", f"--webhook-cert-dir={tmp_path}"]
    replicas = [
        start(f"ooto-{i}", cluster.admin_kubeconfig, tmp_path, *flags, f"--webhook-port={port}")
        for i, port in enumerate(ports)
    ]
    try:

        async def leaders() -> list[float] | None:
            values = [await replica.value("ooto_leader") for replica in replicas]
            return values if sorted(values, key=lambda v: v or 0) == [0, 1] else None

        await eventually(leaders, what="one leader and one standby")
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "ooto.sigs.k8s.io", "version": "v1alpha1", "kind": "Module"},
                "operation": "CREATE",
                "object": module("m", serviceAccountName="powerful"),
            },
        }
        for port in ports:
            answer = await eventually(lambda port=port: _answer(port, ca.cert, review))
            assert answer["uid"] == "u-1" and answer["allowed"] is False
            assert "spec.serviceAccountName" in answer["status"]["message"]
    finally:
        for replica in replicas:
            await replica.stop()
            print(f"--- {replica.name} ---\n{replica.log_tail()}")
