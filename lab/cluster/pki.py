"""Certificates of a lab cluster: one throwaway CA, and a key + certificate per identity.

Identities follow Kubernetes' bootstrap RBAC, so every component gets exactly the rights a
real cluster gives it: ``system:node:<name>`` in ``system:nodes`` for kubelets (Node
authorizer + NodeRestriction), ``system:kube-proxy``, ``system:kube-scheduler``,
``system:kube-controller-manager``; ``system:masters`` only for the lab's admin and for the
apiserver's client certificate towards kubelets.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.controlplane import issue_cert, new_key

_CLIENT_EXT = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=clientAuth\n"
)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


class ClusterPki:
    """Files under ``directory``; :meth:`client` and :meth:`serving` mint on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = KeyPair(directory / "ca.crt", directory / "ca.key")
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"
        new_key(self.ca.key)
        _openssl(
            "req", "-x509", "-new", "-key", str(self.ca.key), "-subj", "/CN=exalb-lab-ca",
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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=True)
