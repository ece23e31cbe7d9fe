"""Kubernetes resource types we talk to, and the REST paths to reach them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Resource:
    """One REST resource type: enough to build every path and an object's apiVersion/kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path of the collection (no name) or of one object (and its subresource).

        A namespaced resource without a namespace gives the all-namespaces collection.
        """
        if subresource and not name:
            raise ValueError(f"{self.plural}: a subresource needs an object name")
        if namespace and not self.namespaced:
            raise ValueError(f"{self.plural} is cluster-scoped; got namespace {namespace!r}")
        if name and self.namespaced and not namespace:
            raise ValueError(f"{self.plural} is namespaced; {name!r} needs a namespace")
        parts = [self.prefix]
        if namespace:
            parts.append(f"namespaces/{_segment(namespace)}")
        parts.append(self.plural)
        if name:
            parts.append(_segment(name))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


def _segment(value: str) -> str:
    if not value or value in (".", "..") or "/" in value:
        raise ValueError(f"not a valid path segment: {value!r}")
    return quote(value, safe="")


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True)
JOBS = Resource("batch", "v1", "jobs", "Job", namespaced=True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
MODULES = Resource("ooto.sigs.k8s.io", "v1alpha1", "modules", "Module", namespaced=True)
PREFLIGHTVALIDATIONS = Resource(
    "ooto.sigs.k8s.io", "v1alpha1", "preflightvalidations", "PreflightValidation", namespaced=False
)
BUILDCONFIGS = Resource("build.openshift.io", "v1", "buildconfigs", "BuildConfig", namespaced=True)
BUILDS = Resource("build.openshift.io", "v1", "builds", "Build", namespaced=True)
CRDS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
