"""The bearer-token flow against the real distribution registry in `auth: token` mode (as Docker
Hub, Quay and Harbor work): the registry answers 401 with a Bearer challenge and accepts only
JWTs signed by the issuer it trusts. The token service is played by this test, signing RS256
tokens with the openssl command line, and it checks the user's password.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from ooto.registry import RegistryClient, auth_from_dockerconfigjson
from ooto.testing.binaries import find_binaries
from ooto.testing.processes import ManagedProcess, free_port, wait_until

SERVICE = "ooto-test-registry"
ISSUER = "ooto-test-token-service"
USER = "builder"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Issues registry JWTs for USER/password, granting what the scope asks for."""

    key: Path
    cert_der: bytes
    password: str
    scopes: list[str] = field(default_factory=list)

    def jwt(self, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "iat": now, "nbf": now - 10,
                  "exp": now + 300, "jti": secrets.token_hex(8), "access": access}  # fmt: skip
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), capture_output=True, check=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    async def token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "bad credentials"}, status=401)
        access = []
        for scope in request.query.getall("scope", []):
            self.scopes.append(scope)
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        return web.json_response({"token": self.jwt(access), "expires_in": 300})


@dataclass
class TokenRegistry:
    host: str
    tokens: TokenService

    async def push(self, repo: str, tag: str) -> None:
        """Upload a minimal image with a push token (the way a build would)."""
        bearer = self.tokens.jwt(
            [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
        )
        headers = {"Authorization": f"Bearer {bearer}"}
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        base = f"http://{self.host}/v2/{repo}"
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{base}/blobs/uploads/") as started:
                assert started.status == 202, await started.text()
                location = started.headers["Location"]
            async with session.put(location, params={"digest": digest}, data=config) as put:
                assert put.status == 201, await put.text()
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest, "size": len(config)},
                "layers": [],
            }  # fmt: skip
            content_type = {"Content-Type": str(manifest["mediaType"])}
            async with session.put(
                f"{base}/manifests/{tag}", data=json.dumps(manifest), headers=content_type
            ) as put:
                assert put.status == 201, await put.text()


def _issuer_certificate(workdir: Path) -> tuple[Path, Path, bytes]:
    key, cert = workdir / "issuer.key", workdir / "issuer.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", f"/CN={ISSUER}"],
        capture_output=True, check=True,
    )  # fmt: skip
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    return key, cert, der


@pytest.fixture(scope="module")
def registry_process() -> Iterator[tuple[str, Path, bytes, int]]:
    """docker-registry in token mode; yields (host, issuer key, issuer cert DER, token port)."""
    workdir = Path(tempfile.mkdtemp(prefix="ooto-token-registry-"))
    key, cert, der = _issuer_certificate(workdir)
    host, token_port = f"127.0.0.1:{free_port()}", free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
        "auth": {"token": {"realm": f"http://127.0.0.1:{token_port}/token", "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(cert)}},
    }  # fmt: skip
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    argv = [str(find_binaries().docker_registry), "serve", str(workdir / "config.yml")]
    process = ManagedProcess("docker-registry", argv, workdir / "registry.log")
    process.start()
    try:
        wait_until(lambda: _challenges(host), 20.0, "waiting for docker-registry", [process])
        yield host, key, der, token_port
    finally:
        process.stop()


def _challenges(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
            return False
    except urllib.error.HTTPError as error:
        return error.code == 401 and "Bearer" in error.headers.get("WWW-Authenticate", "")
    except OSError:
        return False


@pytest_asyncio.fixture(loop_scope="session")
async def token_registry(
    registry_process: tuple[str, Path, bytes, int],
) -> AsyncIterator[TokenRegistry]:
    host, key, der, token_port = registry_process
    tokens = TokenService(key=key, cert_der=der, password=secrets.token_hex(8))
    app = web.Application()
    app.router.add_get("/token", tokens.token)
    server = TestServer(app, host="127.0.0.1", port=token_port)
    await server.start_server()
    yield TokenRegistry(host, tokens)
    await server.close()


def _auth(host: str, password: str) -> Any:
    entry = {"auth": base64.b64encode(f"{USER}:{password}".encode()).decode()}
    return auth_from_dockerconfigjson(json.dumps({"auths": {f"http://{host}": entry}}).encode())


async def test_bearer_token_flow_with_the_real_registry(token_registry: TokenRegistry) -> None:
    repo = f"team/mod-{secrets.token_hex(3)}"
    await token_registry.push(repo, "v1")
    auth = _auth(token_registry.host, token_registry.tokens.password)
    async with RegistryClient() as client:
        present = await client.image_exists(
            f"{token_registry.host}/{repo}:v1", insecure=True, auth=auth
        )
        missing = await client.image_exists(
            f"{token_registry.host}/{repo}:v2", insecure=True, auth=auth
        )
    assert present.outcome == "present", present.message
    assert missing.outcome == "missing", missing.message
    assert token_registry.tokens.scopes == [f"repository:{repo}:pull"]  # pull only, asked once


async def test_token_service_refusing_the_password_is_unauthorized(
    token_registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    image = f"{token_registry.host}/team/anything:v1"
    async with RegistryClient() as client:
        refused = await client.image_exists(
            image, insecure=True, auth=_auth(token_registry.host, wrong)
        )
    assert refused.outcome == "unauthorized"
    assert f"refused the credentials of user '{USER}'" in refused.message
    assert wrong not in refused.message
    assert all(wrong not in record.getMessage() for record in caplog.records)
