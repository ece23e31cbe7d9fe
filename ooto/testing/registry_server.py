"""Debian's `docker-registry` (the CNCF distribution registry) on a free port, for tests and demos.

Plain HTTP or TLS with a throwaway CA; optionally htpasswd (bcrypt) auth, which answers requests
without credentials with 401 and a Basic challenge. `push_manifest` makes an image "exist" by
uploading a tiny config and layer and an OCI manifest through the distribution API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

from ooto.testing.binaries import Binaries, find_binaries
from ooto.testing.pki import CertPair, make_ca, make_serving_cert
from ooto.testing.processes import ManagedProcess, free_port, wait_until

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class RegistryServer:
    """`start(tls=..., htpasswd=(user, password))`, then `host` is "127.0.0.1:PORT"."""

    def __init__(self, binaries: Binaries | None = None, ca: CertPair | None = None) -> None:
        """`ca` signs the TLS certificate (default: a new CA in the registry's directory)."""
        self.binaries = binaries or find_binaries()
        self._ca = ca
        self.workdir = Path(tempfile.mkdtemp(prefix="ooto-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = False
        self.credentials: tuple[str, str] | None = None
        self.ca_file: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self, tls: bool = False, htpasswd: tuple[str, str] | None = None) -> RegistryServer:
        self.tls, self.credentials = tls, htpasswd
        config = self._write_config()
        argv = [str(self.binaries.docker_registry), "serve", str(config)]
        self._process = ManagedProcess("docker-registry", argv, self.workdir / "registry.log")
        self._process.start()
        try:
            wait_until(self._answers, 20.0, "waiting for docker-registry /v2/", [self._process])
        except Exception as error:
            tail = self._process.log_tail()
            self.stop()
            raise RuntimeError(f"{error}\n{tail}") from error
        return self

    def wipe(self) -> None:
        """Restart on the same address with empty storage: an in-cluster registry on an emptyDir
        whose pod restarted (every image is gone, clients see the same registry)."""
        assert self._process is not None, "not started"
        self._process.stop()
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        self._process.start()
        wait_until(self._answers, 20.0, "waiting for docker-registry /v2/", [self._process])

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        return self if self._process else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def docker_config_json(self) -> str:
        """Content of a kubernetes.io/dockerconfigjson Secret for this registry."""
        auths: dict[str, Any] = {}
        if self.credentials:
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            auths[self.host] = {"username": user, "password": password, "auth": token}
        return json.dumps({"auths": auths})

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    # -- setup -----------------------------------------------------------------------------

    def _write_config(self) -> Path:
        http: dict[str, Any] = {"addr": self.host, "secret": secrets.token_hex(16)}
        if self.tls:
            ca = self._ca or make_ca(self.workdir, "registry-ca")
            serving = make_serving_cert(ca, self.workdir, "registry")
            self.ca_file = ca.cert
            http["tls"] = {"certificate": str(serving.cert), "key": str(serving.key)}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
            },
            "http": http,
        }
        if self.credentials:
            config["auth"] = {"htpasswd": {"realm": "ooto", "path": str(self._write_htpasswd())}}
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _write_htpasswd(self) -> Path:
        assert self.credentials is not None
        user, password = self.credentials
        completed = subprocess.run(
            ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
        )
        path = self.workdir / "htpasswd"
        path.write_text(completed.stdout.strip() + "\n")
        return path

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=self.ssl_context()):
                return True
        except urllib.error.HTTPError as error:
            return error.code == 401
        except OSError:
            return False

    # -- content ---------------------------------------------------------------------------

    async def push_manifest(self, repo: str, tag: str, media_type: str = OCI_MANIFEST) -> str:
        """Upload a minimal image as `repo:tag`; returns the manifest digest."""
        config_blob = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        layer_blob = f"ooto test layer {repo}:{tag} {time.time()}".encode()
        async with self._session() as session:
            config_digest = await self._push_blob(session, repo, config_blob)
            layer_digest = await self._push_blob(session, repo, layer_blob)
            manifest = {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": _descriptor(_config_type(media_type), config_digest, config_blob),
                "layers": [_descriptor(_layer_type(media_type), layer_digest, layer_blob)],
            }
            body = json.dumps(manifest).encode()
            url = f"{self.url}/v2/{repo}/manifests/{tag}"
            async with session.put(url, data=body, headers={"Content-Type": media_type}) as resp:
                await _expect(resp, 201)
            return _digest(body)

    async def manifest(self, repo: str, tag: str) -> dict[str, Any]:
        """The image manifest of `repo:tag` (OCI or Docker v2 schema 2)."""
        accept = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"
        async with self._session() as session:
            url = f"{self.url}/v2/{repo}/manifests/{tag}"
            async with session.get(url, headers={"Accept": accept}) as resp:
                await _expect(resp, 200)
                manifest: dict[str, Any] = json.loads(await resp.read())
        return manifest

    async def digest(self, repo: str, tag: str) -> str:
        """The manifest digest of `repo:tag`, as the registry reports it."""
        accept = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"
        url = f"{self.url}/v2/{repo}/manifests/{tag}"
        async with (
            self._session() as session,
            session.head(url, headers={"Accept": accept}) as resp,
        ):
            await _expect(resp, 200)
            return resp.headers["Docker-Content-Digest"]

    async def blob(self, repo: str, digest: str) -> bytes:
        url = f"{self.url}/v2/{repo}/blobs/{digest}"
        async with self._session() as session, session.get(url) as resp:
            await _expect(resp, 200)
            return await resp.read()

    async def image_files(self, repo: str, tag: str) -> dict[str, bytes]:
        """Path -> content of every regular file in the image's layers (later layers win)."""
        manifest = await self.manifest(repo, tag)
        files: dict[str, bytes] = {}
        for layer in manifest["layers"]:
            blob = await self.blob(repo, layer["digest"])
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        files["/" + member.name.lstrip("./")] = extracted.read()
        return files

    async def image_config(self, repo: str, tag: str) -> dict[str, Any]:
        """The image's config blob (labels under `config.Labels`)."""
        manifest = await self.manifest(repo, tag)
        config: dict[str, Any] = json.loads(await self.blob(repo, manifest["config"]["digest"]))
        return config

    def authorization(self) -> dict[str, str]:
        """The Basic Authorization header for this registry's htpasswd user (empty without auth)."""
        if not self.credentials:
            return {}
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context() or False)
        return aiohttp.ClientSession(headers=self.authorization(), connector=connector)

    async def _push_blob(self, session: aiohttp.ClientSession, repo: str, blob: bytes) -> str:
        digest = _digest(blob)
        async with session.post(f"{self.url}/v2/{repo}/blobs/uploads/") as resp:
            await _expect(resp, 202)
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        separator = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        url = f"{location}{separator}digest={digest}"
        async with session.put(url, data=blob, headers=headers) as resp:
            await _expect(resp, 201)
        return digest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, digest: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": len(blob)}


def _config_type(manifest_type: str) -> str:
    return (
        OCI_CONFIG
        if manifest_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )


def _layer_type(manifest_type: str) -> str:
    return (
        OCI_LAYER
        if manifest_type == OCI_MANIFEST
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )


async def _expect(response: aiohttp.ClientResponse, status: int) -> None:
    if response.status != status:
        text = await response.text()
        raise RuntimeError(f"{response.method} {response.url}: HTTP {response.status} {text[:300]}")
