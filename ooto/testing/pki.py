"""A throwaway certificate authority made with the openssl command line (no Python crypto needed).

EC P-256 keys: generating them takes milliseconds, which keeps cluster start fast.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    completed = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {completed.stderr.strip()}")


def _config(directory: Path, name: str, cn: str, san: str) -> Path:
    path = directory / f"{name}.cnf"
    path.write_text(_CONFIG.format(cn=cn, san=san))
    return path


def make_ca(directory: Path, name: str = "ca") -> CertPair:
    """A self-signed CA certificate and key in `directory`."""
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    config = _config(directory, name, cn=f"ooto-{name}", san="DNS:unused")
    _openssl(
        "req", "-x509", "-new", *_EC, "-days", "3650", "-config", str(config),
        "-extensions", "ca_ext", "-keyout", str(pair.key), "-out", str(pair.cert),
    )  # fmt: skip
    return pair


def make_serving_cert(
    ca: CertPair,
    directory: Path,
    name: str,
    ips: tuple[str, ...] = ("127.0.0.1",),
    dns: tuple[str, ...] = ("localhost",),
) -> CertPair:
    """A server certificate for `ips` and `dns` names, signed by `ca`."""
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    san = ",".join([f"IP:{ip}" for ip in ips] + [f"DNS:{host}" for host in dns])
    config = _config(directory, name, cn=dns[0] if dns else ips[0], san=san)
    csr = directory / f"{name}.csr"
    _openssl(
        "req", "-new", *_EC, "-config", str(config), "-keyout", str(pair.key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "3650", "-extfile", str(config), "-extensions", "server_ext",
        "-out", str(pair.cert),
    )  # fmt: skip
    return pair


def make_signing_key(directory: Path, name: str = "sa") -> CertPair:
    """An RSA key pair for service-account tokens; `cert` holds the public key."""
    pair = CertPair(directory / f"{name}.pub", directory / f"{name}.key")
    _openssl("genrsa", "-out", str(pair.key), "2048")
    _openssl("rsa", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    return pair
