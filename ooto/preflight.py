"""Start-up checks: a cluster set up wrongly gets one clear line naming the fix, not a retry loop.

Without them the informers would log "404 page not found" forever on a cluster without the
Module CRD, and leader election would retry a 404 forever when its namespace does not exist.
Both are set-up mistakes no retry can mend, so `ooto run` says what to do and exits.
"""

from __future__ import annotations

import asyncio
import time

from ooto.kube.backoff import Backoff
from ooto.kube.client import KubeApi
from ooto.kube.errors import AlreadyExists, ApiError, KubeError, NotFound, TransientError
from ooto.kube.resources import LEASES, MODULES
from ooto.settings import Settings

INSTALL_CRD = "ooto crds --output - | kubectl apply -f -"


class StartupError(Exception):
    """The cluster is not ready for the operator; the message is one line: cause and fix."""


class ClusterUnreachableError(StartupError):
    """The checks could not get an answer: maybe temporary (the Deployment retries us)."""


async def check_cluster(api: KubeApi, settings: Settings, *, patience: float = 30.0) -> None:
    """Raise `StartupError` for what the operator cannot work around. An API server that does
    not answer (or answers 429/5xx) is asked again with backoff for `patience` seconds first: it
    may be restarting."""
    backoff = Backoff(initial=0.5, maximum=5.0)
    deadline = time.monotonic() + patience
    while True:
        try:
            await _module_crd_installed(api, settings.watch_namespace)
            if settings.leader_election:
                namespace, lease = settings.operator_namespace, settings.lease_name
                await _lease_namespace_exists(api, namespace, lease)
            return
        except StartupError:
            raise
        except KubeError as error:
            transient = isinstance(error, TransientError) or (
                isinstance(error, ApiError) and error.retryable
            )
            if not transient or time.monotonic() > deadline:
                raise ClusterUnreachableError(
                    f"cannot check the cluster ({error}); is the API server up, and does the"
                    " kubeconfig point at it with credentials it accepts?"
                ) from error
        await asyncio.sleep(backoff.next())


async def _module_crd_installed(api: KubeApi, namespace: str | None) -> None:
    try:
        await api.list(MODULES, namespace, page_size=1, first_page_only=True)
    except NotFound as error:
        raise StartupError(
            f"the Module CRD ({MODULES.plural}.{MODULES.group}) is not installed in this cluster"
            f" ({error.status} on {MODULES.path(namespace)}): install it with `{INSTALL_CRD}`"
            " (the Helm chart installs it too)"
        ) from error


async def _lease_namespace_exists(api: KubeApi, namespace: str, name: str) -> None:
    try:
        await api.get(LEASES, name, namespace)
        return
    except NotFound:
        pass
    probe = {
        "apiVersion": LEASES.api_version,
        "kind": LEASES.kind,
        "metadata": {"name": name, "namespace": namespace},
    }
    try:
        await api.create(LEASES, probe, dry_run=True)  # 404 only when the namespace is missing
    except AlreadyExists:
        return  # created meanwhile (another replica): the namespace exists
    except NotFound as error:
        raise StartupError(
            f"the leader-election namespace {namespace} does not exist: create it"
            f" (kubectl create namespace {namespace}), or pick another with --operator-namespace"
            " (OOTO_OPERATOR_NAMESPACE), or run one replica with --no-leader-election"
        ) from error
