"""Throwaway certificates for the lab's control planes, minted with the ``openssl`` CLI.

One CA per instance, then a key and a certificate per identity on demand. Why the CLI: the
``cryptography`` package is not a dependency of exalb. Why P-256 keys: they are generated in
milliseconds (RSA would dominate start-up time) and Go's TLS stack and the service-account
token signer (ES256) accept them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_CLIENT_EXT = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=clientAuth\n"
)


class PkiError(RuntimeError):
    """openssl refused; the message holds its error output."""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PkiError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def new_key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(path), cwd=path.parent,
    )  # fmt: skip
    path.chmod(0o600)


def issue_cert(
    *,
    ca_crt: Path,
    ca_key: Path,
    key: Path,
    crt: Path,
    subject: str,
    extensions: str,
) -> None:
    csr = crt.with_suffix(".csr")
    ext = crt.with_suffix(".ext")
    ext.write_text(extensions)
    new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=crt.parent)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "7", "-sha256", "-extfile", str(ext), "-out", str(crt),
        cwd=crt.parent,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


class CertificateAuthority:
    """Files under ``directory``: a CA, a service-account signing key, and what
    :meth:`client` and :meth:`serving` mint on demand."""

    def __init__(self, directory: Path, name: str = "exalb-lab-ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = KeyPair(directory / "ca.crt", directory / "ca.key")
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"
        new_key(self.ca.key)
        _openssl(
            "req", "-x509", "-new", "-key", str(self.ca.key), "-subj", f"/CN={name}",
            "-days", "7", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(self.ca.cert),
            cwd=directory,
        )  # fmt: skip
        new_key(self.sa_key)
        _openssl(
            "pkey", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub), cwd=directory
        )

    def _pair(self, name: str) -> KeyPair:
        return KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def client(self, name: str, common_name: str, group: str | None = None) -> KeyPair:
        """A client certificate ``O=group, CN=common_name`` (Kubernetes reads user and
        group from them)."""
        pair = self._pair(name)
        subject = (f"/O={group}" if group else "") + f"/CN={common_name}"
        issue_cert(
            ca_crt=self.ca.cert, ca_key=self.ca.key, key=pair.key, crt=pair.cert,
            subject=subject, extensions=_CLIENT_EXT,
        )  # fmt: skip
        return pair

    def serving(
        self, name: str, common_name: str, ips: Iterable[str], dns: Iterable[str]
    ) -> KeyPair:
        pair = self._pair(name)
        sans = ",".join([*(f"IP:{i}" for i in ips), *(f"DNS:{d}" for d in dns)])
        issue_cert(
            ca_crt=self.ca.cert, ca_key=self.ca.key, key=pair.key, crt=pair.cert,
            subject=f"/CN={common_name}",
            extensions="basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={sans}\n",
        )  # fmt: skip
        return pair
