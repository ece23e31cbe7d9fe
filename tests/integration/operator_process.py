"""`ooto run` as a child process, the way a replica runs in its pod, and what its server says.

Tests that need the real process (leader election between two replicas, the chart's RBAC with
leader election on) start it here: a free metrics port on 127.0.0.1, JSON logs to a file that
is printed when the test fails, SIGTERM (or SIGKILL) to stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and that this session has not handed out before (two
    replicas started back to back must not be given the same one before either binds it)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class OperatorProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    async def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of GET path on the metrics server; (0, error) when unreachable."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url) as response,
            ):
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            return 0, repr(error)

    async def samples(self) -> list[Sample]:
        """Every sample of /metrics (empty when the server does not answer)."""
        code, text = await self.get("/metrics")
        if code != 200:
            return []
        return [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    async def value(self, name: str, **labels: str) -> float | None:
        """The value of one sample, None when absent (or the server does not answer)."""
        for sample, got, value in await self.samples():
            if sample == name and all(got.get(k) == v for k, v in labels.items()):
                return value
        return None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)
        return int(self.process.returncode)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, kubeconfig: Path, log_dir: Path, *flags: str) -> OperatorProcess:
    port = free_port()
    log_file = log_dir / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "ooto.cli",
        "run",
        f"--kubeconfig={kubeconfig}",
        "--metrics-host=127.0.0.1",
        f"--metrics-port={port}",
        "--webhook-port=0",  # the webhook is tested on its own (test_webhook_apiserver.py)
        "--log-format=json",
        *flags,
    ]
    with log_file.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    return OperatorProcess(name, process, port, log_file)


@contextlib.asynccontextmanager
async def operators(
    kubeconfig: Path, log_dir: Path, *flags: str, count: int = 1
) -> AsyncIterator[list[OperatorProcess]]:
    """`count` replicas with the same flags; stopped (and their logs printed) on exit."""
    started = [start(f"ooto-{i}", kubeconfig, log_dir, *flags) for i in range(count)]
    try:
        yield started
    finally:
        for replica in started:
            code = await replica.stop()
            print(f"\n--- {replica.name} (pid {replica.pid}, exit {code}) log tail ---")
            print(replica.log_tail())


@contextlib.asynccontextmanager
async def replicas(
    kubeconfig: Path, log_dir: Path, *flags: str
) -> AsyncIterator[Callable[[str], OperatorProcess]]:
    """A `start(name)` for replicas with `flags`; each is stopped at the end, and the log tail of
    one that exited other than by SIGTERM (0) or SIGKILL (-9) is printed."""
    started: list[OperatorProcess] = []

    def start_replica(name: str) -> OperatorProcess:
        replica = start(name, kubeconfig, log_dir, *flags)
        started.append(replica)
        return replica

    yield start_replica
    for replica in started:
        code = await replica.stop()
        if code not in (0, -9):
            print(f"\n--- {replica.name} exit {code} ---\n{replica.log_tail()}")
