"""A real Prometheus scrapes a real `ooto run` on the local control plane: every metric and label
the shipped alert rules and dashboard use has data, and every rule evaluates without error.

The operator converges a Module whose image it builds (the simulated kubelet plays the build pod
and pushes to the test registry), then upgrades its node to a new image, so the Module, build,
upgrade, API, actor and process series all exist with real values. `ooto_sign_jobs_total` is there
before any sign, as ooto exports it: at 0 for both outcomes (a first failure then counts).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet, pushing_builds
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.operator_process import free_port, operators
from tests.integration.scenario_support import apply_module, eventually, module_manifest
from tests.integration.test_builds_operator import built_mapping, unique_repo
from tests.monitoring.queries import RULES, Query, all_queries, rule_groups

KERNEL = "6.1.0-18-amd64"
MODULES = "/apis/ooto.sigs.k8s.io/v1alpha1/namespaces"
GPU = {"ooto-test/gpu": "true"}


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("prometheus is missing (Debian package prometheus; `ooto cluster install`)")
    return found


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """A Prometheus scraping 127.0.0.1:target_port every second, with ooto's rules loaded;
    yields its base URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "ooto",
                # As the chart's ServiceMonitor: the target carries the operator pod's namespace,
                # and honor_labels keeps the Module's `namespace` on ooto's series.
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{target_port}"],
                        "labels": {"namespace": "ooto-system"},
                    }
                ],
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


class PromApi:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def ready(self) -> bool:
        try:
            async with self.session.get(f"{self.url}/-/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v1/query", params={"query": expr}) as got:
            body = await got.json()
        assert body["status"] == "success", f"{expr!r}: {body}"
        return list(body["data"]["result"])

    async def rules(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v1/rules") as got:
            body = await got.json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]


@contextlib.asynccontextmanager
async def prom_api(url: str) -> AsyncIterator[PromApi]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        api = PromApi(session, url)
        await eventually(api.ready, timeout=30)
        yield api


async def missing_data(api: PromApi, query: Query) -> list[str]:
    """What `query` needs that Prometheus has no data for (empty: everything is there)."""
    problems = []
    await api.query(query.expr)  # valid PromQL, evaluates without error
    for metric in sorted(query.metrics):
        if not await api.query(f'count({{__name__="{metric}"}})'):
            problems.append(f"no series {metric}")
    for metric, label in sorted(query.matchers):
        if not await api.query(f'count({metric}{{{label}!=""}})'):
            problems.append(f"no {metric} series with label {label}")
    names = "|".join(sorted(query.metrics))
    for label in sorted(query.grouping):
        if not await api.query(f'count({{__name__=~"{names}",{label}!=""}})'):
            problems.append(f"none of {names} carries label {label}")
    return [f"{query.origin}: {problem}" for problem in problems]


async def test_every_metric_and_label_of_the_rules_and_dashboard_has_data(
    cluster: LocalCluster,
    admin_rest: KubeRest,
    kubelet: SimulatedKubelet,
    registry: RegistryServer,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    kubelet.job_outcome = pushing_builds(registry)
    await kubelet.add_node("mon-1", KERNEL, GPU)
    repo = unique_repo(registry, "mon")
    mapping = built_mapping({"literal": KERNEL}, f"{repo}:{KERNEL}")
    await apply_module(admin_rest, namespace, module_manifest("watched", [mapping]))
    flags = (f"--watch-namespace={namespace}", "--no-leader-election", "--build-backend=kaniko")
    async with operators(cluster.admin_kubeconfig, tmp_path, *flags) as (operator,):
        with prometheus(tmp_path, operator.port) as url:
            async with prom_api(url) as api:
                ready = f'ooto_module_ready{{namespace="{namespace}",module="watched"}} == 1'
                await eventually(lambda: api.query(ready), timeout=90)
                # A new image (built too): the node's loader is replaced, an ordered upgrade.
                bumped = built_mapping({"literal": KERNEL}, f"{repo}:{KERNEL}-v2")
                await admin_rest.patch(
                    f"{MODULES}/{namespace}/modules/watched", {"spec": {"kernelMappings": [bumped]}}
                )
                upgraded = "ooto_upgrade_node_duration_seconds_count >= 1"
                await eventually(lambda: api.query(upgraded), timeout=90)
                labels = f'namespace="{namespace}",module="watched",state="upToDate"'
                await eventually(lambda: api.query(f"ooto_upgrade_nodes{{{labels}}} == 1"))
                built = 'ooto_build_duration_seconds_count{outcome="succeeded"}'
                await eventually(lambda: api.query(built), timeout=30)
                problems = [p for q in all_queries() for p in await missing_data(api, q)]
                assert not problems, "\n".join(problems)
                rules = await eventually(lambda: evaluated(api), timeout=30)
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not unhealthy, unhealthy
    assert {rule["name"] for rule in rules} == {
        rule["alert"] for group in rule_groups() for rule in group["rules"]
    }


async def evaluated(api: PromApi) -> list[dict[str, Any]] | None:
    """The rules once Prometheus has evaluated each of them at least once."""
    rules = await api.rules()
    return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None
