"""Which build backend this cluster gets: by setting, or by API discovery ("auto")."""

from __future__ import annotations

import logging
from typing import Literal

from ooto.builds.backends import BuildahJobBackend, BuildConfigBackend, KanikoJobBackend
from ooto.builds.buildah import BuildahOptions
from ooto.builds.cluster import ClusterReadError, ClusterReads, KubeApiReads
from ooto.builds.kaniko import KanikoOptions
from ooto.builds.model import BuildBackend
from ooto.kube.client import KubeApi
from ooto.kube.resources import BUILDCONFIGS, BUILDS
from ooto.settings import Settings

log = logging.getLogger(__name__)

BackendSetting = Literal["auto", "buildah", "kaniko", "buildconfig"]


async def select_backend(
    api: KubeApi, settings: Settings, reads: ClusterReads | None = None
) -> BuildBackend:
    """The backend `settings.build_backend` names; `reads` defaults to `KubeApiReads(api)`."""
    kaniko = KanikoOptions(
        executor_image=settings.kaniko_image,
        active_deadline_seconds=settings.build_deadline_seconds,
    )
    buildah = BuildahOptions(
        image=settings.buildah_image, active_deadline_seconds=settings.build_deadline_seconds
    )
    return await backend_for(
        api,
        settings.build_backend,
        reads or KubeApiReads(api),
        kaniko=kaniko,
        buildah=buildah,
        deadline_seconds=settings.build_deadline_seconds,
    )


async def backend_for(
    api: KubeApi,
    setting: BackendSetting,
    reads: ClusterReads,
    *,
    kaniko: KanikoOptions | None = None,
    buildah: BuildahOptions | None = None,
    deadline_seconds: int = 3600,
) -> BuildBackend:
    """ "auto" picks BuildConfig when build.openshift.io/v1 serves buildconfigs and builds
    (OpenShift), Buildah otherwise. Raises ClusterReadError when "auto" cannot ask discovery."""
    if setting == "kaniko":
        return KanikoJobBackend(api, reads, kaniko)
    if setting == "buildah":
        return BuildahJobBackend(api, reads, buildah)
    try:
        served = await reads.served_resources(BUILDCONFIGS.group, BUILDCONFIGS.version)
    except ClusterReadError:
        if setting == "auto":
            raise
        served = None  # "buildconfig": find out about instantiate at the first build
    instantiate = None if served is None else f"{BUILDCONFIGS.plural}/instantiate" in served
    if setting == "buildconfig" or (
        served is not None and {BUILDCONFIGS.plural, BUILDS.plural} <= served
    ):
        log.info("build backend: BuildConfig (instantiate served: %s)", instantiate)
        return BuildConfigBackend(
            api, reads, instantiate=instantiate, deadline_seconds=deadline_seconds
        )
    log.info("build backend: Buildah Job (build.openshift.io/v1 is not served)")
    return BuildahJobBackend(api, reads, buildah)
