"""Long-running pieces shared by `ooto cluster up` and `ooto demo` (they need the asyncio loop)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from ooto.testing.cluster import LocalCluster
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest


def say(message: str) -> None:
    print(f"ooto: {message}", flush=True)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM set `stop`. Installed explicitly: a shell's background job ignores
    SIGINT unless the program takes it back."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


@contextlib.asynccontextmanager
async def running_kubelet(cluster: LocalCluster) -> AsyncIterator[SimulatedKubelet]:
    async with KubeRest(cluster.server, cluster.admin_token, cluster.ca_file) as rest:
        kubelet = SimulatedKubelet(rest)
        task = asyncio.create_task(kubelet.run(), name="simulated-kubelet")
        try:
            await kubelet.synced.wait()
            yield kubelet
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def serve(cluster: LocalCluster, nodes: list[tuple[str, str]]) -> None:
    """Keep a simulated kubelet for `nodes` (name, kernel) running until Ctrl-C."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with running_kubelet(cluster) as kubelet:
        for name, kernel in nodes:
            await kubelet.add_node(name, kernel)
            say(f"node {name} up with kernel {kernel}")
        say("simulated kubelet running (pods on its nodes become Ready); Ctrl-C stops everything")
        await stop.wait()
