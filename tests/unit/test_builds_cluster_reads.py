"""Pod logs (plain text) and discovery through both `ClusterReads`, against an in-process HTTP
server answering like the API server. The integration tests cover the error side on the real one
(no kubelet there serves logs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiClient, Configuration

from ooto.builds.cluster import ApiClientReads, ClusterReadError, ClusterReads, KubeApiReads
from ooto.kube.client import KubeApi

LOG = "step 1\nstep 2\nerror: make failed\n"


async def pod_log(request: web.Request) -> web.Response:
    lines = LOG.splitlines(keepends=True)[-int(request.query.get("tailLines", "999")) :]
    if request.match_info["pod"] == "gone":
        status = {
            "kind": "Status",
            "status": "Failure",
            "message": 'pods "gone" not found',
            "reason": "NotFound",
            "code": 404,
        }
        return web.json_response(status, status=404)
    return web.Response(text="".join(lines), content_type="text/plain")


async def discovery(request: web.Request) -> web.Response:
    if request.match_info["group"] != "build.openshift.io":
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
    resources = [
        {"name": n, "namespaced": True, "kind": "X", "verbs": ["get"]}
        for n in ("buildconfigs", "buildconfigs/instantiate", "builds")
    ]
    return web.json_response(
        {"kind": "APIResourceList", "groupVersion": "build.openshift.io/v1", "resources": resources}
    )


@pytest_asyncio.fixture(loop_scope="session")
async def api_client() -> AsyncIterator[ApiClient]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", pod_log)
    app.router.add_get("/apis/{group}/{version}", discovery)
    app.router.add_get("/apis/{group}/{version}/", discovery)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = ApiClient(Configuration(host=f"http://127.0.0.1:{server.port}"))
    yield client
    await client.close()
    await server.close()


@pytest.fixture(params=["KubeApiReads", "ApiClientReads"])
def reads(request: pytest.FixtureRequest, api_client: ApiClient) -> ClusterReads:
    if request.param == "KubeApiReads":
        return KubeApiReads(KubeApi(api_client))
    return ApiClientReads(api_client)


async def test_pod_log_tail_is_plain_text(reads: ClusterReads) -> None:
    assert await reads.pod_log("ns", "build-pod", tail_lines=2) == "step 2\nerror: make failed\n"


async def test_pod_log_error_is_a_read_error_with_the_status_message(reads: ClusterReads) -> None:
    with pytest.raises(ClusterReadError, match='pods "gone" not found'):
        await reads.pod_log("ns", "gone", tail_lines=2)


async def test_discovery_lists_resources_with_subresources_or_none(reads: ClusterReads) -> None:
    served = await reads.served_resources("build.openshift.io", "v1")
    assert served == frozenset({"buildconfigs", "buildconfigs/instantiate", "builds"})
    assert await reads.served_resources("nothing.example.com", "v1") is None
