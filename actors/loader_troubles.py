"""What a KernelActor knows of its loader pods that cannot run (state only; the decisions are
`ooto.domain.loader_health`'s)."""

from __future__ import annotations

from collections.abc import Iterable

from actors.ports import Obj
from ooto.domain.kernels import label_safe
from ooto.domain.loader_health import (
    PodTrouble,
    carry_detail,
    kernel_trouble,
    pod_trouble,
    with_stored_cause,
)
from ooto.domain.render import LABEL_KERNEL, LABEL_MODULE


class LoaderTroubles:
    def __init__(self) -> None:
        self._by_pod: dict[str, PodTrouble] = {}  # pod uid -> why it cannot run
        self.announced = ""  # the reason of the Warning Event sent since the kernel was Ready

    def seed(
        self,
        pods: Iterable[Obj],
        namespace: str,
        module: str,
        kernel_label: str,
        stored_message: str = "",
    ) -> None:
        """Read the loader-pod cache once (a new actor: DaemonSetRoutes tells only changes);
        `stored_message`: the kernel's message in the stored status, whose cause of a pull
        failure stands for pods that are only backing off now."""
        want = {LABEL_MODULE: label_safe(module), LABEL_KERNEL: kernel_label}
        for pod in pods:
            meta = pod.get("metadata") or {}
            labels = meta.get("labels") or {}
            ours = all(labels.get(key) == value for key, value in want.items())
            if meta.get("namespace") == namespace and ours:
                trouble = pod_trouble(pod)
                if trouble is not None:
                    trouble = with_stored_cause(trouble, stored_message)
                self.observe(str(meta.get("uid") or ""), trouble)

    def observe(self, uid: str, trouble: PodTrouble | None) -> None:
        merged = carry_detail(self._by_pod.get(uid), trouble)
        if merged is None:
            self._by_pod.pop(uid, None)
        else:
            self._by_pod[uid] = merged

    def verdict(self, unavailable: frozenset[str], nodes: int) -> tuple[str, str] | None:
        """(reason, message) over the pods on nodes that count (not NotReady or cordoned)."""
        counted = (t for t in self._by_pod.values() if t.node not in unavailable)
        return kernel_trouble(counted, nodes)
