"""Secure Boot signing, pure: the per-kernel `SignPlan`, the derived unsigned tag, the generated
Dockerfile of a sign build, and the certificate fingerprint that labels a signed image.

The sign build (a Buildah Job, `ooto.builds.buildah.render_sign_job`) builds this Dockerfile:

    FROM <unsigned image> AS unsigned
    FROM <signer image> AS signer
    USER 0:0
    RUN --mount=type=bind,from=unsigned,target=/unsigned \\
        --mount=type=secret,id=ooto-sign-key,... --mount=type=secret,id=ooto-sign-cert,... \\
        <for each file matching filesToSign: copy it to /signed, run SIGN_FILE on it>
    FROM unsigned
    COPY --from=signer /signed/ /
    LABEL ooto.sigs.k8s.io/signed-by=sha256:<hex of the DER certificate's SHA-256>
    LABEL ooto.sigs.k8s.io/signed-for=<namespace>/<name of the Module that signed it>

The key and certificate reach `sign-file` as build secrets (files mounted for that one RUN step,
from the Secrets mounted read-only in the Job's pod): never in a layer, a build arg or a log. The
final image is the unsigned one with the signed files copied over it, plus the label, which is how
ooto later tells whether an image was signed with the current certificate (key rotation). The
signed-for label tells a rotation (the image was signed for this Module, with its older
certificate) from a conflict (another Module signs the same image with another certificate):
only the first is signed again (`ooto.domain.sign_flow.mismatch_event`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ooto.domain.api.module import Module

SIGNED_BY_LABEL = "ooto.sigs.k8s.io/signed-by"
SIGNED_FOR_LABEL = "ooto.sigs.k8s.io/signed-for"
"""The `namespace/name` of the Module whose sign build made the image (absent before ooto added
it: such an image is treated as this Module's own)."""
SIGN_FILE = "/usr/lib/linux-kbuild-6.1/scripts/sign-file"
"""Where the signer image has `sign-file`: Debian bookworm's linux-kbuild-6.1 package puts it
there, and the operator's own image (the default signer image) installs that package."""
KEY_SECRET_ID, CERT_SECRET_ID = "ooto-sign-key", "ooto-sign-cert"
SECRETS_DIR = "/run/secrets/ooto"
SIGN_KEY_DIR, SIGN_CERT_DIR = "/run/ooto/sign-key", "/run/ooto/sign-cert"
"""Where a sign build's pod mounts the key and certificate Secrets (read-only, one item each)."""
MOUNTED_KEY, MOUNTED_CERT = f"{SIGN_KEY_DIR}/sign-key", f"{SIGN_CERT_DIR}/sign-cert"
UNSIGNED_SUFFIX = "-unsigned"
_MAX_TAG = 128
SAFE_GLOB = re.compile(r"/[A-Za-z0-9_.+*?\[\]/@:=,~-]*")
"""A file glob safe to leave unquoted in the signer's shell (no spaces, quotes, `$` or `;`)."""
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
_PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----(.+?)-----END \1PRIVATE KEY-----", re.S
)


class CertificateError(ValueError):
    """The certificate Secret holds no usable certificate; the message is safe to show."""


@dataclass(frozen=True)
class SignPlan:
    """What to sign for one kernel, every template already substituted."""

    unsigned_image: str
    files: tuple[str, ...]
    key_secret: str
    key_key: str
    cert_secret: str
    cert_key: str
    hash_algorithm: str
    pull_insecure: bool
    push_insecure: bool


def sign_problems(module: Module) -> Iterator[tuple[str, str]]:
    """(field path, message) for every `sign` that no kernel can use: an unsigned image that
    cannot be derived (no build), a filesToSign entry that is unsafe as written. Entries with
    variables are judged per kernel, once substituted."""
    for index, mapping in enumerate(module.spec.kernel_mappings):
        own = mapping.sign is not None
        sign = mapping.sign or module.spec.sign
        if sign is None:
            continue
        where = f"spec.kernelMappings[{index}].sign" if own else "spec.sign"
        if sign.unsigned_image is None and mapping.build is None:
            path = f"{where}.unsignedImage"
            yield path, f"required for spec.kernelMappings[{index}], which has no build"
        if own or index == 0:  # spec.sign's own fields once, not once per mapping
            for j, pattern in enumerate(sign.files_to_sign):
                problem = None if "$" in pattern else glob_problem(pattern)
                if problem is not None:
                    yield f"{where}.filesToSign[{j}]", problem


def unsigned_tag(image: str) -> str:
    """`image` with `-unsigned` appended to its tag (a tag too long for that is cut and given a
    hash, so the result is always a valid tag). ValueError for an image without a tag."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or "@" in image:
        raise ValueError(f"{image!r} has no tag to derive an unsigned image from")
    wanted = tag + UNSIGNED_SUFFIX
    if len(wanted) > _MAX_TAG:
        digest = hashlib.sha256(tag.encode()).hexdigest()[:10]
        wanted = f"{tag[: _MAX_TAG - len(UNSIGNED_SUFFIX) - 11]}-{digest}{UNSIGNED_SUFFIX}"
    return f"{name}:{wanted}"


def glob_problem(pattern: str) -> str | None:
    """Why a substituted filesToSign entry cannot be used (None when it can)."""
    if SAFE_GLOB.fullmatch(pattern) is None or "/../" in f"{pattern}/":
        return (
            f"{pattern!r} must be an absolute path or glob of letters, digits and "
            "_ . + * ? [ ] / @ : = , ~ - (no spaces, quotes, $ or ..)"
        )
    return None


def certificate_der(data: bytes) -> bytes:
    """The DER bytes of a PEM or DER certificate (the first one of a PEM bundle)."""
    found = _PEM.search(data)
    if found is not None:
        try:
            der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
        except binascii.Error:
            raise CertificateError("the PEM certificate is not valid base64") from None
    elif data[:1] == b"\x30":
        der = data
    else:
        raise CertificateError("neither a PEM nor a DER certificate")
    if len(der) < 64 or der[:1] != b"\x30":
        raise CertificateError("not an X.509 certificate (DER SEQUENCE expected)")
    return der


def private_key_problem(data: bytes) -> str | None:
    """Why `data` is not a PEM private key sign-file can read (None when it looks like one). The
    answer never quotes the data."""
    found = _PEM_KEY.search(data)
    if found is None:
        return "holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)"
    if b"ENCRYPTED" in found.group(1) or b"Proc-Type: 4,ENCRYPTED" in found.group(2):
        return "holds an encrypted private key (sign-file needs it unencrypted)"
    try:
        der = base64.b64decode(b"".join(found.group(2).split()), validate=True)
    except binascii.Error:
        return "holds a PEM private key that is not valid base64"
    if len(der) < 64 or der[:1] != b"\x30":
        return "holds a PEM private key whose content is not a key (DER SEQUENCE expected)"
    return None


def fingerprint(cert: bytes) -> str:
    """`sha256:<hex>` of the DER certificate: the value of the signed-by label."""
    return "sha256:" + hashlib.sha256(certificate_der(cert)).hexdigest()


def sign_dockerfile(
    plan: SignPlan, signer_image: str, signed_by: str, mounted: bool = False, signed_for: str = ""
) -> str:
    """The Dockerfile of a sign build (see the module docstring); `signed_for`: the signing
    Module's `namespace/name` (no signed-for label when empty). A pattern that matches no file
    fails the build with a line naming it. `mounted`: for builders without build secrets (Kaniko,
    OpenShift builds), the key and certificate are files the build pod mounts at MOUNTED_KEY and
    MOUNTED_CERT, and the unsigned files are copied into the signer stage (no RUN --mount)."""
    if mounted:
        key, cert = MOUNTED_KEY, MOUNTED_CERT
        copies = "".join(
            f"COPY --from=unsigned {root} /unsigned{root}\n" for root in _glob_roots(plan.files)
        )
        mounts = ""
    else:
        key, cert = f"{SECRETS_DIR}/key", f"{SECRETS_DIR}/cert"
        copies = ""
        mounts = " ".join(
            [
                "--mount=type=bind,from=unsigned,target=/unsigned",
                f"--mount=type=secret,id={KEY_SECRET_ID},target={key}",
                f"--mount=type=secret,id={CERT_SECRET_ID},target={cert}",
                "",
            ]
        )
    return (
        f"FROM {plan.unsigned_image} AS unsigned\n"
        f"FROM {signer_image} AS signer\n"
        # The operator image runs as 65532; this throwaway stage writes /signed and reads the
        # root-owned secrets. The final stage keeps the unsigned image's own user.
        "USER 0:0\n"
        f"{copies}"
        f"RUN {mounts}{_sign_script(plan, key, cert)}\n"
        "FROM unsigned\n"
        "COPY --from=signer /signed/ /\n"
        f'LABEL {SIGNED_BY_LABEL}="{signed_by}"\n'
        + (f'LABEL {SIGNED_FOR_LABEL}="{signed_for}"\n' if signed_for else "")
    )


def _sign_script(plan: SignPlan, key: str, cert: str) -> str:
    loops = [
        f'found=0; for f in /unsigned{pattern}; do [ -f "$f" ] || continue; found=1; '
        'p="${f#/unsigned}"; mkdir -p "/signed${p%/*}"; cp "$f" "/signed$p"; '
        f'{SIGN_FILE} {plan.hash_algorithm} {key} {cert} "/signed$p"; echo "signed $p"; done; '
        f'[ "$found" = 1 ] || {{ echo "no file matches {pattern}" >&2; exit 1; }}'
        for pattern in plan.files
    ]
    return "; ".join(["set -e", "mkdir -p /signed", *loops])


def _glob_roots(patterns: tuple[str, ...]) -> list[str]:
    """The directories (ending in /) that hold every file the patterns can match: each
    pattern's directories before its first one with a wildcard, nested ones dropped."""
    roots = set()
    for pattern in patterns:
        fixed = []
        for part in pattern.split("/")[1:-1]:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        roots.add("/" + "".join(f"{part}/" for part in fixed))
    return [r for r in sorted(roots) if not any(r != o and r.startswith(o) for o in roots)]
