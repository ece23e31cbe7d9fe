"""The load digest changes exactly when what a node loads changes (issue 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ooto.domain.api.module import Module
from ooto.domain.digest import load_digest, load_inputs
from ooto.domain.kernels import plan_kernel
from ooto.domain.render import RenderOptions

KERNEL = "6.1.0-18-amd64"
BASE: dict[str, Any] = {
    "selector": {"gpu": "true"},
    "moduleLoader": {"name": "x", "image": "x", "env": [{"name": "A", "value": "1"}]},
    "modprobe": {"moduleName": "m", "parameters": ["debug=1"], "firmwarePath": "/fw"},
    "kernelMappings": [{"regexp": ".", "containerImage": "r.example/m:${KERNEL_FULL_VERSION}"}],
    "additionalVolumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
}


def digest(options: RenderOptions | None = None, **changes: Any) -> str:
    spec = {**BASE, **changes}
    module = Module.model_validate({"metadata": {"name": "m", "uid": "u"}, "spec": spec})
    plan = plan_kernel(module, KERNEL)
    assert plan is not None
    return load_digest(module, plan, options or RenderOptions())


@pytest.mark.parametrize(
    "change",
    [
        {"modprobe": {**BASE["modprobe"], "parameters": ["debug=2"]}},
        {"modprobe": {**BASE["modprobe"], "inTreeModulesToRemove": ["nouveau"]}},
        {"modprobe": {**BASE["modprobe"], "dirName": "/usr/local"}},
        {"kernelMappings": [{"regexp": ".", "containerImage": "r.example/m:other"}]},
        {"moduleLoader": {"name": "x", "image": "x", "env": [{"name": "A", "value": "2"}]}},
        {"moduleLoader": {**BASE["moduleLoader"], "securityContext": {"runAsUser": 0}}},
        {
            "moduleLoader": {
                **BASE["moduleLoader"],
                "volumeMounts": [{"name": "cfg", "mountPath": "/c"}],
            }
        },
        {"additionalVolumes": []},
    ],
)
def test_what_is_loaded_changes_the_digest(change: dict[str, Any]) -> None:
    assert digest(**change) != digest()


@pytest.mark.parametrize(
    "change",
    [
        {"selector": {"gpu": "yes"}},
        {"tolerations": [{"operator": "Exists"}]},
        {"priorityClassName": "other"},
        {"serviceAccountName": "loader"},
        {"upgradePolicy": {"maxParallel": 3, "mode": "Manual"}},
        {"devicePlugin": {"name": "dp", "image": "r.example/dp:1"}},
        {"imageRepoSecret": {"name": "pull"}},
        {"moduleLoader": {**BASE["moduleLoader"], "resources": {"limits": {"cpu": "1"}}}},
    ],
)
def test_what_does_not_reach_the_kernel_leaves_the_digest_alone(change: dict[str, Any]) -> None:
    assert digest(**change) == digest()


def test_a_resolved_image_digest_replaces_the_tag() -> None:
    module = Module.model_validate({"metadata": {"name": "m"}, "spec": BASE})
    plan = plan_kernel(module, KERNEL)
    assert plan is not None
    pinned = load_digest(module, plan, image="r.example/m@sha256:" + "0" * 64)
    assert pinned != load_digest(module, plan)
    assert (
        load_inputs(module, plan, image="r.example/m@sha256:1")["image"] == "r.example/m@sha256:1"
    )


def test_the_digest_covers_the_generated_scripts() -> None:
    module = Module.model_validate({"metadata": {"name": "m"}, "spec": BASE})
    plan = plan_kernel(module, KERNEL)
    assert plan is not None
    loader = load_inputs(module, plan)["loader"]
    assert "modprobe -d /opt m debug=1" in loader["command"][2]
    assert "modprobe -r -d /opt m" in loader["lifecycle"]["preStop"]["exec"]["command"][2]


def test_the_digest_is_the_same_in_another_process() -> None:
    """No dict order, hash seed or object identity leaks into it."""
    code = "from tests.unit.test_digest import digest; print(digest())"
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert other.stdout.strip() == digest()
    assert digest().startswith("sha256:") and len(digest()) == len("sha256:") + 64
