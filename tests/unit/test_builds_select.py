"""Backend choice: the setting wins; "auto" asks discovery whether build.openshift.io/v1 serves
buildconfigs and builds, and the BuildConfig backend learns whether `instantiate` exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, Configuration

from ooto.builds.backends import BuildahJobBackend, BuildConfigBackend, KanikoJobBackend
from ooto.builds.cluster import ClusterReadError
from ooto.builds.select import backend_for
from ooto.kube.client import KubeApi


class Discovery:
    """Answers discovery like an API server would; counts the questions."""

    def __init__(self, served: frozenset[str] | Exception | None) -> None:
        self.served = served
        self.asked = 0

    async def pod_log(self, namespace: str, pod: str, *, tail_lines: int) -> str:
        return ""

    async def served_resources(self, group: str, version: str) -> frozenset[str] | None:
        assert (group, version) == ("build.openshift.io", "v1")
        self.asked += 1
        if isinstance(self.served, Exception):
            raise self.served
        return self.served


OPENSHIFT = frozenset({"buildconfigs", "buildconfigs/instantiate", "builds", "builds/log"})
CRDS_ONLY = frozenset({"buildconfigs", "buildconfigs/status", "builds", "builds/status"})


@pytest_asyncio.fixture(loop_scope="session")
async def api() -> AsyncIterator[KubeApi]:
    kube = KubeApi(ApiClient(Configuration(host="http://127.0.0.1:9")))  # never called
    yield kube
    await kube.close()


@pytest.mark.parametrize(
    ("served", "backend", "instantiate"),
    [
        (None, BuildahJobBackend, None),
        (frozenset({"buildconfigs"}), BuildahJobBackend, None),
        (OPENSHIFT, BuildConfigBackend, True),
        (CRDS_ONLY, BuildConfigBackend, False),
    ],
)
async def test_auto_follows_discovery(
    api: KubeApi, served: frozenset[str] | None, backend: type, instantiate: bool | None
) -> None:
    chosen = await backend_for(api, "auto", Discovery(served))
    assert type(chosen) is backend
    if isinstance(chosen, BuildConfigBackend):
        assert chosen.uses_instantiate is instantiate


@pytest.mark.parametrize(
    ("setting", "backend"), [("kaniko", KanikoJobBackend), ("buildah", BuildahJobBackend)]
)
async def test_a_job_backend_setting_does_not_ask_discovery(
    api: KubeApi, setting: Literal["kaniko", "buildah"], backend: type
) -> None:
    discovery = Discovery(OPENSHIFT)
    assert type(await backend_for(api, setting, discovery)) is backend
    assert discovery.asked == 0


async def test_buildconfig_setting_survives_failing_discovery_but_auto_does_not(
    api: KubeApi,
) -> None:
    broken = Discovery(ClusterReadError("discovery of build.openshift.io/v1: HTTP 503"))
    forced = await backend_for(api, "buildconfig", broken)
    assert isinstance(forced, BuildConfigBackend) and forced.uses_instantiate is None
    with pytest.raises(ClusterReadError, match="503"):
        await backend_for(api, "auto", broken)
