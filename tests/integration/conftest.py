"""Fixtures to run the operator in this process against the session's local control plane.

`crd` installs crds/ once per session. `operator` starts the real actor system (no leader
election) with the admin kubeconfig unless a test asks for the chart's RBAC user, and stops it
after the test. Metrics of each run count the API writes the operator made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml

from ooto.app import Operator
from ooto.builds.select import select_backend
from ooto.kube.client import KubeApi
from ooto.kube.config import make_api_client
from ooto.metrics import Metrics
from ooto.settings import Settings
from ooto.testing.cluster import LocalCluster
from ooto.testing.rest import KubeRest, RestError
from tests.integration.scenario_support import eventually

CRD_FILE = Path(__file__).parents[2] / "crds" / "ooto.sigs.k8s.io_modules.yaml"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def crd(admin_rest: KubeRest) -> str:
    body = yaml.safe_load(CRD_FILE.read_text())
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    try:
        await admin_rest.post(path, body)
    except RestError as error:
        if error.status != 409:
            raise
    name = body["metadata"]["name"]

    async def established() -> bool:
        got = await admin_rest.get(f"{path}/{name}")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (got.get("status") or {}).get("conditions") or []
        )

    await eventually(established, timeout=30)
    return str(name)


class RunningOperator:
    def __init__(self, operator: Operator, api: KubeApi, metrics: Metrics) -> None:
        self.operator, self.api, self.metrics = operator, api, metrics
        self.stopped = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.operator.stop()
            await self.api.close()

    def writes(self) -> dict[str, int]:
        return self.metrics.writes_total()


OperatorFactory = Callable[..., Awaitable[RunningOperator]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_operator(cluster: LocalCluster, crd: str) -> AsyncIterator[OperatorFactory]:
    running: list[RunningOperator] = []

    async def start(kubeconfig: Path | None = None, **overrides: Any) -> RunningOperator:
        settings = Settings.load(
            {
                "leader_election": False,
                "metrics_port": 0,
                "status_debounce_seconds": 0.1,
                "backoff_initial_seconds": 0.5,
                "backoff_max_seconds": 5,
                **overrides,
            }
        )
        metrics = Metrics()
        client = await make_api_client(str(kubeconfig or cluster.admin_kubeconfig))
        api = KubeApi(client, concurrency=settings.api_concurrency, observer=metrics)
        operator = Operator(settings, api, metrics, await select_backend(api, settings))
        await operator.start()
        handle = RunningOperator(operator, api, metrics)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()
