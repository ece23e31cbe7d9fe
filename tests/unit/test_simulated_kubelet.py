"""The simulated kubelet's pod loop (the part that needs no API server)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.rest import KubeRest


@pytest.mark.timeout(20)  # before the fix: the loop never turned again
def test_a_pod_whose_node_was_removed_is_forgotten_even_with_a_pull_step_due() -> None:
    """Else the worker requeued it for ever without yielding: the whole test loop hung (seen
    when a node was removed while its loader pod backed off pulling its image)."""

    async def scenario() -> None:
        kubelet = SimulatedKubelet(cast(KubeRest, object()), workers=1)
        pod: dict[str, Any] = {
            "metadata": {"namespace": "ns", "name": "p", "uid": "u"},
            "spec": {"nodeName": "gone", "containers": [{"name": "c", "image": "i"}]},
        }
        kubelet._pods["ns/p"] = pod  # observed while its node existed
        kubelet._pull_due.add("ns/p")  # then its next pull step fell due
        kubelet._enqueue("ns/p")
        worker = asyncio.create_task(kubelet._work())
        await asyncio.wait_for(asyncio.sleep(0.05), 5)  # the loop still turns
        worker.cancel()
        assert "ns/p" not in kubelet._pods and "ns/p" not in kubelet._pull_due

    asyncio.run(scenario())
