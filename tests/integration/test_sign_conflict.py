"""Two Modules sign the same image with two certificates (KMM issue 1245's class): each would
see the other's fingerprint on the image and take it for a key rotation, re-signing in turn
(a new digest, every node rolled, each time). The image's signed-for label tells them apart:
the second Module reports SignConflict and never signs, until the first is deleted or no
longer signs that image; then it signs once. Real Buildah, real sign-file
(tests/integration/test_signing.py's helpers).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ooto.domain.signing import SIGNED_BY_LABEL, SIGNED_FOR_LABEL
from ooto.testing.kubelet import SimulatedKubelet
from ooto.testing.registry_server import RegistryServer
from ooto.testing.rest import KubeRest
from tests.integration.conftest import OperatorFactory, RunningOperator
from tests.integration.scenario_support import (
    apply_module,
    condition,
    delete_module,
    events,
    eventually,
    kernel_status,
    module_manifest,
    patch_module,
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


async def two_key_pairs(admin_rest: KubeRest, namespace: str, tmp_path: Path) -> None:
    """Secrets a-key/a-cert and b-key/b-cert: two signing identities."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for who in ("a", "b"):
        key, _, cert_der = key_pair(tmp_path, who)
        await admin_rest.post(path, secret(f"{who}-key", "key", key))
        await admin_rest.post(path, secret(f"{who}-cert", "cert", cert_der))


async def signing_operator(
    start_operator: OperatorFactory, namespace: str, built: dict[str, str]
) -> RunningOperator:
    """Buildah builds and signs, certificate Secrets read again every second."""
    return await start_operator(
        watch_namespace=namespace,
        build_backend="buildah",
        signer_image=built["signer"],
        sign_secrets_recheck_seconds=1,
        backoff_initial_seconds=1,
        backoff_max_seconds=2,
    )


def sign_of(who: str) -> dict[str, object]:
    return {**SIGN, "keySecret": {"name": f"{who}-key"}, "certSecret": {"name": f"{who}-cert"}}


def signs_succeeded(operator: RunningOperator) -> float:
    found = {s[1]["outcome"]: s[2] for s in _samples(operator, "ooto_sign_jobs")}
    return found.get("succeeded", 0.0)


async def test_two_modules_signing_one_image_with_two_keys_conflict_instead_of_looping(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],  # noqa: F811
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    await two_key_pairs(admin_rest, namespace, tmp_path)
    await real_builds.add_nodes([("sc1-a", KERNEL, GPU)])
    operator = await signing_operator(start_operator, namespace, images)
    repo = f"ooto-test/conflict-{secrets.token_hex(3)}"
    mapping = signed_mapping(registry, repo, images["base"])

    def signs() -> float:
        return signs_succeeded(operator)

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


async def test_a_module_that_no_longer_signs_the_image_leaves_it_to_the_waiting_one(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],  # noqa: F811
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    """A signed the image and B waits (SignConflict). A stays but stops signing that image (its
    selector no longer selects the node, so it has no kernel that maps to it). Reproduced before
    the fix: B kept SignConflict for as long as A existed. B must take the image over, signing
    it once, and its SignConflict must clear; A, selecting the node again, is the one that waits
    (no re-signing in turn)."""
    await two_key_pairs(admin_rest, namespace, tmp_path)
    await real_builds.add_nodes([("sc2-a", KERNEL, GPU)])
    operator = await signing_operator(start_operator, namespace, images)
    repo = f"ooto-test/handover-{secrets.token_hex(3)}"
    mapping = signed_mapping(registry, repo, images["base"])

    def signs() -> float:
        return signs_succeeded(operator)

    async def signed_for() -> str:
        return str((await registry.image_config(repo, TAG))["config"]["Labels"][SIGNED_FOR_LABEL])

    await apply_module(admin_rest, namespace, module_manifest("a", [mapping], sign=sign_of("a")))
    await eventually(lambda: ready_module(admin_rest, namespace, "a"), timeout=180)
    await apply_module(admin_rest, namespace, module_manifest("b", [mapping], sign=sign_of("b")))
    await eventually(
        lambda: not_ready_because(admin_rest, namespace, "b", "SignConflict"), timeout=120
    )
    assert signs() == 1.0

    # A no longer selects the node: it has no kernel left that maps to the image.
    elsewhere = {"spec": {"selector": {"ooto-test/none": "x"}}}  # a merge patch: GPU stays
    await patch_module(admin_rest, namespace, "a", elsewhere)
    b = await eventually(lambda: ready_module(admin_rest, namespace, "b"), timeout=180)
    assert condition(b, "Ready")["reason"] != "SignConflict"
    assert await signed_for() == f"{namespace}/b"
    assert signs() == 2.0

    # A selects the node again: now A waits for B, the image is not signed again.
    await patch_module(admin_rest, namespace, "a", {"spec": {"selector": {"ooto-test/none": None}}})
    a = await eventually(
        lambda: not_ready_because(admin_rest, namespace, "a", "SignConflict"), timeout=120
    )
    assert f"Module {namespace}/b signs the same image" in condition(a, "Ready")["message"]
    assert signs() == 2.0 and await signed_for() == f"{namespace}/b"
    assert await ready_module(admin_rest, namespace, "b") is not None


async def test_two_kernels_of_one_module_resolving_to_one_image_with_two_keys_do_not_take_turns(
    admin_rest: KubeRest,
    real_builds: SimulatedKubelet,  # noqa: F811
    registry: RegistryServer,
    images: dict[str, str],  # noqa: F811
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    """Two regexp mappings of one Module give two kernels the same image (`${KERNEL_XYZ}`), with
    two different key pairs: validation cannot see it, only the kernels can. Reproduced before
    the fix: both kernels signed the image, each taking the other's signature for a key rotation
    of its own Module. The second kernel (later mapping) must wait with SignCollision (condition
    and one Event) and sign nothing; once the first kernel leaves, it signs, and the first one,
    back, waits in turn; with the same Secrets both run one signature."""
    await two_key_pairs(admin_rest, namespace, tmp_path)
    other = "6.1.0-18-arm64"
    await real_builds.add_nodes([("sc3-a", KERNEL, GPU), ("sc3-b", other, GPU)])
    operator = await signing_operator(start_operator, namespace, images)
    repo = f"ooto-test/collision-{secrets.token_hex(3)}"
    base = signed_mapping(registry, repo, images["base"])
    image = f"{registry.host}/{repo}:${{KERNEL_XYZ}}"

    def signed(regexp: str, who: str) -> dict[str, object]:
        sign = {
            "keySecret": {"name": f"{who}-key"},
            "certSecret": {"name": f"{who}-cert"},
            "filesToSign": ["/opt/lib/modules/*/*.ko"],  # one image for both kernels
        }
        fields = {k: v for k, v in base.items() if k != "literal"}
        return {**fields, "regexp": regexp, "containerImage": image, "sign": sign}

    def signs() -> float:
        return signs_succeeded(operator)

    def secret_gets() -> float:
        return operator.metrics.requests_total(verb="get", resource="secrets")

    mappings = [signed("rpi", "a"), signed("arm64$", "b")]
    await apply_module(admin_rest, namespace, module_manifest("m", mappings))

    async def held() -> dict[str, object] | None:
        module = await not_ready_because(admin_rest, namespace, "m", "SignCollision")
        kernels = kernel_status(module) if module else {}
        ready = kernels.get(KERNEL, {}).get("phase") == "Ready"
        return module if ready and kernels[other]["reason"] == "SignCollision" else None

    module = await eventually(held, timeout=180)
    message = kernel_status(module)[other]["message"]
    assert "spec.kernelMappings[1] gives" in message and f"for kernel {KERNEL}" in message
    assert "b-key" in message and "a-key" in message
    (event,) = await eventually(lambda: events(admin_rest, namespace, "SignCollision"))
    assert event["involvedObject"]["name"] == "m" and other in event["message"]
    assert signs() == 1.0
    digest = await registry.digest(repo, "6.1.0")
    labels = (await registry.image_config(repo, "6.1.0"))["config"]["Labels"]
    assert labels[SIGNED_FOR_LABEL] == f"{namespace}/m"
    a_cert = labels[SIGNED_BY_LABEL]

    # The holder's kernel leaves the Module: the waiting kernel signs the image (once, with its
    # own key). Back, the first kernel is the one that waits: the image is not signed in turn.
    await real_builds.set_labels("sc3-a", {"ooto-test/gpu": None})
    await eventually(lambda: ready_module(admin_rest, namespace, "m"), timeout=120)
    assert signs() == 2.0 and await registry.digest(repo, "6.1.0") != digest

    async def first_waits() -> dict[str, object] | None:
        module = await not_ready_because(admin_rest, namespace, "m", "SignCollision")
        kernels = kernel_status(module) if module else {}
        return module if kernels.get(KERNEL, {}).get("reason") == "SignCollision" else None

    await real_builds.set_labels("sc3-a", GPU)
    module = await eventually(first_waits, timeout=60)
    assert f"for kernel {other}" in kernel_status(module)[KERNEL]["message"]
    assert kernel_status(module)[other]["phase"] == "Ready"
    assert signs() == 2.0

    # The same Secrets for both: signed again with that key pair, and both kernels run it.
    same = [signed("rpi", "a"), signed("arm64$", "a")]
    await patch_module(admin_rest, namespace, "m", {"spec": {"kernelMappings": same}})
    await eventually(lambda: ready_module(admin_rest, namespace, "m"), timeout=120)
    labels = (await registry.image_config(repo, "6.1.0"))["config"]["Labels"]
    assert labels[SIGNED_BY_LABEL] == a_cert
    final, gets = await registry.digest(repo, "6.1.0"), secret_gets()

    async def rechecked() -> bool:  # evidence that both kernels check their signature again
        return secret_gets() >= gets + 6

    await eventually(rechecked, timeout=60)
    assert await registry.digest(repo, "6.1.0") == final, "signed in turn"
    assert await ready_module(admin_rest, namespace, "m") is not None
