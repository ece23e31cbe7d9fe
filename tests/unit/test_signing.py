"""Signing, pure: the per-kernel plan (mapping wins over spec.sign, substituted globs, derived
unsigned tag, bad input as SpecError), the certificate fingerprint (PEM or DER), the generated
Dockerfile, and the sign Job (Secrets mounted into the build step only, never in args or
layers). Real signing runs in tests/integration/test_signing.py."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ooto.builds.buildah import render_buildah_job, sign_build
from ooto.builds.buildconfig import render_buildconfig
from ooto.builds.kaniko import render_dockerfile_configmap, render_kaniko_job
from ooto.domain.api.module import Module
from ooto.domain.kernels import SpecError, plan_kernel
from ooto.domain.signing import (
    SIGN_FILE,
    CertificateError,
    certificate_der,
    fingerprint,
    glob_problem,
    private_key_problem,
    sign_dockerfile,
    unsigned_tag,
)

KERNEL = "6.1.0-rpi7-rpi-v8+"
SIGN = {
    "keySecret": {"name": "signing-key"},
    "certSecret": {"name": "signing-cert"},
    "filesToSign": ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"],
}


def module(mapping: dict[str, Any], **spec: Any) -> Module:
    return Module.model_validate(
        {
            "metadata": {"name": "acme", "namespace": "drivers", "uid": "u"},
            "spec": {
                "moduleLoader": {"name": "x", "image": "x"},
                "kernelMappings": [
                    {"regexp": "^6", "containerImage": "reg.example/drv:${KERNEL_FULL_VERSION}"}
                    | mapping
                ],
                **spec,
            },
        }
    )


BUILD = {"dockerfile": "FROM x\n", "push": {"insecure": True}}


def test_a_built_and_signed_image_builds_the_derived_unsigned_tag() -> None:
    plan = plan_kernel(module({"build": BUILD}, sign=SIGN), KERNEL)
    assert plan is not None and plan.sign is not None and plan.build is not None
    assert plan.image == "reg.example/drv:6.1.0-rpi7-rpi-v8_"
    assert plan.sign.unsigned_image == "reg.example/drv:6.1.0-rpi7-rpi-v8_-unsigned"
    assert plan.build.image == plan.sign.unsigned_image, "the build produces the unsigned image"
    assert plan.sign.files == (f"/opt/lib/modules/{KERNEL}/*.ko",), "raw kernel in paths"
    assert plan.sign.push_insecure is True, "inherited from build.push"
    assert (plan.sign.key_key, plan.sign.cert_key, plan.sign.hash_algorithm) == (
        "key",
        "cert",
        "sha256",
    )


def test_the_mappings_sign_wins_over_the_modules() -> None:
    own = {**SIGN, "unsignedImage": "reg.example/drv:${KERNEL_X}-raw", "hashAlgorithm": "sha512"}
    plan = plan_kernel(module({"sign": own}, sign=SIGN), KERNEL)
    assert plan is not None and plan.sign is not None and plan.build is None
    assert plan.sign.unsigned_image == "reg.example/drv:6-raw"
    assert plan.sign.hash_algorithm == "sha512"


@pytest.mark.parametrize(
    ("sign", "field"),
    [
        (SIGN, "spec.sign.unsignedImage"),  # no build, no unsignedImage
        ({**SIGN, "unsignedImage": "reg.example/drv:${KERNEL_FULL_VERSION}"}, "unsignedImage"),
        ({**SIGN, "unsignedImage": "x", "filesToSign": ["/a b/*.ko"]}, "filesToSign[0]"),
        ({**SIGN, "unsignedImage": "x:1", "filesToSign": ["/a/$(reboot)"]}, "filesToSign[0]"),
    ],
)
def test_unusable_sign_fields_are_spec_errors(sign: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        plan_kernel(module({}, sign=sign), KERNEL)
    assert field in raised.value.field_path


def test_the_unsigned_tag_is_always_a_valid_tag() -> None:
    assert unsigned_tag("r:5000/a/b:v1") == "r:5000/a/b:v1-unsigned"
    long = unsigned_tag("r/a:" + "x" * 128)
    assert len(long.split(":")[-1]) == 128 and long.endswith("-unsigned")
    with pytest.raises(ValueError, match="no tag"):
        unsigned_tag("r:5000/a/b@sha256:" + "a" * 64)
    assert glob_problem("/opt/lib/modules/6.1.0+x/*.ko") is None
    assert glob_problem("/opt/../etc/shadow") is not None


def certificate(tmp_path: Path) -> tuple[bytes, bytes]:
    """(PEM, DER) of a throwaway self-signed certificate."""
    pem = tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(pem), "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    der = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return pem.read_bytes(), der


def test_the_fingerprint_is_the_sha256_of_the_der_certificate_pem_or_der(tmp_path: Path) -> None:
    pem, der = certificate(tmp_path)
    expected = "sha256:" + hashlib.sha256(der).hexdigest()
    assert fingerprint(pem) == fingerprint(der) == expected
    assert certificate_der(pem) == der
    for garbled in (b"", b"hello", pem.replace(b"M", b"!", 3), base64.b64encode(der)):
        with pytest.raises(CertificateError):
            fingerprint(garbled)


def test_a_private_key_is_checked_without_quoting_it(tmp_path: Path) -> None:
    certificate(tmp_path)
    key = (tmp_path / "key.pem").read_bytes()
    assert private_key_problem(key) is None
    garbled = b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n"
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
    for data, words in ((b"", "no PEM"), (garbled, "base64"), (encrypted, "encrypted")):
        problem = private_key_problem(data)
        assert problem is not None and words in problem
        assert "not base64!" not in problem


def test_the_sign_job_mounts_the_secrets_into_the_build_step_only() -> None:
    mod = module({"build": BUILD}, sign=SIGN)
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None and plan.sign is not None
    signing = sign_build(plan, "reg.example/signer:1", "sha256:" + "ab" * 32)
    job = render_buildah_job(mod, signing)
    spec = job["spec"]["template"]["spec"]
    (build,), (push,) = spec["initContainers"], spec["containers"]
    assert build["args"][-3:-1] == [
        "--secret=id=ooto-sign-key,src=/run/ooto/sign-key/sign-key",
        "--secret=id=ooto-sign-cert,src=/run/ooto/sign-cert/sign-cert",
    ]
    assert f"--tag={plan.image}" in build["args"]
    assert {m["name"] for m in build["volumeMounts"]} >= {"sign-key", "sign-cert"}
    assert not {m["name"] for m in push["volumeMounts"]} & {"sign-key", "sign-cert"}
    secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    assert secrets["sign-key"] == {
        "secretName": "signing-key",
        "items": [{"key": "key", "path": "sign-key"}],
    }
    # The plain build of the unsigned image mounts no signing Secret.
    plain = json.dumps(render_buildah_job(mod, plan))
    assert "sign-key" not in plain and plan.sign.unsigned_image in plain


def test_the_dockerfile_signs_every_match_and_labels_the_result() -> None:
    plan = plan_kernel(module({"build": BUILD}, sign=SIGN), KERNEL)
    assert plan is not None and plan.sign is not None
    text = sign_dockerfile(plan.sign, "reg.example/signer:1", "sha256:abc", signed_for="ns/m")
    lines = text.splitlines()
    assert lines[0] == f"FROM {plan.sign.unsigned_image} AS unsigned"
    assert lines[1:3] == ["FROM reg.example/signer:1 AS signer", "USER 0:0"]
    assert "--mount=type=secret,id=ooto-sign-key" in lines[3]
    assert f"for f in /unsigned/opt/lib/modules/{KERNEL}/*.ko;" in lines[3]
    sign_file = "/usr/lib/linux-kbuild-6.1/scripts/sign-file"
    assert f"{sign_file} sha256 /run/secrets/ooto/key /run/secrets/ooto/cert" in lines[3]
    assert lines[4:] == [
        "FROM unsigned",
        "COPY --from=signer /signed/ /",
        'LABEL ooto.sigs.k8s.io/signed-by="sha256:abc"',
        'LABEL ooto.sigs.k8s.io/signed-for="ns/m"',  # tells a rotation from a conflict
    ]


def test_the_sign_build_labels_the_image_with_the_module_it_signs_for() -> None:
    mod = module({"build": BUILD}, sign=SIGN)
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None
    signing = sign_build(plan, "reg.example/signer:1", "sha256:ab", signed_for=mod.key)
    assert signing.build is not None
    assert f'LABEL ooto.sigs.k8s.io/signed-for="{mod.key}"' in signing.build.dockerfile


def test_signing_fields_no_kernel_can_use_are_validation_errors() -> None:
    from ooto.domain.validation import ModulePolicy, validate_module

    no_build = module({"sign": {**SIGN, "filesToSign": ["/a b/*.ko"]}})
    errors = {e.path: e.message for e in validate_module(no_build, ModulePolicy())}
    assert "spec.kernelMappings[0].sign.unsignedImage" in errors
    assert "spec.kernelMappings[0].sign.filesToSign[0]" in errors
    assert not validate_module(module({"build": BUILD}, sign=SIGN), ModulePolicy())
    unknown = module({"build": BUILD, "sign": {**SIGN, "filesToSign": ["/x/${NOPE}/*.ko"]}})
    paths = [e.path for e in validate_module(unknown, ModulePolicy())]
    assert paths == ["spec.kernelMappings[0].sign.filesToSign[0]"]


def test_the_operator_image_carries_sign_file_where_the_sign_dockerfile_calls_it() -> None:
    """The default signer is the operator image: its final stage installs the Debian package
    that ships sign-file at ooto.domain.signing.SIGN_FILE (tests/integration/test_signing.py checks
    that path against the package's file list and signs with it)."""
    root = Path(__file__).resolve().parents[2]
    stages = (root / "Dockerfile").read_text().split("\nFROM ")
    final = stages[-1]
    assert final.startswith("python:3.11.14-slim-bookworm\n")  # Debian bookworm: 6.1 kbuild
    assert "apt-get install -y --no-install-recommends linux-kbuild-6.1" in final
    assert f"test -x {SIGN_FILE}" in final
    assert final.index("linux-kbuild-6.1") < final.index("USER 65532:65532")


def _sign_plan(mod: Module, mounted: bool) -> Any:
    plan = plan_kernel(mod, KERNEL)
    assert plan is not None and plan.sign is not None
    return plan, sign_build(plan, "reg.example/signer:1", "sha256:" + "ab" * 32, mounted)


def test_the_kaniko_sign_job_mounts_the_secrets_read_only_and_snapshots_neither() -> None:
    mod = module({"build": BUILD}, sign=SIGN, imageRepoSecret={"name": "pull"})
    plan, signing = _sign_plan(mod, mounted=True)
    job = render_kaniko_job(mod, signing)
    spec = job["spec"]["template"]["spec"]
    (kaniko,) = spec["containers"]
    mounts = {m["name"]: m for m in kaniko["volumeMounts"]}
    assert mounts["sign-key"] == {
        "name": "sign-key",
        "mountPath": "/run/ooto/sign-key",
        "readOnly": True,
    }
    assert mounts["sign-cert"]["mountPath"] == "/run/ooto/sign-cert"
    assert mounts["sign-cert"]["readOnly"] is True
    assert {"registry-secret", "dockerfile"} <= set(mounts)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["sign-cert"]["secret"] == {
        "secretName": "signing-cert",
        "items": [{"key": "cert", "path": "sign-cert"}],
    }
    args = kaniko["args"]
    assert "--ignore-path=/run/ooto/sign-key" in args
    assert "--ignore-path=/run/ooto/sign-cert" in args
    assert f"--destination={plan.image}" in args
    assert not [a for a in args if a.startswith(("--cache", "--build-arg"))]  # no cache pushes
    # The Dockerfile (its ConfigMap) reads the mounted files; no RUN --mount, which Kaniko lacks.
    dockerfile = render_dockerfile_configmap(mod, signing)["data"]["Dockerfile"]  # type: ignore[index]
    assert "--mount" not in dockerfile
    assert (
        f"COPY --from=unsigned /opt/lib/modules/{KERNEL}/ /unsigned/opt/lib/modules/" in dockerfile
    )
    assert "sha256 /run/ooto/sign-key/sign-key /run/ooto/sign-cert/sign-cert" in dockerfile
    # The plain Kaniko build of the unsigned image mounts no signing Secret.
    plain = json.dumps(render_kaniko_job(mod, plan))
    assert "sign-key" not in plain and "ignore-path" not in plain


def test_the_buildconfig_sign_build_gets_the_secrets_as_build_volumes() -> None:
    mod = module({"build": BUILD}, sign=SIGN)
    plan, signing = _sign_plan(mod, mounted=True)
    config = render_buildconfig(mod, signing)
    strategy = config["spec"]["strategy"]["dockerStrategy"]
    assert strategy["volumes"] == [
        {
            "mounts": [{"destinationPath": "/run/ooto/sign-key"}],
            "name": "sign-key",
            "source": {
                "secret": {
                    "items": [{"key": "key", "path": "sign-key"}],
                    "secretName": "signing-key",
                },
                "type": "Secret",
            },
        },
        {
            "mounts": [{"destinationPath": "/run/ooto/sign-cert"}],
            "name": "sign-cert",
            "source": {
                "secret": {
                    "items": [{"key": "cert", "path": "sign-cert"}],
                    "secretName": "signing-cert",
                },
                "type": "Secret",
            },
        },
    ]
    assert config["spec"]["output"]["to"]["name"] == plan.image
    dockerfile = config["spec"]["source"]["dockerfile"]
    assert "--mount" not in dockerfile and "/run/ooto/sign-key/sign-key" in dockerfile
    assert "volumes" not in render_buildconfig(mod, plan)["spec"]["strategy"]["dockerStrategy"]


@pytest.mark.parametrize(
    ("patterns", "roots"),
    [
        (["/opt/lib/modules/6.1+/*.ko"], ["/opt/lib/modules/6.1+/"]),
        (["/opt/a/*.ko", "/opt/a/extra/*.ko", "/lib/*/x.ko"], ["/lib/", "/opt/a/"]),
        (["/*.ko"], ["/"]),
        (["/opt/[ab]/x.ko", "/opt/c?/x.ko"], ["/opt/"]),
    ],
)
def test_the_mounted_dockerfile_copies_only_the_directories_the_globs_can_match(
    patterns: list[str], roots: list[str]
) -> None:
    plan = plan_kernel(module({"build": BUILD}, sign={**SIGN, "filesToSign": patterns}), KERNEL)
    assert plan is not None and plan.sign is not None
    lines = sign_dockerfile(plan.sign, "s:1", "sha256:ab", mounted=True).splitlines()
    copies = [line for line in lines if line.startswith("COPY --from=unsigned")]
    assert copies == [f"COPY --from=unsigned {r} /unsigned{r}" for r in roots]
