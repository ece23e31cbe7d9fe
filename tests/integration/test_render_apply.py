"""`ooto render` output is what kubectl (Go, YAML 1.1) reads and the API server accepts.

The `ooto` command runs as a user would run it, its stdout goes to the real kubectl, and
`kubectl apply --dry-run=server` has the local API server validate and admit every object
(DaemonSets, the Buildah Job and its ConfigMap) without storing them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ooto.domain.manifest_yaml import dump_manifests
from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest
from tests.integration.scenario_support import apply_module, get_module
from tests.unit.test_manifest_yaml import strings

OOTO = str(Path(sys.executable).parent / "ooto")
KERNEL = "6.1.0-18-amd64"
MODULE = """
apiVersion: ooto.sigs.k8s.io/v1alpha1
kind: Module
metadata: {name: acme}
spec:
  selector: {gpu: y, tier: '1.10', zone: 'on', count: '1e3', hex: '0x1F'}
  moduleLoader: {name: loader, image: ignored}
  modprobe:
    moduleName: acme_driver
    parameters: [debug=1, "names=a b"]
    modulesLoadingOrder: [acme_driver, acme_core]
    inTreeModulesToRemove: [nouveau]
    firmwarePath: /firmware
  kernelMappings:
    - regexp: '^6\\.'
      containerImage: registry.example/acme:${KERNEL_FULL_VERSION}
      build:
        buildArgs: [{name: FLAG, value: 'no'}, {name: VERSION, value: '2.10'}]
        dockerfile: |
          FROM registry.example/kernel-devel:latest
          ARG KERNEL_FULL_VERSION
          RUN make -C /usr/src/kernels/${KERNEL_FULL_VERSION} M=/src modules
"""


def kubectl(cluster: LocalCluster, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.admin_kubeconfig}", *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def render(path: Path, *flags: str) -> str:
    done = subprocess.run(
        [OOTO, "render", "-f", str(path), "--kernel", KERNEL, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_render_output_for_a_module_with_a_build_applies_to_the_api_server(
    cluster: LocalCluster, admin_rest: KubeRest, crd: str, namespace: str, tmp_path: Path
) -> None:
    raw = yaml.safe_load(MODULE)
    created = await apply_module(admin_rest, namespace, raw)
    stored = await get_module(admin_rest, namespace, created["metadata"]["name"])
    path = tmp_path / "module.yaml"
    path.write_text(yaml.safe_dump(stored))

    out = render(path)

    kinds = [doc["kind"] for doc in yaml.safe_load_all(out)]
    assert kinds == ["DaemonSet", "ConfigMap", "Job"]
    applied = kubectl(cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=out)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == 3, applied.stdout
    echoed = kubectl(
        cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", stdin=out
    )
    assert echoed.returncode == 0, echoed.stderr
    daemonset = next(o for o in json.loads(echoed.stdout)["items"] if o["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "gpu": "y",
        "tier": "1.10",
        "zone": "on",
        "count": "1e3",
        "hex": "0x1F",
        "ooto.sigs.k8s.io/kernel-version.full": KERNEL,
    }, "the API server got the strings the Module holds"
    assert daemonset["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]
    command = pod["containers"][0]["command"][2]
    assert "modprobe -d /opt acme_driver debug=1 'names=a b' ||" in command


async def test_render_output_without_a_uid_applies_too(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    raw = yaml.safe_load(MODULE)
    raw["metadata"]["namespace"] = namespace
    path = tmp_path / "module.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = render(path)
    assert all("ownerReferences" not in doc["metadata"] for doc in yaml.safe_load_all(out))
    applied = kubectl(cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=out)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == 3


SIGNING = """
apiVersion: ooto.sigs.k8s.io/v1alpha1
kind: Module
metadata: {name: signed}
spec:
  selector: {gpu: y}
  moduleLoader: {name: loader, image: ignored}
  modprobe: {moduleName: acme_driver}
  imageRepoSecret: {name: pull}
  sign:
    keySecret: {name: signing-key, key: tls.key}
    certSecret: {name: signing-cert}
    filesToSign: ["/opt/lib/modules/${KERNEL_FULL_VERSION}/*.ko"]
  kernelMappings:
    - regexp: '^6\\.'
      containerImage: registry.example/acme:${KERNEL_FULL_VERSION}
      build:
        dockerfile: |
          FROM registry.example/kernel-devel:latest
"""


@pytest.mark.parametrize("backend", ["kaniko", "buildah"])
async def test_render_output_for_a_module_that_signs_applies_with_its_sign_build(
    backend: str,
    cluster: LocalCluster,
    admin_rest: KubeRest,
    crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    created = await apply_module(admin_rest, namespace, yaml.safe_load(SIGNING))
    stored = await get_module(admin_rest, namespace, created["metadata"]["name"])
    path = tmp_path / "module.yaml"
    path.write_text(yaml.safe_dump(stored))

    out = render(path, "--build-backend", backend)

    documents = list(yaml.safe_load_all(out))
    assert [doc["kind"] for doc in documents] == ["DaemonSet", *["ConfigMap", "Job"] * 2]
    sign_job = documents[4]
    assert f"{KERNEL}-unsigned AS unsigned" in documents[3]["data"]["Dockerfile"]
    volumes = {v["name"]: v for v in sign_job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["sign-key"]["secret"]["items"] == [{"key": "tls.key", "path": "sign-key"}]
    applied = kubectl(cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=out)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == 5, applied.stdout


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(strings, min_size=1, max_size=60))
def test_kubectl_reads_every_printed_string_back_as_that_string(values: list[str]) -> None:
    """go-yaml itself (kubectl, offline: `label --local`) reads what ManifestDumper wrote."""
    kubectl_binary = Binaries.expected().kubectl
    document: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "values": {f"k{i}": value for i, value in enumerate(values)},
        "keys": {value: "v" for value in values if value.isprintable() and value},
    }
    done = subprocess.run(
        [str(kubectl_binary), "label", "--local", "-f", "-", "seen=yes", "-o", "json"],
        input=dump_manifests([document]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    assert read["values"] == document["values"]
    assert read["keys"] == document["keys"]
