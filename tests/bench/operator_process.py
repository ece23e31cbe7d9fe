"""The operator under test as a child process: its /metrics, its /readyz and its /proc entry.

A child process keeps the measurement clean: its RSS, threads and CPU time are the operator's
alone, while the simulated kubelet and the benchmark's watches run in the parent.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ooto.testing.processes import free_port
from tests.bench import ready_writes

READ_VERBS = {"get", "list", "watch"}
_SAMPLE = re.compile(r"^ooto_kube_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_GAUGE = re.compile(r"^ooto_kernel_actors\{[^}]*\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ProcStats:
    rss_mb: float
    threads: int
    cpu_seconds: float


class OperatorProcess:
    """`start()` spawns and waits for the imports; `go()` starts the clock and the operator."""

    def __init__(
        self, kubeconfig: Path, log_file: Path, *settings: str, tag_ready_writes: bool = False
    ) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k != ready_writes.ENV}
        if tag_ready_writes:  # ready-label writes counted apart: see ready_writes.py
            self.env[ready_writes.ENV] = "1"
        self.argv = [
            sys.executable,
            "-m",
            "tests.bench.launcher",
            "--kubeconfig",
            str(kubeconfig),
            "--no-leader-election",
            "--metrics-port",
            str(self.port),
            "--metrics-host",
            "127.0.0.1",
            "--webhook-port",
            "0",
            *settings,
        ]
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        await asyncio.to_thread(self._spawn)

    def _spawn(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=self.env
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"imported":
            raise RuntimeError(f"operator launcher said {line!r}; see {self.log_file}")

    def go(self) -> float:
        assert self.process is not None and self.process.stdin is not None
        self.started_at = time.monotonic()
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()
        return self.started_at

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from `go()` until /readyz answers 200 (polled every 10 ms)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(self._url("/readyz")) as response:
                        if response.status == 200:
                            return time.monotonic() - self.started_at
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)
        raise TimeoutError("operator not ready")

    async def _metrics_text(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(self._url("/metrics")) as response:
            return await response.text()

    async def save_metrics(self, path: Path) -> None:
        """The operator's /metrics as they are now (message counts per actor kind, requests...)."""
        text = await self._metrics_text()
        await asyncio.to_thread(path.write_text, text)

    async def requests(self) -> dict[tuple[str, str], int]:
        """(verb, resource) -> requests so far, from the operator's own counter."""
        totals: dict[tuple[str, str], int] = {}
        for line in (await self._metrics_text()).splitlines():
            match = _SAMPLE.match(line)
            if match:
                labels = dict(_LABEL.findall(match["labels"]))
                key = (labels["verb"], labels["resource"])
                totals[key] = totals.get(key, 0) + int(float(match["value"]))
        return totals

    async def buckets(self, histogram: str, **labels: str) -> dict[float, float]:
        """Cumulative bucket counts (upper bound -> count) of one series of a histogram."""
        text = await self._metrics_text()
        found: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != f"{histogram}_bucket":
                    continue
                if all(sample.labels.get(k) == v for k, v in labels.items()):
                    found[float(sample.labels["le"])] = sample.value
        return found

    async def write_requests(self) -> dict[tuple[str, str], int]:
        """(verb, resource) -> write requests so far (every verb but get, list, watch)."""
        return {key: n for key, n in (await self.requests()).items() if key[0] not in READ_VERBS}

    async def writes(self) -> dict[str, int]:
        by_verb: dict[str, int] = {}
        for (verb, _), count in (await self.requests()).items():
            if verb not in READ_VERBS:
                by_verb[verb] = by_verb.get(verb, 0) + count
        return by_verb

    async def kernel_actors(self) -> int:
        text = await self._metrics_text()
        return int(sum(float(m["value"]) for m in map(_GAUGE.match, text.splitlines()) if m))

    def stats(self) -> ProcStats:
        assert self.process is not None
        pid = self.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
        threads = int(re.search(r"Threads:\s+(\d+)", status)[1])  # type: ignore[index]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return ProcStats(rss_kb / 1024, threads, cpu)

    def profile(self, output: Path) -> subprocess.Popen[bytes]:
        """py-spy sampling this process into `output` (collapsed stacks) until sent SIGINT."""
        assert self.process is not None
        py_spy = str(Path(sys.executable).parent / "py-spy")
        argv = [py_spy, "record", "-p", str(self.process.pid), "-o", str(output)]
        argv += ["-f", "raw", "-r", "100", "--gil", "--nonblocking"]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def save_smaps(self, path: Path) -> None:
        """The memory map with RSS per mapping, to see what the RSS is made of."""
        assert self.process is not None
        path.write_text(Path(f"/proc/{self.process.pid}/smaps").read_text())

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the operator stops its actors and watches), SIGKILL only if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
