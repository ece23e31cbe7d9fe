"""The generated CRD on a real API server: accepted, stores the design example, rejects bad shapes.

Uses the session's `crd` fixture (tests/integration/conftest.py), which creates crds/ as committed.
"""

from __future__ import annotations

import copy
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ooto.api.crd import APPROVAL, CRD_FILENAME
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

# The design notes' example (issue 2), as written: note the unquoted boolean selector value.
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
    assert spec["selector"] == {"feature.node.kubernetes.io/cpu-cpuid.VMX": True}
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
        (["additionalVolumes", 0, "configMap", "name"], ["x"], "configMap.name"),
        (["tolerations"], [{"tolerationSeconds": "soon"}], "tolerationSeconds"),
        (["updateStrategy"], {"type": "Sometimes"}, "updateStrategy.type"),
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
    status = {"kernelCount": 2, "nodesReady": 1, "nodesDesired": 3}
    created["status"] = {**status, "conditions": [{"type": "Ready", "status": "False"}]}
    await admin_rest.request("PUT", f"{modules_path(namespace)}/columns/status", created)
    table = await get_table(cluster, f"{modules_path(namespace)}/columns")
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names == ["Name", "Ready", "Kernels", "Nodes Ready", "Desired", "Age"]
    assert table["rows"][0]["cells"][1:5] == ["False", 2, 1, 3]
