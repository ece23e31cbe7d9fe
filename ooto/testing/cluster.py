"""A real Kubernetes control plane on free ports: etcd, API server, controller-manager, scheduler.

No kubelets: nodes are API objects that `SimulatedKubelet` keeps alive. Two users authenticate
with static tokens: `admin` (group system:masters) and `ooto-operator` (no bindings at all, so a
test grants it exactly what the Helm chart's ClusterRole grants).

Admission is stricter than the API server's defaults where real clusters are: OpenShift's
`OwnerReferencesPermissionEnforcement` is on (blockOwnerDeletion needs `update` on the owner's
finalizers), which only users without system:masters can notice. With `audit_users`, the API
server writes an audit log (`audit_log`, JSON lines at Metadata level) of those users' requests:
what a test's operator really asked for, as the authorizer saw it.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from ooto.testing.binaries import Binaries, find_binaries
from ooto.testing.pki import make_ca, make_serving_cert, make_signing_key
from ooto.testing.processes import ManagedProcess, free_port, wait_until

ADMIN_USER = "admin"
OPERATOR_USER = "ooto-operator"
# clusterrole-aggregation fills the built-in view/edit/admin roles (and the chart's viewer in).
# disruption: PodDisruptionBudgets get their status computed, so evictions they forbid get 429 as
# on a real cluster (upgrades evict the pods that use a module).
CONTROLLERS = "daemonset,disruption,garbagecollector,job,namespace,clusterrole-aggregation"
# Controllers' client rate limits: the defaults (20 qps) would make the DaemonSet controller, not
# the operator, the bottleneck of benchmarks with hundreds of DaemonSets.
CLIENT_QPS = ["--kube-api-qps=1000", "--kube-api-burst=2000"]
# After SIGTERM the 1.20 API server waits for open watches that nobody will close; cut it short.
_GRACE = {"kube-apiserver": 1.5}
# On top of the API server's defaults; see the module docstring.
ADMISSION_PLUGINS = ("OwnerReferencesPermissionEnforcement",)
_PORT_TAKEN = "address already in use"


class ClusterStartError(RuntimeError):
    """The control plane did not become healthy; the message carries the logs' tails."""


class LocalCluster:
    """Start with `start()` or `with LocalCluster() as cluster:`; `stop()` is idempotent."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        keep_dir: bool = False,
        audit_users: Sequence[str] = (),
        admission_plugins: Sequence[str] = ADMISSION_PLUGINS,
    ) -> None:
        self.binaries = binaries or find_binaries()
        self.keep_dir = keep_dir
        self.audit_users = tuple(audit_users)
        self.admission_plugins = tuple(admission_plugins)
        self.workdir = Path(tempfile.mkdtemp(prefix="ooto-cluster-"))
        self.audit_log = self.workdir / "audit.log" if self.audit_users else None
        self.etcd_dir = _etcd_data_dir()
        self.admin_token = secrets.token_hex(16)
        self.operator_token = secrets.token_hex(16)
        self._assign_ports()
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self.operator_kubeconfig = self.workdir / "operator.kubeconfig"
        self.ca_file = self.workdir / "ca.crt"
        self.startup_seconds = 0.0
        self._processes: dict[str, ManagedProcess] = {}
        self._apiserver_argv: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        began = time.monotonic()
        for attempt in (1, 2):
            try:
                self._start_processes()
                break
            except BaseException as error:
                message = f"{error}\n{self.logs_tail()}"
                self._stop_processes()
                if attempt == 1 and _PORT_TAKEN in message and isinstance(error, Exception):
                    # Someone took a "free" port between our probe and the bind: new ports.
                    shutil.rmtree(self.etcd_dir / "member", ignore_errors=True)
                    self._assign_ports()
                    continue
                self.stop()
                if isinstance(error, Exception):
                    raise ClusterStartError(message) from error
                raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop exactly the processes this cluster started (by PID), and remove its files."""
        self._stop_processes()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def _start_processes(self) -> None:
        self._write_files()
        self._spawn("etcd", self._etcd_argv())
        self._spawn("kube-apiserver", self._apiserver_argv)
        self._spawn("kube-controller-manager", self._controller_manager_argv())
        self._spawn("kube-scheduler", self._scheduler_argv())
        self._wait_healthy(timeout=90.0)

    def _stop_processes(self) -> None:
        processes = [self._processes.pop(name) for name in reversed(list(self._processes))]
        for process in processes:
            process.terminate()  # all at once: nobody waits for a peer that is going away
        for process in processes:
            process.stop(timeout=_GRACE.get(process.name, 3.0))

    def _assign_ports(self) -> None:
        names = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")
        self.ports = {name: free_port() for name in names}
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self.etcd_endpoint = f"http://127.0.0.1:{self.ports['etcd']}"

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop_apiserver(self) -> None:
        """Stop only the API server (etcd keeps the data): clients see connection errors."""
        process = self._processes.pop("kube-apiserver", None)
        if process:
            process.stop(timeout=_GRACE["kube-apiserver"])

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start the API server again on the same port and etcd, and wait until it is ready."""
        if "kube-apiserver" not in self._processes:
            self._spawn("kube-apiserver", self._apiserver_argv)
        wait_until(
            self._apiserver_ready,
            timeout,
            "waiting for kube-apiserver /readyz",
            [self._processes["kube-apiserver"]],
        )

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def logs_tail(self, lines: int = 20) -> str:
        parts = []
        for process in self._processes.values():
            parts.append(f"--- {process.name} ({process.log_path}) ---\n{process.log_tail(lines)}")
        return "\n".join(parts)

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._processes.items() if p.pid is not None}

    # -- files -----------------------------------------------------------------------------

    def _write_files(self) -> None:
        ca = make_ca(self.workdir)  # writes self.ca_file
        serving = make_serving_cert(
            ca, self.workdir, "apiserver", dns=("localhost", "kubernetes", "kubernetes.default.svc")
        )
        signing = make_signing_key(self.workdir)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            f"{self.admin_token},{ADMIN_USER},{ADMIN_USER},system:masters\n"
            f"{self.operator_token},{OPERATOR_USER},{OPERATOR_USER}\n"
        )
        self._write_kubeconfig(self.admin_kubeconfig, ADMIN_USER, self.admin_token)
        self._write_kubeconfig(self.operator_kubeconfig, OPERATOR_USER, self.operator_token)
        self._apiserver_argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_endpoint}",
            f"--secure-port={self.ports['apiserver']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={signing.cert}",
            f"--service-account-signing-key-file={signing.key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *self._admission_and_audit_flags(),
        ]

    def _admission_and_audit_flags(self) -> list[str]:
        flags = []
        if self.admission_plugins:
            flags.append(f"--enable-admission-plugins={','.join(self.admission_plugins)}")
        if self.audit_log is not None:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(audit_policy(self.audit_users), sort_keys=False))
            # The log backend's default mode is blocking: an event is on disk before the reply.
            flags += [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}"]
        return flags

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        context = f"{user}@ooto-local"
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ooto-local",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "ooto-local", "user": user}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        process = ManagedProcess(name, argv, self.workdir / f"{name}.log")
        process.start()
        self._processes[name] = process

    def _etcd_argv(self) -> list[str]:
        return [
            str(self.binaries.etcd),
            "--name=ooto",
            f"--data-dir={self.etcd_dir}",
            f"--listen-client-urls={self.etcd_endpoint}",
            f"--advertise-client-urls={self.etcd_endpoint}",
            f"--listen-peer-urls=http://127.0.0.1:{self.ports['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.ports['etcd-peer']}",
            f"--initial-cluster=ooto=http://127.0.0.1:{self.ports['etcd-peer']}",
            "--log-level=warn",
        ]

    def _component_argv(self, binary: Path, name: str, extra: list[str]) -> list[str]:
        return [
            str(binary),
            f"--kubeconfig={self.admin_kubeconfig}",
            "--leader-elect=false",
            "--port=0",
            f"--secure-port={self.ports[name]}",
            "--bind-address=127.0.0.1",
            f"--cert-dir={self.workdir / (name + '-certs')}",
            *CLIENT_QPS,
            *extra,
        ]

    def _controller_manager_argv(self) -> list[str]:
        return self._component_argv(
            self.binaries.kube_controller_manager,
            "controller-manager",
            [f"--controllers={CONTROLLERS}"],
        )

    def _scheduler_argv(self) -> list[str]:
        return self._component_argv(self.binaries.kube_scheduler, "scheduler", [])

    # -- health ----------------------------------------------------------------------------

    def _wait_healthy(self, timeout: float) -> None:
        processes = list(self._processes.values())
        wait_until(self._apiserver_ready, timeout, "waiting for kube-apiserver /readyz", processes)
        wait_until(
            lambda: self._get(f"{self.server}/api/v1/namespaces/default", token=True) == 200,
            timeout,
            "waiting for namespace default",
            processes,
        )
        for name in ("controller-manager", "scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            wait_until(
                functools.partial(self._answers, url),
                timeout,
                f"waiting for kube-{name} /healthz",
                processes,
            )

    def _answers(self, url: str) -> bool:
        return self._get(url) == 200

    def _apiserver_ready(self) -> bool:
        return self._get(f"{self.server}/readyz", token=True) == 200

    def _get(self, url: str, token: bool = False) -> int:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if not token:  # controller-manager and scheduler serve self-signed certificates
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code
        except (OSError, ssl.SSLError):
            return 0


def audit_policy(users: Sequence[str]) -> dict[str, Any]:
    """Who asked for what (user, verb, resource, response code), for `users` only; no bodies."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": list(users)}, {"level": "None"}],
    }


def _etcd_data_dir() -> Path:
    """etcd fsyncs every write; on tmpfs that costs nothing, which keeps benchmarks about us.

    tmpfs is memory, so directories of owners that died without cleaning up (SIGKILL) are swept.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return Path(tempfile.mkdtemp(prefix="ooto-etcd-"))
    for stale in shm.glob("ooto-etcd-*"):
        if not _owner_alive(stale / "owner.pid"):
            shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix="ooto-etcd-", dir=shm))
    (directory / "owner.pid").write_text(str(os.getpid()))
    return directory


def _owner_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return True  # being created right now, or not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
