"""`ooto demo`: three nodes with three different kernels, one Module, and what ooto makes of it;
once the Module is Ready, a guided tour (ooto/testing/demo_tour.py): a new image rolled out node
by node, `ooto preflight` for the next kernels, and the operator's metrics. Exit 0 when all of it
went as shown.

The sample (examples/module-demo.yaml) maps a Fedora kernel and a Raspberry Pi kernel (with a `+`)
to images that already exist in the local registry, and GKE kernels to an image that must be built
first: the simulated kubelet plays the Kaniko build by pushing the image and succeeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from ooto.testing.commands import print_access
from ooto.testing.crds import install_crds
from ooto.testing.demo_tour import TourSite, run_tour
from ooto.testing.kubelet import pushing_builds
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import JSON, KubeRest, RestError
from ooto.testing.session import running_kubelet, say, stop_on_signals
from ooto.testing.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "module-demo.yaml"
PLACEHOLDER_REGISTRY = "127.0.0.1:5000"
NAMESPACE = "ooto-demo"
NODES = (
    ("fedora-1", "5.16.11-200.fc35.x86_64"),
    ("gke-1", "5.4.0-1054-gke"),
    ("rpi-1", "6.1.0-rpi7-rpi-v8+"),
)
NODE_LABELS = {"ooto.sigs.k8s.io/demo": "true"}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MODULES = f"/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/{NAMESPACE}/modules"
DAEMONSETS = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"
CONVERGE_SECONDS = 120.0
DemoOperator = Callable[[str, asyncio.Event, int], Awaitable[None]]


async def run_demo(
    cluster: LocalCluster, registry: RegistryServer, binaries: Binaries, keep: bool
) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with (
        KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest,
        running_kubelet(cluster) as kubelet,
    ):
        await install_crd(rest)
        await rest.post("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        for name, kernel in NODES:
            await kubelet.add_node(name, kernel, NODE_LABELS)
            say(f"node {name:9} kernel {kernel}")
        module = sample_module(registry.host)
        await push_prebuilt_images(registry, module)
        kubelet.job_outcome = pushing_builds(registry)
        await eventually(lambda: _create(rest, MODULES, module), what="the Module to be accepted")
        say(f"applied Module {NAMESPACE}/{module['metadata']['name']} from {EXAMPLE.name}")
        code = await _show(cluster, rest, stop, binaries, keep, registry)
        return code


async def _show(
    cluster: LocalCluster,
    rest: KubeRest,
    stop: asyncio.Event,
    binaries: Binaries,
    keep: bool,
    registry: RegistryServer,
) -> int:
    operator = _demo_operator()
    if operator is None:
        say("the operator is not available yet; this is what it would create:")
        show_rendered(await rest.get(f"{MODULES}/demo-kmod"))
        await _finish(cluster, binaries, keep, stop)
        return 0
    operator_stop = asyncio.Event()
    port = free_port()
    kubeconfig = str(cluster.admin_kubeconfig)
    task = asyncio.create_task(_run(operator, kubeconfig, operator_stop, port))
    say("operator started; watching the Module converge (Ctrl-C stops)")
    try:
        ready = await watch_progress(rest, stop, task)
        say("Module Ready: every node runs its kernel's module loader" if ready else "not Ready")
        toured = ready and await _tour(rest, registry, kubeconfig, port, stop)
        await _finish(cluster, binaries, keep, stop)
    finally:
        operator_stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
    return 0 if toured else 1


async def _tour(
    rest: KubeRest, registry: RegistryServer, kubeconfig: str, port: int, stop: asyncio.Event
) -> bool:
    """The guided tour, unless Ctrl-C comes first (then False)."""
    site = TourSite(
        rest=rest,
        registry=registry,
        kubeconfig=kubeconfig,
        namespace=NAMESPACE,
        module="demo-kmod",
        node_selector=",".join(f"{k}={v}" for k, v in NODE_LABELS.items()),
        nodes=len(NODES),
        metrics_url=f"http://127.0.0.1:{port}/metrics",
        push_images=push_prebuilt_images,
    )
    tour = asyncio.create_task(run_tour(site))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait((tour, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not tour.done():
        tour.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tour
        say("stopped before the tour finished")
        return False
    done = tour.result()
    print(flush=True)
    say("tour complete" if done else "the tour stopped: see above")
    return done


async def _finish(
    cluster: LocalCluster, binaries: Binaries, keep: bool, stop: asyncio.Event
) -> None:
    print_access(cluster, binaries)
    if keep and not stop.is_set():
        say(
            "--keep: everything keeps running (try `kubectl edit module -n ooto-demo demo-kmod`);"
            " Ctrl-C stops it"
        )
        await stop.wait()


async def _run(operator: DemoOperator, kubeconfig: str, stop: asyncio.Event, port: int) -> None:
    await operator(kubeconfig, stop, port)


def free_port() -> int:
    """A port free now, for the operator's metrics (the tour reads and prints them)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _demo_operator() -> DemoOperator | None:
    try:
        from ooto.app import run_demo_operator
    except ImportError:
        return None
    return run_demo_operator


async def install_crd(rest: KubeRest) -> None:
    for name in await install_crds(rest):
        say(f"installed CRD {name}")


def sample_module(registry_host: str) -> JSON:
    text = EXAMPLE.read_text().replace(PLACEHOLDER_REGISTRY, registry_host)
    module: JSON = yaml.safe_load(text)
    return module


async def push_prebuilt_images(registry: RegistryServer, module: JSON) -> None:
    """Push the images of mappings without a build, so that only the GKE image needs building."""
    try:
        from ooto.domain.api.module import Module
        from ooto.domain.kernels import plan_kernel
    except ImportError:
        return
    parsed = Module.model_validate(module)
    for _, kernel in NODES:
        plan = plan_kernel(parsed, kernel)
        if plan is not None and plan.build is None:
            repo, _, tag = plan.image.partition("/")[2].rpartition(":")
            await registry.push_manifest(repo, tag)
            say(f"pushed {plan.image}")


async def _create(rest: KubeRest, path: str, body: JSON) -> JSON | None:
    try:
        return await rest.post(path, body)
    except RestError as error:
        if error.status == 404:  # a fresh CRD is Established a moment before it is served
            return None
        raise


async def watch_progress(rest: KubeRest, stop: asyncio.Event, operator: asyncio.Task[None]) -> bool:
    """Print the Module's status and DaemonSets whenever they change; True once Ready."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    shown: list[str] = []
    while not stop.is_set() and time.monotonic() < deadline:
        if operator.done():
            say(f"the operator stopped: {operator.exception() if not operator.cancelled() else ''}")
            return False
        module = await rest.get(f"{MODULES}/demo-kmod")
        lines = describe(module, (await rest.get(DAEMONSETS)).get("items", []))
        if lines != shown:
            print("\n".join(["", *lines]), flush=True)
            shown = lines
        if _condition(module, "Ready") == "True":
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return False


def _condition(obj: JSON, kind: str) -> str:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return "Unknown"


def describe(module: JSON, daemonsets: list[JSON]) -> list[str]:
    status = module.get("status") or {}
    lines = [
        f"Module demo-kmod  Ready={_condition(module, 'Ready')}  "
        f"Progressing={_condition(module, 'Progressing')}  "
        f"nodes ready {status.get('nodesReady', 0)}/{status.get('nodesDesired', 0)}"
    ]
    for kernel in status.get("kernels") or []:
        detail = kernel.get("message") or kernel.get("image", "")
        lines.append(
            f"  kernel {kernel.get('kernel', ''):26} {kernel.get('phase', ''):10} "
            f"build {kernel.get('build', ''):10} "
            f"{kernel.get('nodesReady', 0)}/{kernel.get('nodesDesired', 0)}  {detail}"
        )
    for ds in sorted(daemonsets, key=lambda item: str(item["metadata"]["name"])):
        ds_status = ds.get("status", {})
        lines.append(
            f"  DaemonSet {ds['metadata']['name']:40} ready "
            f"{ds_status.get('numberReady', 0)}/{ds_status.get('desiredNumberScheduled', 0)}"
        )
    return lines


def show_rendered(raw: JSON) -> None:
    try:
        from ooto.domain.api.module import Module
        from ooto.domain.kernels import plan_kernel
        from ooto.domain.render import render_daemonsets
    except ImportError:
        say("ooto.domain.render is not available yet either")
        return
    module = Module.model_validate(raw)
    for node, kernel in NODES:
        plan = plan_kernel(module, kernel)
        if plan is None:
            say(f"{node} ({kernel}): no mapping matches")
            continue
        for ds in render_daemonsets(module, plan):
            template = ds["spec"]["template"]["spec"]
            images = ", ".join(c["image"] for c in template["containers"])
            say(f"{node}: DaemonSet {ds['metadata']['name']} image {images}")
            say(f"    nodeSelector {template.get('nodeSelector')}")
