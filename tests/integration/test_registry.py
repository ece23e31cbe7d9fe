"""RegistryClient against the real CNCF distribution registry (Debian's docker-registry): plain
HTTP, htpasswd auth with right and wrong credentials, and TLS with a self-signed CA.

Passwords are random per session; each test checks they appear in no message and no log line.
"""

from __future__ import annotations

import json
import logging
import secrets

import pytest

from ooto.registry import RegistryAuth, RegistryClient, auth_from_dockerconfigjson
from ooto.testing.registry_server import DOCKER_MANIFEST, RegistryServer


def _secret(server: RegistryServer, password: str | None = None) -> RegistryAuth:
    assert server.credentials is not None
    user, real = server.credentials
    entry = {"username": user, "password": password or real}
    return auth_from_dockerconfigjson(json.dumps({"auths": {server.host: entry}}).encode())


def _no_password_logged(caplog: pytest.LogCaptureFixture, *passwords: str) -> None:
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert not any(password in text for password in passwords), text


async def test_plain_registry_present_missing_and_docker_manifests(
    registry: RegistryServer,
) -> None:
    repo = f"team/mod-{secrets.token_hex(3)}"
    await registry.push_manifest(repo, "oci")
    await registry.push_manifest(repo, "docker", media_type=DOCKER_MANIFEST)
    async with RegistryClient() as client:
        oci = await client.image_exists(f"{registry.host}/{repo}:oci", insecure=True, auth=None)
        docker = await client.image_exists(
            f"{registry.host}/{repo}:docker", insecure=True, auth=None
        )
        missing = await client.image_exists(
            f"{registry.host}/{repo}:nope", insecure=True, auth=None
        )
        other = await client.image_exists(f"{registry.host}/no/such:1", insecure=True, auth=None)
    assert (oci.outcome, docker.outcome) == ("present", "present"), (oci, docker)
    assert "sha256:" in oci.message
    assert (missing.outcome, other.outcome) == ("missing", "missing")


async def test_plain_registry_without_insecure_is_a_tls_error_not_missing(
    registry: RegistryServer,
) -> None:
    async with RegistryClient() as client:
        check = await client.image_exists(f"{registry.host}/team/x:1", insecure=False, auth=None)
    assert check.outcome == "error"
    assert "TLS" in check.message and "insecure" in check.message


async def test_htpasswd_registry_with_the_right_secret(
    auth_registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = f"team/mod-{secrets.token_hex(3)}"
    await auth_registry.push_manifest(repo, "v1")
    auth = auth_from_dockerconfigjson(auth_registry.docker_config_json().encode())
    async with RegistryClient() as client:
        present = await client.image_exists(
            f"{auth_registry.host}/{repo}:v1", insecure=True, auth=auth
        )
        missing = await client.image_exists(
            f"{auth_registry.host}/{repo}:v2", insecure=True, auth=auth
        )
    assert present.outcome == "present", present.message
    assert missing.outcome == "missing", missing.message
    assert auth_registry.credentials is not None
    _no_password_logged(caplog, auth_registry.credentials[1])


async def test_htpasswd_registry_with_wrong_or_no_credentials(
    auth_registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{secrets.token_hex(8)}"
    image = f"{auth_registry.host}/team/anything:v1"
    async with RegistryClient() as client:
        rejected = await client.image_exists(
            image, insecure=True, auth=_secret(auth_registry, wrong)
        )
        anonymous = await client.image_exists(image, insecure=True, auth=None)
    assert rejected.outcome == "unauthorized"
    assert "rejected the credentials for user 'ooto'" in rejected.message
    assert anonymous.outcome == "unauthorized"
    assert "has none for" in anonymous.message
    assert wrong not in rejected.message + anonymous.message
    assert auth_registry.credentials is not None
    _no_password_logged(caplog, wrong, auth_registry.credentials[1])


async def test_tls_registry_self_signed_needs_insecure_or_its_ca(
    tls_registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = f"team/mod-{secrets.token_hex(3)}"
    await tls_registry.push_manifest(repo, "v1")
    image = f"{tls_registry.host}/{repo}:v1"
    auth = _secret(tls_registry)
    async with RegistryClient() as client:
        insecure = await client.image_exists(image, insecure=True, auth=auth)
        verified = await client.image_exists(image, insecure=False, auth=auth)
    async with RegistryClient(ssl_context=tls_registry.ssl_context()) as trusting:
        trusted = await trusting.image_exists(image, insecure=False, auth=auth)
    assert insecure.outcome == "present", insecure.message
    assert verified.outcome == "error"
    assert "certificate" in verified.message and "insecure" in verified.message
    assert trusted.outcome == "present", trusted.message
    assert tls_registry.credentials is not None
    _no_password_logged(caplog, tls_registry.credentials[1])
