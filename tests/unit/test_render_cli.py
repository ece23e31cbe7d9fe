"""`ooto render`: a user checks what the operator would create for a kernel, with no cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ooto import __version__
from ooto.builds.buildah import sign_build
from ooto.builds.buildconfig import render_buildconfig
from ooto.builds.kaniko import KanikoOptions, render_dockerfile_configmap, render_kaniko_job
from ooto.cli import main
from ooto.domain.kernels import plan_kernel
from ooto.domain.signing import fingerprint
from ooto.domain.validation import ModulePolicy
from ooto.render_cli import build_objects, field_path, load_module
from ooto.settings import Settings

SAMPLE = (Path(__file__).parents[2] / "examples" / "module-sample.yaml").read_text()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "module.yaml"
    path.write_text(text)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], path: str, kernel: str) -> tuple[int, str, str]:
    code = main(["render", "-f", path, "--kernel", kernel])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_literal_kernel_prints_both_daemonsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.4.0-1054-gke")
    assert code == 0
    assert "matches spec.kernelMappings[1] (literal '5.4.0-1054-gke')" in out
    documents = list(yaml.safe_load_all(out))
    assert [doc["kind"] for doc in documents] == ["DaemonSet", "DaemonSet"]
    image = documents[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "quay.io/vendor/module-sample:ubuntu-5.4.0-1054-gke"
    assert "builds it first" not in out


def test_a_build_mapping_prints_the_build_objects_the_operator_would_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.10.0-1-gke")
    assert code == 0
    assert "matches spec.kernelMappings[2]" in out
    # OOTO_BUILD_BACKEND defaults to auto: Buildah on upstream Kubernetes, as the operator does.
    assert "ooto first creates the build objects below (buildah backend" in out
    documents = list(yaml.safe_load_all(out))
    assert [doc["kind"] for doc in documents] == ["DaemonSet", "DaemonSet", "ConfigMap", "Job"]
    configmap, job = documents[2:]
    assert configmap["data"]["Dockerfile"] == "FROM some-image\nRUN some-command\n"
    pod = job["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"] == ["/usr/bin/buildah"]
    assert "--build-arg=KERNEL_FULL_VERSION=5.10.0-1-gke" in pod["initContainers"][0]["args"]
    assert "docker://quay.io/vendor/module-sample:gke" in pod["containers"][0]["args"]
    assert job["metadata"]["name"] == configmap["metadata"]["name"]


def test_the_build_objects_are_the_backends_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SAMPLE.replace("metadata: {name: module-sample}", "metadata: {name: m, uid: u-1}")
    path = write(tmp_path, text)
    module = load_module(path, ModulePolicy())
    plan = plan_kernel(module, "5.10.0-1-gke")
    assert plan is not None
    code = main(["render", "-f", path, "--kernel", "5.10.0-1-gke", "--build-backend", "kaniko"])
    kaniko = list(yaml.safe_load_all(capsys.readouterr().out))
    assert code == 0
    settings = Settings.load()  # what select_backend gives the operator's backends
    options = KanikoOptions(
        executor_image=settings.kaniko_image,
        active_deadline_seconds=settings.build_deadline_seconds,
    )
    configmap = render_dockerfile_configmap(module, plan)
    assert kaniko[2:] == [configmap, render_kaniko_job(module, plan, options)]
    code = main(
        ["render", "-f", path, "--kernel", "5.10.0-1-gke", "--build-backend", "buildconfig"]
    )
    openshift = list(yaml.safe_load_all(capsys.readouterr().out))
    assert code == 0
    assert openshift[2:] == [render_buildconfig(module, plan, settings.build_deadline_seconds)]
    assert openshift[0]["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_without_a_uid_nothing_carries_an_owner_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.10.0-1-gke")
    assert code == 0 and "no ownerReferences: the Module has no uid yet" in out
    assert all("ownerReferences" not in doc["metadata"] for doc in yaml.safe_load_all(out))


def test_values_go_would_read_as_bools_or_numbers_are_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quoted = 'feature.node.kubernetes.io/cpu-cpuid.VMX: "true"'
    assert quoted in SAMPLE
    text = SAMPLE.replace(
        quoted, "feature.node.kubernetes.io/cpu-cpuid.VMX: y\n    tier: '1.10'\n    zone: 'on'"
    )
    code, out, _ = run(capsys, write(tmp_path, text), "5.4.0-1054-gke")
    assert code == 0
    assert "feature.node.kubernetes.io/cpu-cpuid.VMX: 'y'" in out
    assert "tier: '1.10'" in out and "zone: 'on'" in out
    selector = next(yaml.safe_load_all(out))["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["feature.node.kubernetes.io/cpu-cpuid.VMX"] == "y"


def test_a_module_without_an_unload_hook_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.4.0-1054-gke")
    assert code == 0 and "# warning NoUnloadHook: spec.moduleLoader has no" in out
    text = SAMPLE.replace(
        "securityContext:", "lifecycle: {preStop: {exec: {command: [x]}}}\n    securityContext:"
    )
    code, out, _ = run(capsys, write(tmp_path, text), "5.4.0-1054-gke")
    assert code == 0 and "NoUnloadHook" not in out


def test_a_modprobe_module_shows_its_scripts_as_literal_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SAMPLE.replace(
        "  selector:", "  modprobe: {moduleName: sample, firmwarePath: /firmware}\n  selector:"
    )
    path = write(tmp_path, text)
    code = main(["render", "-f", path, "--kernel", "5.4.0-1054-gke", "--firmware-host-dir", "/fw"])
    out = capsys.readouterr().out
    assert code == 0
    assert "      - |\n" in out, "the scripts read as scripts"
    loader = next(yaml.safe_load_all(out))["spec"]["template"]["spec"]
    assert "modprobe -d /opt sample ||" in loader["containers"][0]["command"][2]
    volumes = {volume["name"]: volume for volume in loader["volumes"]}
    assert volumes["ooto-firmware"]["hostPath"] == {"path": "/fw", "type": "DirectoryOrCreate"}


def test_no_match_explains_every_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "6.0.0")
    assert code == 1
    assert "no kernel mapping matches kernel '6.0.0'" in out
    for index in range(3):
        assert f"spec.kernelMappings[{index}]:" in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("containerImage: quay.io/vendor/module-sample:gke", "containerImage: 3"),
            "spec.kernelMappings[2].containerImage: Input should be a valid string",
        ),
        (
            ("- literal: 5.4.0-1054-gke", "- literal: 5.4.0-1054-gke\n      regexp: x"),
            "spec.kernelMappings[1]: Value error, exactly one of literal or regexp",
        ),
        (
            ("containerImage: quay.io/vendor/module-sample:gke", "containerImage: q.io/m:${NOPE}"),
            "spec.kernelMappings[2].containerImage: unknown variable 'NOPE'",
        ),
        (
            ("regexp: '^.*\\-gke$'", "regexp: '(?<=x)'"),
            "spec.kernelMappings[2].regexp: invalid RE2",
        ),
        (("spec:", "spec: ["), "invalid YAML"),
        (("kind: Module", "kind: Other"), "expected one document of kind Module, found 0"),
    ],
)
def test_bad_input_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], expected: str
) -> None:
    assert change[0] in SAMPLE
    path = write(tmp_path, SAMPLE.replace(*change))
    code, out, err = run(capsys, path, "5.10.0-1-gke")
    assert code == 2
    assert out == ""
    assert err.startswith(f"{path}: ")
    assert expected in err


def test_an_image_that_resolves_badly_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SAMPLE.replace("module-sample:gke", "module-sample:${KERNEL_FULL_VERSION}")
    code, _, err = run(capsys, write(tmp_path, text), ".5.0-gke")
    assert code == 2
    assert "spec.kernelMappings[2].containerImage: " in err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "nope.yaml")
    code, _, err = run(capsys, path, "5.4")
    assert code == 2 and err.startswith(f"{path}: cannot read")


def test_field_path_formats_pydantic_locations() -> None:
    assert (
        field_path(("spec", "kernelMappings", 0, "containerImage"))
        == "spec.kernelMappings[0].containerImage"
    )
    assert field_path(()) == "(document)"


HOST_PATH = (
    "configMap: {name: some-configmap}",
    "hostPath: {path: /etc}",
)


def test_the_operator_policy_from_the_environment_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same validation, same policy as the webhook and the operator: safe unless OOTO_* says."""
    monkeypatch.delenv("OOTO_ALLOW_HOST_PATH_VOLUMES", raising=False)
    assert HOST_PATH[0] in SAMPLE
    path = write(tmp_path, SAMPLE.replace(*HOST_PATH))
    code, _, err = run(capsys, path, "5.4.0-1054-gke")
    assert code == 2
    assert "spec.additionalVolumes[0].hostPath: " in err and "allowHostPathVolumes" in err
    monkeypatch.setenv("OOTO_ALLOW_HOST_PATH_VOLUMES", "true")
    code, out, _ = run(capsys, path, "5.4.0-1054-gke")
    assert code == 0 and "path: /etc" in out


def test_a_bad_policy_setting_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OOTO_ALLOWED_SERVICE_ACCOUNTS", "Not_Valid")
    code, _, err = run(capsys, write(tmp_path, SAMPLE), "5.4.0-1054-gke")
    assert code == 2 and "OOTO_ALLOWED_SERVICE_ACCOUNTS" in err


SIGNED = """
apiVersion: ooto.sigs.k8s.io/v1alpha1
kind: Module
metadata: {name: acme, namespace: drivers, uid: u-2}
spec:
  selector: {gpu: y}
  moduleLoader: {name: loader, image: ignored}
  modprobe: {moduleName: acme}
  sign:
    keySecret: {name: signing-key}
    certSecret: {name: signing-cert}
    filesToSign: ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"]
  kernelMappings:
    - regexp: '^6\\.'
      containerImage: registry.example/acme:${KERNEL_FULL_VERSION}
      build: {dockerfile: "FROM registry.example/kernel-devel:latest\\n"}
    - literal: 5.15.0-1-amd64
      containerImage: registry.example/acme:${KERNEL_FULL_VERSION}
      sign:
        keySecret: {name: signing-key}
        certSecret: {name: signing-cert}
        filesToSign: ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"]
        unsignedImage: registry.example/acme-unsigned:${KERNEL_FULL_VERSION}
"""
SIGN_KERNEL = "6.1.0-18-amd64"


@pytest.mark.parametrize("backend", ["kaniko", "buildah", "buildconfig"])
def test_a_signing_mapping_prints_the_sign_build_the_operator_would_start(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unsigned build, then the sign build, each the backend's own objects, exactly as the
    operator's ModuleSignatures starts it (sign_build of the plan with the signer image)."""
    path = write(tmp_path, SIGNED)
    cert = tmp_path / "cert.der"
    cert.write_bytes(b"\x30\x82" + b"\x01" * 80)
    module = load_module(path, ModulePolicy())
    plan = plan_kernel(module, SIGN_KERNEL)
    assert plan is not None and plan.sign is not None
    argv = ["render", "-f", path, "--kernel", SIGN_KERNEL, "--build-backend", backend]
    code = main([*argv, "--sign-cert", str(cert)])
    out = capsys.readouterr().out
    assert code == 0
    settings = Settings.load()
    signing = sign_build(
        plan,
        settings.signer_image,
        fingerprint(cert.read_bytes()),
        backend != "buildah",
        signed_for=module.key,
    )
    documents = list(yaml.safe_load_all(out))
    unsigned = build_objects(module, plan, backend, settings)  # type: ignore[arg-type]
    signs = build_objects(module, signing, backend, settings)  # type: ignore[arg-type]
    assert documents[1:] == [*unsigned, *signs]
    assert f"ooto signs {plan.sign.unsigned_image} with the build objects below" in out
    assert f"ooto:{__version__}" in json.dumps(signs)  # the default signer image
    assert "PRIVATE" not in out and "placeholder" not in out


def test_a_sign_only_mapping_prints_its_sign_build_and_a_placeholder_without_a_cert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SIGNED), "5.15.0-1-amd64")
    assert code == 0
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out)]
    assert kinds == ["DaemonSet", "ConfigMap", "Job"]  # no unsigned build: it exists already
    assert "placeholder: --sign-cert FILE" in out
    assert "FROM registry.example/acme-unsigned:5.15.0-1-amd64 AS unsigned" in out


def test_a_bad_sign_cert_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SIGNED)
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    code = main(["render", "-f", path, "--kernel", SIGN_KERNEL, "--sign-cert", str(bad)])
    assert code == 2
    assert f"{bad}: neither a PEM nor a DER certificate" in capsys.readouterr().err
