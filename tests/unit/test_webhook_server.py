"""The webhook server on a real TLS port: reviews answered, certificates followed as they rotate.

Certificates come from the harness's openssl CA (ooto/testing/pki.py). A rotation is observed the
way a client sees it: a TLS handshake that trusts only the new CA starts to succeed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ooto.domain.validation import ModulePolicy
from ooto.testing.pki import CertPair, make_ca, make_serving_cert
from ooto.testing.waiting import eventually
from ooto.webhook import PATH, AdmissionServer, WebhookConfig

UID = "0c7f4a4e-8d4b-4a53-9a57-6f1e2b3c4d5e"


@dataclass
class Reviews:
    allowed: list[bool] = field(default_factory=list)

    failed: list[str] = field(default_factory=list)

    def webhook_reviewed(self, allowed: bool) -> None:
        self.allowed.append(allowed)

    def task_failed(self, task: str) -> None:
        self.failed.append(task)


def issue(directory: Path, name: str) -> tuple[CertPair, CertPair]:
    """A fresh CA and a serving certificate for 127.0.0.1 signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, f"{name}-ca")
    return ca, make_serving_cert(ca, directory, name)


def install(pair: CertPair, cert_dir: Path, *, key: bool = True) -> None:
    """Put a pair in place the way a Secret volume does: each file replaced atomically."""
    for source, target in ((pair.cert, "tls.crt"), (pair.key, "tls.key")):
        if target == "tls.key" and not key:
            continue
        staged = cert_dir / f".{target}.new"
        shutil.copyfile(source, staged)
        os.replace(staged, cert_dir / target)


def trusting(ca: CertPair) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert))


async def handshake_ok(port: int, ca: CertPair) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusting(ca))
    except ssl.SSLError:
        return False
    writer.close()
    return True


def review(spec: dict[str, Any]) -> dict[str, Any]:
    obj = {
        "apiVersion": "ooto.sigs.k8s.io/v1alpha1",
        "kind": "Module",
        "metadata": {"name": "mod", "namespace": "ns"},
        "spec": spec,
    }
    request = {
        "uid": UID,
        "kind": {"group": "ooto.sigs.k8s.io", "version": "v1alpha1", "kind": "Module"},
        "operation": "CREATE",
        "object": obj,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


GOOD = {
    "moduleLoader": {"image": "x"},
    "kernelMappings": [{"regexp": "^5", "containerImage": "q.io/m:${KERNEL_FULL_VERSION}"}],
}


@dataclass
class Served:
    server: AdmissionServer
    reviews: Reviews
    cert_dir: Path
    ca: CertPair

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}{PATH}"

    async def post(self, body: bytes) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=body, ssl=trusting(self.ca)) as response,
        ):
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    ca, pair = issue(tmp_path / "first", "first")
    install(pair, cert_dir)
    reviews = Reviews()
    config = WebhookConfig(ModulePolicy(), cert_dir, "127.0.0.1", 0)
    server = AdmissionServer(config, observer=reviews)
    server.start()
    try:
        await asyncio.wait_for(server.serving.wait(), 30)
        yield Served(server, reviews, cert_dir, ca)
    finally:
        await server.stop()


async def test_a_review_is_answered_over_tls_with_its_uid(served: Served) -> None:
    status, body = await served.post(json.dumps(review(GOOD)).encode())
    assert status == 200
    assert body["response"] == {"uid": UID, "allowed": True}
    bad = {**GOOD, "tolerations": [{"key": "k", "operator": "Maybe"}]}
    status, body = await served.post(json.dumps(review(bad)).encode())
    assert status == 200 and body["response"]["allowed"] is False
    assert "spec.tolerations[0].operator" in body["response"]["status"]["message"]
    assert served.reviews.allowed == [True, False]


async def test_an_object_nested_deeper_than_the_decoder_is_denied_not_crashed(
    served: Served,
) -> None:
    head = json.dumps(review({**GOOD, "moduleLoader": {"image": "x", "env": "HOLE"}}))
    body = head.replace('"HOLE"', '{"a":' * 1100 + "1" + "}" * 1100)
    status, answer = await served.post(body.encode())
    assert status == 200
    assert answer["response"]["uid"] == UID and answer["response"]["allowed"] is False


async def test_a_body_that_is_no_review_gets_400(served: Served) -> None:
    status, _ = await served.post(b'{"kind": "Nothing"}')
    assert status == 400


async def test_a_rotated_certificate_is_served_without_a_restart(
    served: Served, tmp_path: Path
) -> None:
    port = served.server.port
    assert port is not None
    new_ca, new_pair = issue(tmp_path / "second", "second")
    assert not await handshake_ok(port, new_ca)
    install(new_pair, served.cert_dir)
    await eventually(lambda: handshake_ok(port, new_ca), what="the rotated certificate")
    assert not await handshake_ok(port, served.ca)
    assert served.server.port == port


async def test_a_half_written_pair_keeps_the_old_certificate(
    served: Served, tmp_path: Path
) -> None:
    port = served.server.port
    assert port is not None
    new_ca, new_pair = issue(tmp_path / "second", "second")
    install(new_pair, served.cert_dir, key=False)  # the certificate before its key
    stamp = served.server.certificate.loaded
    assert not served.server.certificate.reload_if_changed()
    assert served.server.certificate.loaded == stamp
    assert await handshake_ok(port, served.ca)  # still the old pair, whole
    install(new_pair, served.cert_dir)  # the key follows
    await eventually(lambda: handshake_ok(port, new_ca), what="the completed pair")


async def test_the_port_opens_once_the_certificate_appears(tmp_path: Path) -> None:
    cert_dir = tmp_path / "empty"
    cert_dir.mkdir()
    server = AdmissionServer(WebhookConfig(ModulePolicy(), cert_dir, "127.0.0.1", 0))
    server.start()
    try:
        await asyncio.sleep(0)  # let the task look once
        assert not server.serving.is_set() and server.port is None
        ca, pair = issue(tmp_path / "late", "late")
        install(pair, cert_dir)
        await asyncio.wait_for(server.serving.wait(), 30)
        assert server.port is not None and await handshake_ok(server.port, ca)
    finally:
        await server.stop()


async def test_a_port_that_cannot_be_bound_is_a_task_failure_retried(
    served: Served, tmp_path: Path
) -> None:
    """Another replica's port (here: the fixture's) is taken: the failure is counted and the
    task retried, never silently gone."""
    taken = served.server.port
    assert taken is not None
    reviews = Reviews()
    config = WebhookConfig(ModulePolicy(), served.cert_dir, "127.0.0.1", taken)
    second = AdmissionServer(config, observer=reviews)
    second.start()
    try:
        await eventually(
            lambda: asyncio.sleep(0, result=reviews.failed or None), what="a counted failure"
        )
        assert reviews.failed == ["admission-webhook"]
        assert not second.serving.is_set() and second.task.failures_in_a_row >= 1
    finally:
        await second.stop()
