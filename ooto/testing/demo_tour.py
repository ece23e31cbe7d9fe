"""`ooto demo`'s guided tour, once the sample Module is Ready: a new module image rolled out node by
node, `ooto preflight` asked about kernels the nodes do not run yet, and the operator's metrics.

Each step checks what it shows (the rollout finishes, preflight answers as the sample implies,
the metrics are served), so the demo's exit code says whether ooto did what the tour claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ooto.domain.upgrade.keys import ready_label_key, upgrade_annotation_key
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest, RestError, WatchGoneError
from ooto.testing.session import say

IMAGE_SUFFIX = "-v2"
UPGRADE_SECONDS = 150.0
"""Budget for the rollout of the new image (a build and three loader restarts; generous for a
loaded 2-core machine)."""
PREFLIGHT_KERNELS = ("5.4.0-1060-gke", "5.17.0-300.fc36.x86_64")
"""A newer GKE kernel (its mapping builds: WillBuild) and a newer Fedora kernel (the sample maps
one exact Fedora kernel: NoMapping, so preflight exits 1)."""
PREFLIGHT_SECONDS = 90.0
PREFLIGHT_EXPECTED = {"5.4.0-1060-gke": "WillBuild", "5.17.0-300.fc36.x86_64": "NoMapping"}
METRICS_SHOWN = (
    "ooto_module_ready{",
    "ooto_upgrade_nodes{",
    "ooto_upgrade_node_duration_seconds_count",
    "ooto_upgrade_node_duration_seconds_sum",
)

STATE_TEXT = {
    "pod-deletion-required": "ready label off; pods that use the module leave (podDeletion)",
    "pod-restart-required": "old loader pod deleted (its preStop unloads); new one starting",
    "uncordon-required": "new loader pod Ready; putting the ready label back",
}


@dataclass
class RolloutLog:
    """Per-node upgrade records as a Node watch delivers them, printed as they change. A node is
    upgraded once its record is gone and its ready label is back."""

    annotation: str
    ready_label: str
    states: dict[str, str] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    upgraded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    most_at_once: int = 0

    def saw(self, node: JSON) -> None:
        meta = node["metadata"]
        name = str(meta["name"])
        raw = (meta.get("annotations") or {}).get(self.annotation)
        state = _record_state(raw)
        if state:
            self._in_state(name, state, _record_cause(raw))
        elif name in self.states and (meta.get("labels") or {}).get(self.ready_label) == "true":
            del self.states[name]
            took = time.monotonic() - self.started.pop(name)
            self.upgraded.append(name)
            print(f"  {name:9} {'upgraded':22} in {took:.1f} s; ready label back", flush=True)
        self.most_at_once = max(self.most_at_once, len(self.states))

    def _in_state(self, name: str, state: str, cause: str) -> None:
        if self.states.get(name) == state:
            return
        self.states[name] = state
        self.started.setdefault(name, time.monotonic())
        if state == "upgrade-failed":
            self.failed.append(name)
            print(f"  {name:9} {state:22} {cause}", flush=True)
        else:
            print(f"  {name:9} {state:22} {STATE_TEXT.get(state, '')}", flush=True)


def _record_state(raw: str | None) -> str:
    try:
        return str(json.loads(raw or "{}").get("state", ""))
    except (ValueError, AttributeError):
        return ""


def _record_cause(raw: str | None) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(raw or "{}").get("cause", ""))
    return ""


def upgrade_gauge(exposition: str, namespace: str, module: str, state: str) -> float | None:
    """The value of `ooto_upgrade_nodes` for that Module and state in a /metrics answer."""
    wanted = {"namespace": namespace, "module": module, "state": state}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "ooto_upgrade_nodes" and sample.labels == wanted:
                return float(sample.value)
    return None


def bumped_mappings(module: JSON) -> list[JSON]:
    """The Module's kernel mappings with IMAGE_SUFFIX on every image tag: a new load digest on
    every node, so each node's loader is replaced."""
    mappings: list[JSON] = json.loads(json.dumps(module["spec"]["kernelMappings"]))
    for mapping in mappings:
        mapping["containerImage"] = f"{mapping['containerImage']}{IMAGE_SUFFIX}"
    return mappings


def upgrade_done(module: JSON, nodes: int) -> bool:
    """The Module's current generation is Ready with every node on its new loader."""
    status = module.get("status") or {}
    upgrade = status.get("upgrade") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return (
        ready
        and status.get("observedGeneration") == module["metadata"].get("generation")
        and upgrade.get("nodesUpToDate") == nodes
        and not upgrade.get("nodesUpgrading")
    )


def preflight_as_expected(code: int, table: str) -> bool:
    """Exit 1 (a kernel is not covered), with the verdict the sample implies for each kernel."""
    verdicts = {
        row[1]: row[2] for row in (line.split() for line in table.splitlines()) if len(row) > 2
    }
    return code == 1 and all(verdicts.get(k) == v for k, v in PREFLIGHT_EXPECTED.items())


@dataclass(frozen=True)
class TourSite:
    """What the tour works on: the demo's cluster, registry, Module and operator."""

    rest: KubeRest
    registry: RegistryServer
    kubeconfig: str
    namespace: str
    module: str
    node_selector: str
    nodes: int
    metrics_url: str
    push_images: Callable[[RegistryServer, JSON], Awaitable[None]]

    @property
    def module_path(self) -> str:
        return f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{self.namespace}/modules/{self.module}"


async def run_tour(site: TourSite) -> bool:
    """Every step in turn; False (after saying why) at the first one that did not go as shown."""
    steps = (
        ("a new module image, rolled out node by node", tour_upgrade),
        ("before a kernel upgrade, ask `ooto preflight`", tour_preflight),
        ("Prometheus metrics", tour_metrics),
    )
    for number, (title, step) in enumerate(steps, 1):
        print(flush=True)
        say(f"tour {number}/{len(steps)}: {title}")
        if not await step(site):
            return False
    return True


async def tour_upgrade(site: TourSite) -> bool:
    current = await site.rest.get(site.module_path)
    mappings, spec = bumped_mappings(current), current["spec"]
    await site.push_images(site.registry, {**current, "spec": {**spec, "kernelMappings": mappings}})
    listed = await site.rest.get("/api/v1/nodes", {"labelSelector": site.node_selector})
    log = RolloutLog(
        upgrade_annotation_key(site.namespace, site.module),
        ready_label_key(site.namespace, site.module),
    )
    watcher = asyncio.create_task(_follow_nodes(site, log, listed["metadata"]["resourceVersion"]))
    try:
        patched = await site.rest.patch(site.module_path, {"spec": {"kernelMappings": mappings}})
        say(
            f"patched Module {site.namespace}/{site.module}: every image tag gets {IMAGE_SUFFIX} "
            f"(generation {patched['metadata']['generation']}); gke-1's new image is built in the "
            "cluster before that node upgrades. upgradePolicy defaults to maxParallel 1: one "
            "node at a time"
        )
        done = await _poll(lambda: _settled(site, log), UPGRADE_SECONDS)
        # The Module's status follows the last Node patch; let the watch deliver that patch.
        await _poll(lambda: _true(len(log.upgraded) >= site.nodes), 10.0)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return _judge_upgrade(site, log, done)


def _judge_upgrade(site: TourSite, log: RolloutLog, done: bool) -> bool:
    if not done or log.failed:
        say(
            f"the upgrade did not finish within {UPGRADE_SECONDS:.0f} s"
            f" (failed nodes: {', '.join(log.failed) or 'none'})"
        )
        return False
    if len(set(log.upgraded)) != site.nodes:
        say(f"expected {site.nodes} nodes upgraded, saw {log.upgraded}")
        return False
    if log.most_at_once != 1:
        say(f"{log.most_at_once} nodes upgraded at once, although maxParallel is 1")
        return False
    say(f"upgrade done: {site.nodes} nodes, in order {', '.join(log.upgraded)}, one at a time")
    return True


async def _true(value: bool) -> bool:
    return value


async def _settled(site: TourSite, log: RolloutLog) -> bool:
    """Done, or failed (the rollout stops at a failed node: no use waiting on)."""
    return bool(log.failed) or upgrade_done(await site.rest.get(site.module_path), site.nodes)


async def _poll(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    return False


async def _follow_nodes(site: TourSite, log: RolloutLog, version: str) -> None:
    """Feed every change of the demo's Nodes to `log`, from `version` on (so none is missed);
    after a broken or expired watch, a relist (records gone meanwhile still count)."""
    params = {"labelSelector": site.node_selector, "resourceVersion": version}
    while True:
        try:
            async for event in site.rest.watch("/api/v1/nodes", params):
                node = event.get("object") or {}
                params["resourceVersion"] = node.get("metadata", {}).get("resourceVersion", "")
                if event.get("type") in ("ADDED", "MODIFIED"):
                    log.saw(node)
        except (WatchGoneError, RestError, aiohttp.ClientError, TimeoutError, ValueError):
            await asyncio.sleep(0.5)
            with contextlib.suppress(RestError, aiohttp.ClientError, TimeoutError):
                params["resourceVersion"] = await _relist(site, log)


async def _relist(site: TourSite, log: RolloutLog) -> str:
    listed = await site.rest.get("/api/v1/nodes", {"labelSelector": site.node_selector})
    for node in listed["items"]:
        log.saw(node)
    return str(listed["metadata"]["resourceVersion"])


async def tour_preflight(site: TourSite) -> bool:
    args = ["preflight", f"--kubeconfig={site.kubeconfig}"]
    args += [f"--kernel={kernel}" for kernel in PREFLIGHT_KERNELS]
    say("will every Module have a module image for the nodes' next kernels?")
    print(f"\n  $ ooto {' '.join(args)}", flush=True)
    code, out = await _preflight(args)
    if code is None:
        say(f"ooto preflight did not answer within {PREFLIGHT_SECONDS:.0f} s")
        return False
    table = out.decode(errors="replace")
    print("".join(f"  {line}\n" for line in table.splitlines()), flush=True)
    if not preflight_as_expected(code, table):
        say(f"unexpected answer from ooto preflight (exit code {code})")
        return False
    say(
        "exit code 1: the GKE kernel is covered (its image will be built), the Fedora one is not"
        " (the sample maps one exact Fedora kernel): add a mapping before upgrading fedora-1"
    )
    return True


async def _preflight(args: list[str]) -> tuple[int | None, bytes]:
    """Run `ooto preflight` as a user would; (None, b"") when it does not answer in time. The
    process never outlives the call (Ctrl-C cancels the tour here too)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ooto.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), PREFLIGHT_SECONDS)
        return process.returncode, out
    except TimeoutError:
        return None, b""
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def tour_metrics(site: TourSite) -> bool:
    try:
        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(site.metrics_url) as got,
        ):
            text = await got.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        say(f"the operator's metrics at {site.metrics_url} did not answer: {error}")
        return False
    shown = [line for line in text.splitlines() if line.startswith(METRICS_SHOWN)]
    say(f"the operator serves Prometheus metrics at {site.metrics_url} (among them):")
    print("".join(f"  {line}\n" for line in shown), flush=True)
    say(
        "in a cluster, the chart's serviceMonitor.enabled scrapes them; prometheusRule.enabled and"
        " grafanaDashboard.enabled ship alerts and a dashboard (docs/operations.md)"
    )
    up_to_date = upgrade_gauge(text, site.namespace, site.module, "upToDate")
    if up_to_date != site.nodes:
        say(f"ooto_upgrade_nodes says {up_to_date} nodes up to date, not {site.nodes}")
        return False
    return True
