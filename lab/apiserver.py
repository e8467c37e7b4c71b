"""The lab's own small client of a kube-apiserver it started: admin calls, tokens, tools.

Why not the kubernetes client: tests want the exact status code and the server's own error
message (which names the offending field), not a client library's interpretation, and helm
and kubectl must run against the same server with their state kept out of ``$HOME``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.pki import CertificateAuthority, KeyPair


class ApiError(RuntimeError):
    """An admin call the lab needed was refused."""


@dataclass(frozen=True)
class ApiResponse:
    """Status and decoded JSON body of one apiserver call (body is {} when not JSON)."""

    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The ``Status.message`` of an error response, or an empty string."""
        return str(self.body.get("message", ""))


class AdminAccess:
    """Calls as ``system:masters`` (or a bearer token) to the apiserver at :attr:`server`.

    Mixed into :class:`lab.controlplane.ControlPlane`, which sets the attributes below.
    """

    workdir: Path
    authority: CertificateAuthority
    admin: KeyPair
    _ssl: ssl.SSLContext | None

    @property
    def server(self) -> str:
        raise NotImplementedError

    @property
    def kubeconfig(self) -> Path:
        """Admin (system:masters) kubeconfig for kubectl, helm and the kubernetes client."""
        return self.workdir / "admin.kubeconfig"

    def _client_ssl(self, with_admin_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.authority.ca.cert))
        if with_admin_cert:
            ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return ctx

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> ApiResponse:
        """One HTTPS call to the apiserver as admin (or as the bearer ``token``).

        Deliberately tiny: tests want the exact status code and the server's own error
        message (which names the offending field), not a client library's interpretation.
        Non-2xx responses are returned, not raised; connection errors raise ``OSError``.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
            ctx = self._client_ssl(with_admin_cert=False)
        else:
            ctx = self._ssl or self._client_ssl()
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                return _response(resp.status, resp.read(), resp.headers.get_all("Warning"))
        except urllib.error.HTTPError as err:
            return _response(err.code, err.read(), err.headers.get_all("Warning"))

    def version(self) -> dict[str, Any]:
        """The apiserver's ``/version`` document (gitVersion etc.)."""
        return self.api("GET", "/version").body

    def ensure_namespace(self, name: str) -> None:
        """Create namespace ``name`` unless it exists."""
        resp = self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if not resp.ok and resp.status != 409:
            raise ApiError(f"creating namespace {name}: {resp.status} {resp.message}")

    def delete_namespace(self, name: str) -> None:
        """Delete namespace ``name``.

        Without kube-controller-manager the namespace stays Terminating forever; that is
        harmless for tests, which use unique names.
        """
        self.api("DELETE", f"/api/v1/namespaces/{name}")

    def create_service_account(self, namespace: str, name: str) -> None:
        """Create ServiceAccount ``namespace/name`` unless it exists."""
        resp = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )
        if not resp.ok and resp.status != 409:
            raise ApiError(
                f"creating serviceaccount {namespace}/{name}: {resp.status} {resp.message}"
            )

    def create_token(self, namespace: str, service_account: str, expiration: int = 3600) -> str:
        """Mint a bound token for an existing ServiceAccount through the TokenRequest API.

        This is how a component gets *exactly* the RBAC a Helm install grants its
        ServiceAccount, instead of running with the harness's admin rights.
        """
        resp = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration},
            },
        )
        if not resp.ok:
            raise ApiError(
                f"TokenRequest for {namespace}/{service_account}: {resp.status} {resp.message}"
            )
        return str(resp.body["status"]["token"])

    def write_token_kubeconfig(self, token: str, name: str = "serviceaccount") -> Path:
        """Write a kubeconfig that authenticates with ``token``; returns its path."""
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, name, {"token": token})
        return path

    def _write_kubeconfig(self, path: Path, user: str, credentials: Mapping[str, str]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "exalb-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.authority.ca.cert),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": user, "context": {"cluster": "exalb-test", "user": user}}],
            "current-context": user,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)

    def run_tool(
        self,
        argv: list[str],
        *,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm/kubectl (or anything reading ``$KUBECONFIG``) against this apiserver.

        Helm keeps cache and config under ``$HOME`` by default; they are redirected into
        the working directory so runs do not touch the user's helm setup.
        """
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        helm_home = self.workdir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ApiError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def _response(status: int, raw: bytes, warnings: list[str] | None) -> ApiResponse:
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw.decode(errors="replace")}
    body = decoded if isinstance(decoded, dict) else {"items": decoded}
    return ApiResponse(status, body, tuple(warnings or ()))
