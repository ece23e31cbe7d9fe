"""Kubernetes I/O: REST client, informers, writer, event recorder, leader election.

Objects are plain JSON dicts as the API server sends them; no generated model classes.
"""

from ooto.kube.client import (
    FIELD_MANAGER,
    JsonObj,
    KubeApi,
    ObjectList,
    RawEvent,
    RequestObserver,
)
from ooto.kube.config import KubeconfigError, make_api_client, resolve_kubeconfig
from ooto.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    ServerError,
    TransientError,
)
from ooto.kube.events import EventObserver, EventRecorder
from ooto.kube.informer import Informer, InformerObserver, WatchEvent
from ooto.kube.leader import LeaderElector
from ooto.kube.resources import (
    BUILDCONFIGS,
    BUILDS,
    CONFIGMAPS,
    CRDS,
    DAEMONSETS,
    EVENTS,
    JOBS,
    LEASES,
    MODULES,
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    Resource,
)
from ooto.kube.writer import Writer

__all__ = [
    "BUILDCONFIGS",
    "BUILDS",
    "CONFIGMAPS",
    "CRDS",
    "DAEMONSETS",
    "EVENTS",
    "FIELD_MANAGER",
    "JOBS",
    "LEASES",
    "MODULES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "SECRETS",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "EventObserver",
    "EventRecorder",
    "Forbidden",
    "Gone",
    "Informer",
    "InformerObserver",
    "Invalid",
    "JsonObj",
    "KubeApi",
    "KubeError",
    "KubeconfigError",
    "LeaderElector",
    "NotFound",
    "ObjectList",
    "RawEvent",
    "RequestObserver",
    "Resource",
    "ServerError",
    "TransientError",
    "WatchEvent",
    "Writer",
    "make_api_client",
    "resolve_kubeconfig",
]
