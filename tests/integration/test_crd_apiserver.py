"""The generated CRD on a real API server: accepted, stores the design example, rejects bad shapes.

Uses the session's `crd` fixture (tests/integration/conftest.py), which creates crds/ as committed.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ooto.domain.api.crd import APPROVAL, CRD_FILENAME
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

# The design notes' example (issue 2); its selector value is quoted (see the selector tests).
EXAMPLE = (Path(__file__).parents[2] / "examples" / "module-sample.yaml").read_text()


def example(name: str = "module-sample") -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE)
    body["metadata"]["name"] = name
    return body


def modules_path(namespace: str) -> str:
    return f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{namespace}/modules"


async def test_the_crd_is_established_with_its_approval_annotation(
    admin_rest: KubeRest, crd: str
) -> None:
    got = await admin_rest.get(f"{CRD_PATH}/{crd}")
    assert crd == "modules.ooto.sigs.k8s.io" and CRD_FILENAME.startswith("ooto.sigs.k8s.io")
    # Without it the API server refuses a CRD in a *.k8s.io group (HTTP 422).
    assert got["metadata"]["annotations"]["api-approved.kubernetes.io"] == APPROVAL
    conditions = {c["type"]: c for c in got["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert "NonStructuralSchema" not in conditions


async def test_the_design_example_is_stored_and_read_back(
    admin_rest: KubeRest, crd: str, namespace: str
) -> None:
    await admin_rest.post(modules_path(namespace), example())
    got = await admin_rest.get(f"{modules_path(namespace)}/module-sample")
    spec = got["spec"]
    assert spec["selector"] == {"feature.node.kubernetes.io/cpu-cpuid.VMX": "true"}
    assert spec["moduleLoader"]["securityContext"] == {"capabilities": {"add": ["SYS_MODULE"]}}
    assert spec["additionalVolumes"] == [
        {"name": "some-volume", "configMap": {"name": "some-configmap"}}
    ]
    assert spec["kernelMappings"][2]["build"]["buildArgs"] == [
        {"name": "SOME_KEY", "value": "SOME_VALUE"}
    ]
    # Defaults come from the models.
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["kernelMappings"][2]["build"]["push"] == {"insecure": False}


async def test_unknown_fields_are_pruned(admin_rest: KubeRest, crd: str, namespace: str) -> None:
    body = example("pruned")
    body["spec"]["notAField"] = 1
    body["spec"]["kernelMappings"][0]["extra"] = "x"
    await admin_rest.post(modules_path(namespace), body)
    got = await admin_rest.get(f"{modules_path(namespace)}/pruned")
    assert "notAField" not in got["spec"] and "extra" not in got["spec"]["kernelMappings"][0]


def _set(body: dict[str, Any], path: list[Any], value: Any) -> None:
    node: Any = body["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize(
    "case",
    [
        (
            ["moduleLoader", "securityContext", "capabilities", "add"],
            "SYS_MODULE",
            "capabilities.add",
        ),
        (["kernelMappings", 0, "regexp"], "^5", "Found 2 valid alternatives"),
        (["kernelMappings", 1, "literal"], None, "Found none valid"),
        (["kernelMappings", 2, "build", "git"], {"url": "https://x/r.git"}, "build"),
        (["kernelMappings", 0, "containerImage"], 3, "containerImage"),
        (["kernelMappings"], [], "kernelMappings"),
        (["selector"], {"gpu": True}, "spec.selector.gpu"),
        (["selector"], {"gpu": {"nested": "x"}}, "spec.selector.gpu"),
        (["additionalVolumes", 0, "configMap", "name"], ["x"], "configMap.name"),
        (["tolerations"], [{"tolerationSeconds": "soon"}], "tolerationSeconds"),
        (["upgradePolicy"], {"mode": "Sometimes"}, "upgradePolicy.mode"),
        (["upgradePolicy"], {"readyTimeoutSeconds": 0}, "upgradePolicy.readyTimeoutSeconds"),
    ],
)
async def test_the_api_server_rejects_wrong_shapes(
    admin_rest: KubeRest, crd: str, namespace: str, case: tuple[list[Any], Any, str]
) -> None:
    path, value, message = case
    body = copy.deepcopy(example("rejected"))
    if value is None:
        del body["spec"]["kernelMappings"][1]["literal"]
    else:
        _set(body, path, value)
    with pytest.raises(RestError) as caught:
        await admin_rest.post(modules_path(namespace), body)
    assert caught.value.status == 422
    assert message in str(caught.value.body)


async def test_status_is_a_subresource(admin_rest: KubeRest, crd: str, namespace: str) -> None:
    created = await admin_rest.post(modules_path(namespace), example("with-status"))
    status = {"kernelCount": 2, "nodesReady": 1, "nodesDesired": 3}
    created["status"] = {**status, "conditions": [{"type": "Ready", "status": "False"}]}
    path = f"{modules_path(namespace)}/with-status/status"
    updated = await admin_rest.request("PUT", path, created)
    assert updated["status"]["kernelCount"] == 2
    assert updated["metadata"]["generation"] == created["metadata"]["generation"]
    bad = {**updated, "status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    with pytest.raises(RestError) as caught:
        await admin_rest.request("PUT", path, bad)
    assert caught.value.status == 422


async def get_table(cluster: LocalCluster, path: str) -> Any:
    """What `kubectl get` asks for: the server-side Table with the printer columns."""
    headers = {
        "Authorization": f"Bearer {cluster.admin_token}",
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
    }
    tls = ssl.create_default_context(cafile=str(cluster.ca_file))
    async with (
        aiohttp.ClientSession() as http,
        http.get(cluster.server + path, headers=headers, ssl=tls) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def test_printer_columns(
    cluster: LocalCluster, admin_rest: KubeRest, crd: str, namespace: str
) -> None:
    created = await admin_rest.post(modules_path(namespace), example("columns"))
    status = {"kernelCount": 2, "nodesReady": 1, "nodesDesired": 3, "upgrade": {"nodesUpToDate": 2}}
    created["status"] = {**status, "conditions": [{"type": "Ready", "status": "False"}]}
    await admin_rest.request("PUT", f"{modules_path(namespace)}/columns/status", created)
    table = await get_table(cluster, f"{modules_path(namespace)}/columns")
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names == [
        *["Name", "Ready", "Kernels", "Nodes Ready", "Desired", "Up-to-date", "Age"],
        "Ready Label",  # priority 1: kubectl shows it with -o wide
    ]
    assert table["rows"][0]["cells"][1:6] == ["False", 2, 1, 3, 2]


DEEP = '{"a":' * 1100 + '"x"' + "}" * 1100
"""1,100 levels: the API server's decoder takes it, orjson (> 1024) and Python's json do not."""


def nesting(text: str) -> int:
    """Deepest nesting of objects and lists in a JSON text (no recursion, strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]":
            depth -= 1
    return deepest


async def post_text(cluster: LocalCluster, path: str, text: str) -> tuple[int, str]:
    headers = {
        "Authorization": f"Bearer {cluster.admin_token}",
        "Content-Type": "application/json",
    }
    tls = ssl.create_default_context(cafile=str(cluster.ca_file))
    async with (
        aiohttp.ClientSession() as http,
        http.post(cluster.server + path, data=text, headers=headers, ssl=tls) as response,
    ):
        return response.status, await response.text()


# Where a Module could hold a free-form subtree before (issue 13): a claim template's metadata
# (an unknown field is pruned now, a label must be a string) and a selector value (a string or a
# number now; untyped, 18 levels there cost the API server 10 s and 100 levels never finished).
DEEP_PLACES = {
    "claim-metadata-extra": ("ephemeral-meta", {"extra": "HOLE"}),
    "claim-metadata-label": ("ephemeral-meta", {"labels": {"k": "HOLE"}}),
    "selector-value": ("selector", {"k": "HOLE"}),
}


@pytest.mark.parametrize("place", list(DEEP_PLACES))
async def test_a_module_nested_1100_levels_deep_is_never_stored_deep(
    cluster: LocalCluster, crd: str, namespace: str, place: str
) -> None:
    """Before the fix the API server stored these; the operator's informer died decoding one."""
    where, value = DEEP_PLACES[place]
    body = example(f"deep-{place}")
    if where == "selector":
        body["spec"]["selector"] = value
    else:
        template = {"metadata": value, "spec": {"accessModes": ["ReadWriteOnce"]}}
        volume = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": template}}
        body["spec"]["additionalVolumes"] = [volume]
    text = json.dumps(body).replace('"HOLE"', DEEP)
    status, answer = await post_text(cluster, modules_path(namespace), text)
    assert status in (201, 422), answer[:500]
    assert nesting(answer) < 32, f"{status}: stored {nesting(answer)} levels deep"
    if status == 422:
        assert "Invalid value" in answer


async def test_kubectl_get_modules_shows_progress_and_wide_adds_the_ready_label(
    admin_rest: KubeRest, crd: str, namespace: str, cluster: LocalCluster
) -> None:
    """The printer columns as a person sees them: the real kubectl against the real API server,
    on a status written through the status subresource as the operator writes it."""
    await admin_rest.post(modules_path(namespace), example("drv"))
    label = f"ready.ooto.sigs.k8s.io/{namespace}.drv"
    status = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Upgrading",
                "message": "1 of 3 nodes upgraded",
                "lastTransitionTime": "2026-12-01T12:00:00Z",
            }
        ],
        "kernelCount": 2,
        "nodesDesired": 3,
        "nodesReady": 2,
        "readyLabel": label,
        "upgrade": {"digest": "sha256:0", "nodesUpToDate": 1, "nodesUpgrading": 1},
    }
    await admin_rest.patch(f"{modules_path(namespace)}/drv/status", {"status": status})

    def kubectl_get(*extra: str) -> list[list[str]]:
        out = subprocess.run(
            [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.admin_kubeconfig}",
             "get", "modules", "-n", namespace, *extra],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]

    header, row = kubectl_get()
    assert header == ["NAME", "READY", "KERNELS", "NODES READY", "DESIRED", "UP-TO-DATE", "AGE"]
    assert row[:6] == ["drv", "False", "2", "2", "3", "1"]
    header, row = kubectl_get("-o", "wide")
    assert header[-1] == "READY LABEL" and row[-1] == label
