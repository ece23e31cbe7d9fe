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

from ooto.app import Operator
from ooto.builds.select import select_backend
from ooto.kube.client import KubeApi
from ooto.kube.config import make_api_client
from ooto.metrics import Metrics
from ooto.settings import Settings
from ooto.testing.cluster import LocalCluster
from ooto.testing.crds import install_crds
from ooto.testing.rest import KubeRest

CRD_FILE = Path(__file__).parents[2] / "crds" / "ooto.sigs.k8s.io_modules.yaml"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def crd(admin_rest: KubeRest) -> str:
    """Every generated CRD (Module, PreflightValidation) installed; the Module CRD's name."""
    names = await install_crds(admin_rest)
    return names[0]


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
