"""Secure Boot signing end to end (issue 14, section 2), with nothing simulated about the images:
the Buildah backend's Jobs run for real (the simulated kubelet executes them with the host's
buildah), the signer image is made like the operator image as signing sees it (Debian's
`sign-file` at linux-kbuild-6.1's path, a POSIX sh, user 65532), and the signed module's
signature is verified with openssl against the certificate.

Needs root, buildah and linux-kbuild-6.1; under OOTO_REQUIRE_CLUSTER their absence fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ooto.domain.signing import (
    SIGN_CERT_DIR,
    SIGN_FILE,
    SIGN_KEY_DIR,
    SIGNED_BY_LABEL,
    SignPlan,
    sign_dockerfile,
)
from ooto.testing.images import BUILDAH, push_busybox_base, push_signer_image
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    daemonsets,
    events,
    eventually,
    get_module,
    kernel_status,
    module_manifest,
    ready_module,
)
from tests.integration.test_builds_buildah import GPU, _require_buildah, real_builds  # noqa: F401
from tests.integration.test_builds_operator import jobs, not_ready_because

KERNEL = "6.1.0-rpi7-rpi-v8+"
GARBLED_KEY = b"-----BEGIN PRIVATE KEY-----\nno\n-----END PRIVATE KEY-----\n"
MAGIC = b"~Module signature appended~\n"
MODULE_TEXT = "an out-of-tree module built for {kernel}\n"


def key_pair(where: Path, name: str) -> tuple[bytes, bytes, bytes]:
    """(PEM key, PEM cert, DER cert) of a fresh code-signing certificate."""
    key, cert = where / f"{name}.key", where / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN=ooto test {name}", "-addext", "extendedKeyUsage=codeSigning",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key.read_bytes(), cert.read_bytes(), der


def secret(name: str, key: str, value: bytes) -> dict[str, Any]:
    data = {key: base64.b64encode(value).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


def verify_module_signature(signed: bytes, cert_pem: bytes, where: Path) -> bytes:
    """openssl-verify the PKCS#7 blob appended by sign-file; returns the unsigned content."""
    assert signed.endswith(MAGIC), "no module signature trailer"
    info = signed[: -len(MAGIC)][-12:]
    (sig_len,) = struct.unpack(">I", info[8:12])
    end = len(signed) - len(MAGIC) - 12
    content, signature = signed[: end - sig_len], signed[end - sig_len : end]
    paths = {n: where / n for n in ("content", "sig.der", "cert.pem")}
    for name, data in (("content", content), ("sig.der", signature), ("cert.pem", cert_pem)):
        paths[name].write_bytes(data)
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(paths["sig.der"]),
         "-content", str(paths["content"]), "-certfile", str(paths["cert.pem"]), "-nointern",
         "-noverify", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    return content


@pytest.fixture(scope="module")
def images(registry: RegistryServer) -> dict[str, str]:
    _require_buildah()
    tag = secrets.token_hex(3)
    return {
        "base": push_busybox_base(registry, f"base/busybox-{tag}"),
        "signer": push_signer_image(registry, f"base/signer-{tag}"),
    }


def signed_mapping(registry: RegistryServer, repo: str, base: str) -> dict[str, Any]:
    dockerfile = (
        f"FROM {base}\nARG KERNEL_FULL_VERSION\n"
        "RUN mkdir -p /opt/lib/modules/${KERNEL_FULL_VERSION} && "
        'echo "an out-of-tree module built for ${KERNEL_FULL_VERSION}" '
        "> /opt/lib/modules/${KERNEL_FULL_VERSION}/ooto.ko\n"
    )
    insecure = {"insecure": True}
    return {
        "literal": KERNEL,
        "containerImage": f"{registry.host}/{repo}:${{KERNEL_FULL_VERSION}}",
        "build": {"dockerfile": dockerfile, "pull": insecure, "push": insecure},
    }


SIGN = {
    "keySecret": {"name": "signing-key"},
    "certSecret": {"name": "signing-cert"},
    "filesToSign": ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"],
}


async def test_build_then_sign_verifies_with_openssl_and_a_rotation_resigns_once(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key, cert_pem, cert_der = key_pair(tmp_path, "first")
    path = f"/api/v1/namespaces/{namespace}/secrets"
    await admin_rest.post(path, secret("signing-key", "key", key))
    await admin_rest.post(path, secret("signing-cert", "cert", cert_der))
    await real_builds.add_nodes([("sg1-a", KERNEL, GPU)])
    operator = await start_operator(
        watch_namespace=namespace,
        build_backend="buildah",
        signer_image=images["signer"],
        sign_secrets_recheck_seconds=1,
    )
    repo = f"ooto-test/signed-{secrets.token_hex(3)}"
    mapping = signed_mapping(registry, repo, images["base"])
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping], sign=SIGN))

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=120)

    tag, file = "6.1.0-rpi7-rpi-v8_", f"/opt/lib/modules/{KERNEL}/ooto.ko"
    assert kernel_status(module)[KERNEL]["build"] == "Signed"
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    assert (
        ds["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"{registry.host}/{repo}:{tag}@{await registry.digest(repo, tag)}"
    )
    unsigned = (await registry.image_files(repo, f"{tag}-unsigned"))[file]
    assert unsigned == MODULE_TEXT.format(kernel=KERNEL).encode()
    signed = (await registry.image_files(repo, tag))[file]
    assert verify_module_signature(signed, cert_pem, tmp_path) == unsigned
    first = "sha256:" + hashlib.sha256(cert_der).hexdigest()
    labels = (await registry.image_config(repo, tag))["config"]["Labels"]
    assert labels[SIGNED_BY_LABEL] == first
    files = await registry.image_files(repo, tag)
    assert not [p for p in files if p.startswith(("/run/secrets", "/signed", "/unsigned"))]
    # The signed image in use, both Jobs (the unsigned build, the sign) and their Dockerfile
    # ConfigMaps have served their turn.
    await eventually(lambda: nothing_built_left(admin_rest, namespace), timeout=60)

    # Rotation: new key and certificate in the same Secrets, no change to the Module.
    key2, cert2_pem, cert2_der = key_pair(tmp_path, "second")
    rotated = {"signing-key": ("key", key2), "signing-cert": ("cert", cert2_pem)}
    for name, (data_key, value) in rotated.items():
        new = base64.b64encode(value).decode()
        await admin_rest.patch(f"{path}/{name}", {"data": {data_key: new}})
    second = "sha256:" + hashlib.sha256(cert2_der).hexdigest()

    async def resigned() -> bool:
        config = await registry.image_config(repo, tag)
        return bool(config["config"]["Labels"].get(SIGNED_BY_LABEL) == second)

    await eventually(resigned, timeout=120)
    new_digest = await registry.digest(repo, tag)

    async def rolled_to_the_new_digest() -> bool:
        (ds,) = await daemonsets(admin_rest, namespace, "mod")
        loader = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        return bool(loader == f"{registry.host}/{repo}:{tag}@{new_digest}")

    await eventually(rolled_to_the_new_digest, timeout=60)
    await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=60)
    signed = (await registry.image_files(repo, tag))[file]
    assert verify_module_signature(signed, cert2_pem, tmp_path) == unsigned
    # Exactly once: the certificate is re-read on its interval (evidence that checks go on)
    # and no further sign Job runs.
    gets = operator.metrics.requests_total(verb="get", resource="secrets")

    async def rechecked() -> bool:
        return operator.metrics.requests_total(verb="get", resource="secrets") >= gets + 3

    await eventually(rechecked, timeout=30)
    sign_jobs = {s[1]["outcome"]: s[2] for s in _samples(operator, "ooto_sign_jobs")}
    assert sign_jobs == {"succeeded": 2.0, "failed": 0.0}

    # No key material anywhere the operator writes or says.
    job_specs = json.dumps(await jobs(admin_rest, namespace))
    configmaps = json.dumps(await admin_rest.get(f"/api/v1/namespaces/{namespace}/configmaps"))
    every_event = json.dumps(await admin_rest.get(f"/api/v1/namespaces/{namespace}/events"))
    status = json.dumps((await get_module(admin_rest, namespace, "mod"))["status"])
    for pem in (key, key2):
        body_line = pem.decode().splitlines()[1]
        for text in (job_specs, configmaps, every_event, status, caplog.text):
            assert body_line not in text and base64.b64encode(pem).decode()[:60] not in text


async def test_sign_from_an_existing_unsigned_image(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    """A mapping without `build`: `unsignedImage` is there already; the sign Job alone makes the
    signed image, and once the DaemonSet uses it the succeeded sign Job is deleted too."""
    key, cert_pem, cert_der = key_pair(tmp_path, "existing")
    path = f"/api/v1/namespaces/{namespace}/secrets"
    await admin_rest.post(path, secret("signing-key", "key", key))
    await admin_rest.post(path, secret("signing-cert", "cert", cert_pem))
    module_file = tmp_path / "ooto.ko"
    module_file.write_text(MODULE_TEXT.format(kernel=KERNEL))
    repo = f"ooto-test/existing-{secrets.token_hex(3)}"
    inside = f"/opt/lib/modules/{KERNEL}/ooto.ko"
    unsigned = push_busybox_base(registry, repo, "vendor", extra={inside: str(module_file)})
    await real_builds.add_nodes([("sg3-a", KERNEL, GPU)])
    await start_operator(
        watch_namespace=namespace, build_backend="buildah", signer_image=images["signer"]
    )
    insecure = {"insecure": True}
    sign = {**SIGN, "unsignedImage": unsigned, "pull": insecure, "push": insecure}
    mapping = {"literal": KERNEL, "containerImage": f"{registry.host}/{repo}:signed"}
    await apply_module(admin_rest, namespace, module_manifest("mod", [mapping], sign=sign))

    module = await eventually(lambda: ready_module(admin_rest, namespace, "mod"), timeout=120)

    assert kernel_status(module)[KERNEL]["build"] == "Signed"
    signed = (await registry.image_files(repo, "signed"))[inside]
    assert verify_module_signature(signed, cert_pem, tmp_path) == module_file.read_bytes()
    (ds,) = await daemonsets(admin_rest, namespace, "mod")
    loader = ds["spec"]["template"]["spec"]["containers"][0]["image"]
    assert loader == f"{registry.host}/{repo}:signed@{await registry.digest(repo, 'signed')}"
    await eventually(lambda: nothing_built_left(admin_rest, namespace), timeout=60)
    assert hashlib.sha256(cert_der).hexdigest() in json.dumps(
        (await registry.image_config(repo, "signed"))["config"]["Labels"]
    )


async def nothing_built_left(rest: KubeRest, namespace: str) -> bool:
    """No Job and no build ConfigMap (named after its Job) of Module "mod" left."""
    configmaps = await rest.get(f"/api/v1/namespaces/{namespace}/configmaps")
    left = [o["metadata"]["name"] for o in [*configmaps["items"], *await jobs(rest, namespace)]]
    return not [name for name in left if name.startswith("mod-build-")]


def test_the_signer_path_is_where_debian_ships_sign_file() -> None:
    """The sign Dockerfile calls ooto.domain.signing.SIGN_FILE; the operator image (the default
    signer) gets it from linux-kbuild-6.1, the package this host's sign-file comes from."""
    listed = subprocess.run(
        ["dpkg", "-L", "linux-kbuild-6.1"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert SIGN_FILE in listed


def _samples(operator: Any, family: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(operator.metrics.registry).decode()
    return [
        (s.name, s.labels, s.value)
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if s.name.endswith("_total")
    ]


async def test_a_missing_key_secret_and_a_failing_sign_are_clear_conditions(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    _, _, cert_der = key_pair(tmp_path, "only")
    path = f"/api/v1/namespaces/{namespace}/secrets"
    await admin_rest.post(path, secret("signing-cert", "cert", cert_der))
    await admin_rest.post(path, secret("garbled-key", "key", GARBLED_KEY))
    await real_builds.add_nodes([("sg2-a", KERNEL, GPU)])
    await start_operator(
        watch_namespace=namespace,
        build_backend="buildah",
        signer_image=images["signer"],
        backoff_initial_seconds=60,
        backoff_max_seconds=60,
    )
    base = images["base"]
    key, _, _ = key_pair(tmp_path, "other")
    await admin_rest.post(path, secret("signing-key", "key", key))
    missing = {**SIGN, "keySecret": {"name": "absent"}}
    garbled = {**SIGN, "keySecret": {"name": "garbled-key"}}
    nothing = {**SIGN, "filesToSign": ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko.xz"]}
    # signing-key holds a real key, but not the one of signing-cert: sign-file refuses it.
    cases = (("nokey", missing), ("badkey", garbled), ("nomatch", nothing), ("wrongkey", SIGN))
    for name, sign in cases:
        mapping = signed_mapping(registry, f"ooto-test/{name}-{secrets.token_hex(3)}", base)
        await apply_module(admin_rest, namespace, module_manifest(name, [mapping], sign=sign))

    nokey = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "nokey", "SignSecretInvalid"), timeout=120
    )
    assert "Secret absent (sign.keySecret) not found" in condition(nokey, "Ready")["message"]
    badkey = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "badkey", "SignSecretInvalid"), timeout=120
    )
    message = condition(badkey, "Ready")["message"]
    assert "Secret garbled-key key 'key' (sign.keySecret) holds a PEM private key" in message
    assert "\nno\n" not in message
    wrongkey = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "wrongkey", "SignFailed"), timeout=120
    )
    assert kernel_status(wrongkey)[KERNEL]["build"] == "SignFailed"

    async def event_of(name: str) -> list[dict[str, Any]]:
        found = await events(admin_rest, namespace, "SignFailed")
        return [e for e in found if e["involvedObject"]["name"] == name]

    (event,) = await eventually(lambda: event_of("wrongkey"), timeout=30)
    assert "sign-file" in event["message"] or "error" in event["message"].lower()
    assert "sign of" in event["message"] and "log tail" in event["message"], event["message"]
    assert not await daemonsets(admin_rest, namespace, "wrongkey")
    assert not await daemonsets(admin_rest, namespace, "badkey")
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "nomatch", "SignFailed"), timeout=120
    )

    (nomatch,) = await eventually(lambda: event_of("nomatch"), timeout=30)
    assert "no file matches" in nomatch["message"], nomatch["message"]
    assert f"/opt/lib/modules/{KERNEL}/*.ko.xz" in nomatch["message"]
    # The failed sign Jobs stay for inspection: they name the Secrets, never hold the key.
    failed_jobs = json.dumps(await jobs(admin_rest, namespace))
    configmaps = json.dumps(await admin_rest.get(f"/api/v1/namespaces/{namespace}/configmaps"))
    assert "signing-key" in failed_jobs, "the sign Job mounts the key Secret by name"
    for text in (failed_jobs, configmaps):
        assert key.decode().splitlines()[1] not in text


async def test_the_mounted_sign_dockerfile_of_kaniko_and_openshift_builds_signs_for_real(
    registry: RegistryServer, images: dict[str, str], tmp_path: Path
) -> None:
    """The sign Dockerfile for builders without build secrets (Kaniko, OpenShift builds): the
    key and certificate are files the build pod mounts read-only and every RUN sees. OpenShift
    hands its build volumes to Buildah as `--volume`; the same here, with the host's Buildah, the
    signer image made like the operator image, and a real registry. Kaniko itself cannot run
    here: this checks the Dockerfile both get, not Kaniko."""
    key, cert_pem, cert_der = key_pair(tmp_path, "mounted")
    module_file = tmp_path / "ooto.ko"
    module_file.write_text(MODULE_TEXT.format(kernel=KERNEL))
    repo = f"ooto-test/mounted-{secrets.token_hex(3)}"
    unsigned = push_busybox_base(
        registry, repo, "unsigned", extra={f"/opt/lib/modules/{KERNEL}/ooto.ko": str(module_file)}
    )
    plan = SignPlan(
        unsigned_image=unsigned,
        files=(f"/opt/lib/modules/{KERNEL}/*.ko",),
        key_secret="k", key_key="key", cert_secret="c", cert_key="cert",
        hash_algorithm="sha512", pull_insecure=True, push_insecure=True,
    )  # fmt: skip
    fingerprint = "sha256:" + hashlib.sha256(cert_der).hexdigest()
    dockerfile = sign_dockerfile(plan, images["signer"], fingerprint, mounted=True)
    (tmp_path / "key").mkdir()
    (tmp_path / "key" / "sign-key").write_bytes(key)
    (tmp_path / "cert").mkdir()
    (tmp_path / "cert" / "sign-cert").write_bytes(cert_der)
    volumes = [f"--volume={tmp_path / 'key'}:{SIGN_KEY_DIR}:ro"]
    volumes.append(f"--volume={tmp_path / 'cert'}:{SIGN_CERT_DIR}:ro")
    signed_image = f"{registry.host}/{repo}:signed"
    host_build(dockerfile, signed_image, volumes, tmp_path / "build")

    files = await registry.image_files(repo, "signed")
    signed = files[f"/opt/lib/modules/{KERNEL}/ooto.ko"]
    assert verify_module_signature(signed, cert_pem, tmp_path) == module_file.read_bytes()
    labels = (await registry.image_config(repo, "signed"))["config"]["Labels"]
    assert labels[SIGNED_BY_LABEL] == fingerprint
    assert not [p for p in files if p.startswith(("/run/ooto", "/signed", "/unsigned"))]
    body_line = key.decode().splitlines()[1].encode()
    assert not [p for p, data in files.items() if body_line in data]


def host_build(dockerfile: str, image: str, volumes: list[str], work: Path) -> None:
    """`buildah build` + push with the arguments ooto's Buildah Job uses, private storage."""
    work.mkdir()
    (work / "Dockerfile").write_text(dockerfile)
    storage = ["--storage-driver=vfs", f"--root={work}/root", f"--runroot={work}/run"]
    build = [BUILDAH, *storage, "build", "--isolation=chroot", "--tls-verify=false", *volumes]
    for argv in (
        [*build, f"--file={work}/Dockerfile", f"--tag={image}", str(work)],
        [BUILDAH, *storage, "push", "--tls-verify=false", image, f"docker://{image}"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
