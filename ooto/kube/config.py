"""Where the operator's Kubernetes credentials come from, as kubectl and controller-runtime decide.

`--kubeconfig` first, then `KUBECONFIG` (a list of files separated by `os.pathsep`, merged as
kubectl merges them; missing files in the list are skipped), then the pod's service account
(in-cluster), then `~/.kube/config`. A kubeconfig that cannot be used is a `KubeconfigError` whose
message names the cause and the fix, in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException

IN_CLUSTER = None
"""`resolve_kubeconfig`'s answer for "use the pod's service account"."""

_FIX = "pass --kubeconfig FILE or set KUBECONFIG to a valid kubeconfig"


class KubeconfigError(Exception):
    """The credentials cannot be loaded; the message is one line with the cause and the fix."""


def resolve_kubeconfig(flag: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The kubeconfig to load (one path, or several joined by `os.pathsep`), or `IN_CLUSTER`."""
    if flag:
        if not Path(flag).expanduser().is_file():
            raise KubeconfigError(f"kubeconfig {flag} (--kubeconfig) is not a file; {_FIX}")
        return flag
    listed = [path for path in environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    if listed:
        present = [path for path in listed if Path(path).expanduser().is_file()]
        if not present:
            raise KubeconfigError(f"no file of KUBECONFIG={environ['KUBECONFIG']} exists; {_FIX}")
        return os.pathsep.join(present)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER
    default = Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"
    if default.is_file():
        return str(default)
    raise KubeconfigError(f"not in a pod and no kubeconfig found (~/.kube/config); {_FIX}")


async def make_api_client(kubeconfig: str | None, *, max_connections: int = 100) -> ApiClient:
    """An `ApiClient` from a kubeconfig (paths joined by `os.pathsep`), or in-cluster when None."""
    configuration = Configuration()
    try:
        if kubeconfig is None:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
    except (ConfigException, yaml.YAMLError, OSError, ValueError, LookupError, TypeError) as error:
        # A kubeconfig of the wrong shape fails inside the loader with Key/Type errors.
        where = "the in-cluster config" if kubeconfig is None else f"kubeconfig {kubeconfig}"
        cause = _cause(error)
        raise KubeconfigError(f"{where} cannot be used ({cause}); {_FIX}") from error
    # Each open watch holds one connection for its whole life (HTTP/1.1).
    configuration.connection_pool_maxsize = max_connections
    api_client = ApiClient(configuration=configuration)
    _skip_netrc_lookups(api_client)
    return api_client


def _cause(error: Exception) -> str:
    """One line; for YAML, only the position: PyYAML's message quotes the line (a token?)."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        problem = getattr(error, "problem", None) or "invalid"
        return f"not valid YAML: {problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())[:200] or type(error).__name__


_PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY")


def _skip_netrc_lookups(api_client: ApiClient) -> None:
    """Stop aiohttp from reading ~/.netrc in a worker thread before every request.

    kubernetes-asyncio's session trusts the environment, which makes aiohttp look for netrc
    credentials per request (an executor round trip each: two GIL hand-offs that queue behind
    busy actor threads). We authenticate with the kubeconfig only, so when no proxy variable asks
    for the environment to be trusted, the session stops trusting it.
    """
    if any(os.environ.get(name) for name in (*_PROXY_VARIABLES, "ALL_PROXY")):
        return
    session = api_client.rest_client.pool_manager
    session._trust_env = False  # aiohttp has no public setter; the constructor hard-codes True
