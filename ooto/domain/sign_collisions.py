"""One image, two signers within one Module: two kernel mappings that give the same signed image
different sign Secrets (key or certificate). Each kernel would find the other's fingerprint on
the image, signed for its own Module, take it for a key rotation and sign again: a new digest and
every node rolled, in turn, for ever. (Two Modules doing so is `SignConflict`, sign_flow.py.)

Two ways to meet it, pure:

- `static_collisions(module)`: seen without a kernel, where a mapping's image does not depend on
  the kernel (a template with no kernel variable, or a `literal` mapping resolved for its own
  kernel). The Module is refused: `ooto.domain.validation` (webhook, `InvalidSpec`, `ooto
  render`).
- `waiting_kernels(fresh, running)` (the supervisor, each planning pass) and under it
  `kernel_collisions(plans, incumbents)`: only kernels tell (two regexps whose variables resolve
  to one image for two kernels). One sign identity keeps the image: that of a kernel whose actor
  already signs it with that identity, else that of the first mapping in list order (then the
  kernel's name); the kernels of any other identity wait, reported as `SignCollision` (a
  condition reason and an Event), and are planned again whenever the kernels or the spec change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from ooto.domain.api.module import Module, Sign
from ooto.domain.kernels import KernelPlan, SpecError, mapping_path, plan_kernel
from ooto.domain.signing import SignPlan
from ooto.domain.variables import (
    MOD_NAME,
    MOD_NAMESPACE,
    TemplateError,
    substitute,
    tag_safe,
    template_variables,
)

SignIdentity = tuple[str, str, str, str]
"""(key Secret, its key, certificate Secret, its key): what makes two signatures differ."""


def identity_of(sign: Sign | SignPlan) -> SignIdentity:
    if isinstance(sign, SignPlan):
        return (sign.key_secret, sign.key_key, sign.cert_secret, sign.cert_key)
    return (sign.key_secret.name, sign.key_secret.key, sign.cert_secret.name, sign.cert_secret.key)


def describe_identity(identity: SignIdentity) -> str:
    """Secret names and keys only: never their content."""
    key_secret, key_key, cert_secret, cert_key = identity
    return f"keySecret {key_secret}/{key_key}, certSecret {cert_secret}/{cert_key}"


def static_image(module: Module, index: int) -> str | None:
    """The image mapping `index` gives whatever the kernel, or None when only a kernel can say
    (or when it is unusable, which other checks report)."""
    mapping = module.spec.kernel_mappings[index]
    if mapping.literal is not None:
        try:  # an earlier mapping may take its kernel (then this one never applies to it)
            plan = plan_kernel(module, mapping.literal)
        except SpecError:  # a bad regexp, a bad template: other checks report it
            return None
        return plan.image if plan is not None and plan.mapping_index == index else None
    try:
        names = set(template_variables(mapping.container_image))
    except TemplateError:
        return None
    if names - {MOD_NAME, MOD_NAMESPACE}:
        return None
    values = {MOD_NAME: module.metadata.name, MOD_NAMESPACE: module.metadata.namespace}
    return substitute(mapping.container_image, values, tag_safe)


def _sign_path(module: Module, index: int) -> str:
    own = module.spec.kernel_mappings[index].sign is not None
    return f"{mapping_path(index)}.sign" if own else "spec.sign"


def static_collisions(module: Module) -> Iterator[tuple[str, str]]:
    """(field path, message) for each mapping whose kernel-independent image an earlier mapping
    gives too, signed with other Secrets."""
    first: dict[str, tuple[int, SignIdentity]] = {}
    for index, mapping in enumerate(module.spec.kernel_mappings):
        sign = mapping.sign or module.spec.sign
        image = static_image(module, index) if sign is not None else None
        if sign is None or image is None:
            continue
        identity = identity_of(sign)
        earlier = first.setdefault(image, (index, identity))
        if earlier[1] == identity:
            continue
        other = earlier[0]
        yield (
            f"{mapping_path(index)}.containerImage",
            f"gives the image {image}, as {mapping_path(other)}.containerImage does, but signs "
            f"it with other Secrets ({_sign_path(module, index)}: {describe_identity(identity)}; "
            f"{_sign_path(module, other)}: {describe_identity(earlier[1])}): ooto would sign "
            "that image with each in turn. Give the mappings different containerImages or the "
            "same keySecret and certSecret",
        )


@dataclass(frozen=True)
class Collision:
    """A kernel that waits: `holder` signs the same image with another identity."""

    kernel: str
    holder: KernelPlan

    def message(self, plan: KernelPlan) -> str:
        assert plan.sign is not None and self.holder.sign is not None
        return (
            f"{mapping_path(plan.mapping_index)} gives {plan.image} for this kernel, as "
            f"{mapping_path(self.holder.mapping_index)} does for kernel {self.holder.kernel}, "
            f"signed with other Secrets ({describe_identity(identity_of(plan.sign))}, not "
            f"{describe_identity(identity_of(self.holder.sign))}); not signing it for this kernel "
            "(the two would re-sign it in turn). Give the mappings different containerImages or "
            "the same keySecret and certSecret"
        )


def kernel_collisions(
    plans: Mapping[str, KernelPlan], incumbents: Collection[str]
) -> dict[str, Collision]:
    """The kernels of `plans` that must not sign their image (kernel -> Collision). `incumbents`:
    kernels whose actor already signs its plan's image with its plan's identity."""
    groups: dict[str, list[KernelPlan]] = {}
    for plan in plans.values():
        if plan.sign is not None:
            groups.setdefault(plan.image, []).append(plan)
    waiting: dict[str, Collision] = {}
    for group in groups.values():
        group.sort(key=lambda p: (p.kernel not in incumbents, p.mapping_index, p.kernel))
        holder = group[0]
        assert holder.sign is not None
        for plan in group[1:]:
            assert plan.sign is not None
            if identity_of(plan.sign) != identity_of(holder.sign):
                waiting[plan.kernel] = Collision(plan.kernel, holder)
    return waiting


def waiting_kernels(
    fresh: Mapping[str, KernelPlan | SpecError | None], running: Mapping[str, KernelPlan]
) -> dict[str, Collision]:
    """The kernels of `fresh` (their new plans, or why there is none) that must wait. `running`:
    the plan each kernel actor runs now (a kernel whose new plan is a SpecError keeps running
    its old one; one without a plan retires)."""
    if not any(isinstance(p, KernelPlan) and p.sign is not None for p in fresh.values()):
        return {}  # only a kernel that signs can be held back
    plans = {
        k: p for k, p in running.items() if isinstance(fresh.get(k, p), KernelPlan | SpecError)
    }
    plans |= {k: p for k, p in fresh.items() if isinstance(p, KernelPlan)}
    incumbents = {k for k, plan in plans.items() if _signs_alike(running.get(k), plan)}
    return {k: c for k, c in kernel_collisions(plans, incumbents).items() if k in fresh}


def _signs_alike(running: KernelPlan | None, plan: KernelPlan) -> bool:
    """`running` (what a kernel actor runs) signs `plan`'s image with `plan`'s identity."""
    if running is None or running.sign is None or plan.sign is None:
        return False
    return running.image == plan.image and identity_of(running.sign) == identity_of(plan.sign)
