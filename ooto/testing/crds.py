"""Install ooto's generated CRDs (every file in crds/) on a local control plane, and wait until the
API server serves them. Used by tests, benchmarks and `ooto demo`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from ooto.testing.rest import KubeRest, RestError
from ooto.testing.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def crd_manifests() -> list[dict[str, Any]]:
    """The committed CRDs, or freshly generated ones when running from an installed package."""
    if CRD_DIR.is_dir() and any(CRD_DIR.glob("*.yaml")):
        return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))]
    from ooto.domain.api.crd import write_crds

    with tempfile.TemporaryDirectory() as directory:
        return [yaml.safe_load(p.read_text()) for p in write_crds(directory)]


async def install_crds(rest: KubeRest, timeout: float = 30.0) -> list[str]:
    """Create every CRD (one that exists is kept) and wait until each is Established."""
    names = []
    for body in crd_manifests():
        try:
            await rest.post(CRDS_PATH, body)
        except RestError as error:
            if error.status != 409:
                raise
        names.append(str(body["metadata"]["name"]))
    for name in names:

        async def established(name: str = name) -> bool:
            got = await rest.get(f"{CRDS_PATH}/{name}")
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            )

        await eventually(established, timeout, what=f"CRD {name} to be Established")
    return names
