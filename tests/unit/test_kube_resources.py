"""Resource paths: every REST URL the operator builds, including the refusals."""

import pytest

from ooto.kube.resources import DAEMONSETS, LEASES, MODULES, NODES, PODS, Resource


def test_core_and_group_prefixes() -> None:
    assert NODES.path() == "/api/v1/nodes"
    assert DAEMONSETS.path("ns") == "/apis/apps/v1/namespaces/ns/daemonsets"
    assert MODULES.path("ns", "m") == "/apis/ooto.sigs.k8s.io/v1alpha1/namespaces/ns/modules/m"


def test_all_namespaces_collection_of_a_namespaced_resource() -> None:
    assert PODS.path() == "/api/v1/pods"


def test_subresource_path() -> None:
    assert MODULES.path("ns", "m", "status").endswith("/namespaces/ns/modules/m/status")
    assert NODES.path(None, "n1", "status") == "/api/v1/nodes/n1/status"


def test_api_version() -> None:
    assert NODES.api_version == "v1"
    assert LEASES.api_version == "coordination.k8s.io/v1"


@pytest.mark.parametrize(
    ("res", "namespace", "name", "sub"),
    [
        (NODES, "ns", None, None),  # cluster-scoped with a namespace
        (PODS, None, "p", None),  # namespaced object without one
        (PODS, "ns", None, "status"),  # subresource without a name
        (PODS, "ns", "../secrets", None),  # path traversal
        (PODS, "ns", "..", None),
    ],
)
def test_refuses_paths_that_would_address_something_else(
    res: Resource, namespace: str | None, name: str | None, sub: str | None
) -> None:
    with pytest.raises(ValueError):
        res.path(namespace, name, sub)


def test_names_are_quoted() -> None:
    assert NODES.path(None, "a b") == "/api/v1/nodes/a%20b"
