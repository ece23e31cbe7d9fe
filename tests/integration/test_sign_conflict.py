"""Two Modules sign the same image with two certificates (KMM issue 1245's class): each would
see the other's fingerprint on the image and take it for a key rotation, re-signing in turn
(a new digest, every node rolled, each time). The image's signed-for label tells them apart:
the second Module reports SignConflict and never signs, until the first is deleted; then it
signs once. Real Buildah, real sign-file (tests/integration/test_signing.py's helpers).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ooto.domain.signing import SIGNED_BY_LABEL, SIGNED_FOR_LABEL
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory
from tests.integration.scenario_support import (
    apply_module,
    condition,
    delete_module,
    events,
    eventually,
    module_manifest,
    ready_module,
)
from tests.integration.test_builds_buildah import GPU, real_builds  # noqa: F401
from tests.integration.test_builds_operator import not_ready_because
from tests.integration.test_signing import (  # noqa: F401
    KERNEL,
    SIGN,
    _samples,
    images,
    key_pair,
    secret,
    signed_mapping,
)

TAG = "6.1.0-rpi7-rpi-v8_"


async def test_two_modules_signing_one_image_with_two_keys_conflict_instead_of_looping(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],  # noqa: F811
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for who in ("a", "b"):
        key, _, cert_der = key_pair(tmp_path, who)
        await admin_rest.post(path, secret(f"{who}-key", "key", key))
        await admin_rest.post(path, secret(f"{who}-cert", "cert", cert_der))
    await real_builds.add_nodes([("sc1-a", KERNEL, GPU)])
    operator = await start_operator(
        watch_namespace=namespace,
        build_backend="buildah",
        signer_image=images["signer"],
        sign_secrets_recheck_seconds=1,
        backoff_initial_seconds=1,
        backoff_max_seconds=2,
    )
    repo = f"ooto-test/conflict-{secrets.token_hex(3)}"
    mapping = signed_mapping(registry, repo, images["base"])

    def sign_of(who: str) -> dict[str, object]:
        return {**SIGN, "keySecret": {"name": f"{who}-key"}, "certSecret": {"name": f"{who}-cert"}}

    def signs() -> float:
        return {s[1]["outcome"]: s[2] for s in _samples(operator, "ooto_sign_jobs")}["succeeded"]

    async def labels() -> dict[str, str]:
        return dict((await registry.image_config(repo, TAG))["config"]["Labels"])

    async def several_checks_later() -> None:
        """Evidence that checks go on: the certificate Secrets are read again and again."""
        gets = operator.metrics.requests_total(verb="get", resource="secrets")

        async def rechecked() -> bool:
            return operator.metrics.requests_total(verb="get", resource="secrets") >= gets + 6

        await eventually(rechecked, timeout=60)

    await apply_module(admin_rest, namespace, module_manifest("a", [mapping], sign=sign_of("a")))
    await eventually(lambda: ready_module(admin_rest, namespace, "a"), timeout=180)
    digest = await registry.digest(repo, TAG)
    assert (await labels())[SIGNED_FOR_LABEL] == f"{namespace}/a"
    assert signs() == 1.0

    await apply_module(admin_rest, namespace, module_manifest("b", [mapping], sign=sign_of("b")))
    b = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "b", "SignConflict"), timeout=120
    )
    assert f"Module {namespace}/a signs the same image" in condition(b, "Ready")["message"]
    (event,) = await eventually(lambda: events(admin_rest, namespace, "SignConflict"), timeout=30)
    assert event["involvedObject"]["name"] == "b" and f"{namespace}/a" in event["message"]
    await several_checks_later()
    assert signs() == 1.0, "B signed over A's image"
    assert await registry.digest(repo, TAG) == digest, "the image changed under Module a"
    assert await ready_module(admin_rest, namespace, "a") is not None
    assert len(await events(admin_rest, namespace, "SignConflict")) == 1  # no Event per retry

    # A is gone: B takes the image over, signing it once, and keeps it.
    a_label = (await labels())[SIGNED_BY_LABEL]
    await delete_module(admin_rest, namespace, "a")
    await eventually(lambda: ready_module(admin_rest, namespace, "b"), timeout=180)
    taken = await labels()
    assert taken[SIGNED_FOR_LABEL] == f"{namespace}/b" and taken[SIGNED_BY_LABEL] != a_label
    assert signs() == 2.0
    new_digest = await registry.digest(repo, TAG)
    await several_checks_later()
    assert signs() == 2.0 and await registry.digest(repo, TAG) == new_digest
