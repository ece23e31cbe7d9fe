"""`ooto run` as a new user meets it: where its credentials come from, and one clear line (cause
and fix, no traceback) for each set-up mistake no retry can mend.

- `--kubeconfig` first, else `KUBECONFIG` (a colon-separated list, as kubectl reads it).
- A kubeconfig that does not exist or cannot be used: exit 2.
- A cluster without the Module CRD: exit 2, naming the command that installs it; that command,
  run as printed, makes the next start work. (On a private control plane: the session's has
  the CRD, and removing it would break every other test.)
- A leader-election namespace that does not exist: exit 2, naming it and the ways out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ooto.preflight import INSTALL_CRD
from ooto.testing.binaries import Binaries
from ooto.testing.cluster import LocalCluster
from tests.integration.operator_process import OperatorProcess, free_port
from tests.integration.scenario_support import eventually

RUN = [sys.executable, "-m", "ooto.cli", "run", "--metrics-host=127.0.0.1", "--log-format=text"]


def run_to_exit(*flags: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Exit code and stderr lines of `ooto run FLAGS` (it must exit by itself within 60 s)."""
    done = subprocess.run(
        [*RUN, f"--metrics-port={free_port()}", *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stderr.strip().splitlines()


def one_clear_line(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_a_kubeconfig_that_does_not_exist_is_one_line_and_exit_2() -> None:
    code, lines = run_to_exit("--kubeconfig=/nonexistent")
    line = one_clear_line(lines)
    assert code == 2
    assert "/nonexistent" in line and "is not a file" in line and "KUBECONFIG" in line


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        ("clusters: [unclosed\n  token: s3cret-token\n", "not valid YAML"),
        ("apiVersion: v1\nkind: Config\nclusters: []\n", "current-context"),
    ],
)
def test_a_broken_kubeconfig_is_one_line_and_exit_2(
    tmp_path: Path, content: str, cause: str
) -> None:
    broken = tmp_path / "broken.kubeconfig"
    broken.write_text(content)
    code, lines = run_to_exit(f"--kubeconfig={broken}")
    line = one_clear_line(lines)
    assert code == 2 and str(broken) in line and cause in line
    assert "s3cret" not in line  # a YAML error never quotes the file


def start(flags: list[str], env: dict[str, str], log: Path) -> OperatorProcess:
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*RUN, f"--metrics-port={port}", *flags],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    return OperatorProcess("ooto", process, port, log)


async def ready(replica: OperatorProcess) -> bool:
    assert replica.alive(), replica.log_tail()
    return (await replica.get("/readyz"))[0] == 200


async def test_kubeconfig_comes_from_the_kubeconfig_list_when_no_flag_is_given(
    cluster: LocalCluster, crd: str, namespace: str, tmp_path: Path
) -> None:
    listed = f"{tmp_path}/missing.kubeconfig:{cluster.admin_kubeconfig}"  # kubectl skips missing
    env = {"KUBECONFIG": listed, "KUBERNETES_SERVICE_HOST": ""}
    replica = start(["--no-leader-election", f"--watch-namespace={namespace}"], env, tmp_path / "o")
    try:
        await eventually(lambda: ready(replica), timeout=60)
    finally:
        assert await replica.stop() == 0, replica.log_tail()


@pytest.fixture(scope="module")
def bare_cluster(private_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """A control plane without the Module CRD (its start-up time is printed)."""
    print(f"\nbare cluster up in {private_cluster.startup_seconds:.1f}s")
    yield private_cluster


async def test_a_cluster_without_the_crd_says_how_to_install_it_and_that_works(
    bare_cluster: LocalCluster, tmp_path: Path
) -> None:
    kubeconfig = str(bare_cluster.admin_kubeconfig)
    began = time.monotonic()
    code, lines = run_to_exit(f"--kubeconfig={kubeconfig}", "--no-leader-election")
    line = one_clear_line(lines)
    assert code == 2 and "Module CRD" in line and f"`{INSTALL_CRD}`" in line
    print(f"\nexit after {time.monotonic() - began:.1f}s: {line}")

    # The fix, exactly as printed (this repository's ooto and kubectl on PATH).
    kubectl = Binaries.expected().kubectl
    path = f"{Path(sys.executable).parent}:{kubectl.parent}:{os.environ['PATH']}"
    applied = await asyncio.to_thread(
        subprocess.run,
        INSTALL_CRD,
        check=False,
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path, "KUBECONFIG": kubeconfig},
    )
    assert applied.returncode == 0, applied.stderr

    async def starts() -> bool:  # the CRD takes a moment to be served
        replica = start([f"--kubeconfig={kubeconfig}", "--no-leader-election"], {}, tmp_path / "o")
        try:
            return bool(await eventually(lambda: ready(replica), timeout=30))
        except AssertionError:
            return False
        finally:
            await replica.stop()

    assert await eventually(starts, timeout=90, interval=1)


def test_a_missing_leader_election_namespace_is_one_line_naming_it(
    cluster: LocalCluster, crd: str
) -> None:
    code, lines = run_to_exit(
        f"--kubeconfig={cluster.admin_kubeconfig}", "--operator-namespace=no-such-namespace"
    )
    line = one_clear_line(lines)
    assert code == 2
    assert "no-such-namespace does not exist" in line
    assert "kubectl create namespace no-such-namespace" in line and "--operator-namespace" in line
