"""Where the API server is and how to authenticate to it: kubeconfig files and in-cluster.

Why not the ``kubernetes`` package's loader: importing that package loads its ~700
generated model modules (about 20 MiB resident and half a second of start-up) into every
speaker on every node, for a few lines of YAML. This module reads what the programs need:

* **in-cluster** (the chart's pods): the API server from ``KUBERNETES_SERVICE_HOST`` and
  ``_PORT``, the service account's CA and token files; the token file is re-read by the
  transport (bound tokens rotate, as client-go re-reads it);
* **kubeconfig** (``--kubeconfig``, else ``$KUBECONFIG`` — a ``:``-separated list merged as
  kubectl does, the first file to name a cluster, user or context wins — else
  ``~/.kube/config``): the current context's server, ``certificate-authority[-data]``,
  ``insecure-skip-tls-verify``, ``tls-server-name``, ``client-certificate[-data]``,
  ``client-key[-data]``, ``token`` and ``tokenFile``; relative paths are relative to the file
  that names them.

A user entry that needs a credential plugin (``exec``, ``auth-provider``), basic auth or a
proxy is marked :attr:`Credentials.needs_official_loader`; the transport then loads that
kubeconfig with the ``kubernetes`` package (imported only then: a laptop's ``kubectl exalb``
against a cloud cluster, never a pod).

Errors raise :class:`KubeconfigError` with the file and the field, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PLUGIN_FIELDS = ("exec", "auth-provider", "username", "password")
MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024  # kubeconfigs are small; a huge file is a mistake


class KubeconfigError(Exception):
    """No usable configuration: the message names the file and the field."""


@dataclass(frozen=True)
class Credentials:
    """How to reach one API server. Byte fields hold PEM; file fields are paths."""

    server: str
    ca_data: bytes | None = None
    ca_file: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    cert_data: bytes | None = None
    cert_file: str | None = None
    key_data: bytes | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    namespace: str = "default"
    #: the user entry needs what only the ``kubernetes`` package implements (module docstring)
    needs_official_loader: bool = False
    #: the kubeconfig file to hand to that loader (``None``: the default search)
    source: str | None = None


def in_cluster(environ: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> Credentials:
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    if ":" in host:  # an IPv6 address in a URL goes in brackets
        host = f"[{host}]"
    token_file = root / "token"
    if not token_file.exists():
        raise KubeconfigError(f"in-cluster: no service account token at {token_file}")
    namespace = "default"
    with contextlib.suppress(OSError):
        namespace = (root / "namespace").read_text(encoding="utf-8").strip() or "default"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(root / "ca.crt"),
        token_file=str(token_file),
        namespace=namespace,
    )


def kubeconfig_files(kubeconfig: str | None, environ: Mapping[str, str]) -> list[Path]:
    """The files to read, in precedence order (kubectl's rules)."""
    if kubeconfig:
        return [Path(kubeconfig)]
    listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [Path(p) for p in listed]
    return [Path(environ.get("HOME") or Path.home()) / ".kube" / "config"]


def _read(path: Path, required: bool) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_KUBECONFIG_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise KubeconfigError(f"{path}: no such file") from None
        return None
    except OSError as exc:
        raise KubeconfigError(f"{path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(f"{path}: larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not YAML: {exc}") from exc
    if doc is None:
        if required:
            raise KubeconfigError(f"{path}: empty")
        return None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig (a mapping is expected)")
    return doc


@dataclass(frozen=True)
class _Named:
    """One cluster/user/context entry and the directory its relative paths start from."""

    body: Mapping[str, Any]
    base: Path


def _merge(files: list[Path], required: bool) -> tuple[dict[str, dict[str, _Named]], str, Path]:
    merged: dict[str, dict[str, _Named]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    first: Path | None = None
    for path in files:
        doc = _read(path, required)
        if doc is None:
            continue
        first = first or path
        current = current or str(doc.get("current-context") or "")
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise KubeconfigError(f"{path}: {section} must be a list")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise KubeconfigError(f"{path}: {section}: an entry without a name")
                body = entry.get(inner) or {}
                if not isinstance(body, dict):
                    raise KubeconfigError(f"{path}: {section}[{entry['name']}]: not a mapping")
                merged[section].setdefault(entry["name"], _Named(body, path.parent))
    if first is None:
        raise KubeconfigError(f"no kubeconfig found (looked at {', '.join(map(str, files))})")
    return merged, current, first


def current_namespace(kubeconfig: str | None, environ: Mapping[str, str]) -> str:
    """The current context's namespace, ``default`` when it names none."""
    merged, current, _ = _merge(kubeconfig_files(kubeconfig, environ), bool(kubeconfig))
    context = merged["contexts"].get(current)
    return str((context.body.get("namespace") if context else None) or "default")


def from_kubeconfig(kubeconfig: str | None, environ: Mapping[str, str]) -> Credentials:
    merged, current, first = _merge(kubeconfig_files(kubeconfig, environ), bool(kubeconfig))
    if not current:
        raise KubeconfigError(f"{first}: no current-context")
    context = merged["contexts"].get(current)
    if context is None:
        raise KubeconfigError(f"{first}: current-context {current!r} is not in contexts")
    cluster = merged["clusters"].get(str(context.body.get("cluster") or ""))
    if cluster is None:
        name = context.body.get("cluster")
        raise KubeconfigError(f"context {current!r}: cluster {name!r} is not in clusters")
    user = merged["users"].get(str(context.body.get("user") or ""), _Named({}, first.parent))
    server = cluster.body.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"cluster {context.body.get('cluster')!r}: server {server!r}")
    u, c = user.body, cluster.body
    return Credentials(
        server=server.rstrip("/"),
        ca_data=_data(c, "certificate-authority-data"),
        ca_file=_file(c, "certificate-authority", cluster.base),
        insecure=c.get("insecure-skip-tls-verify") is True,
        tls_server_name=str(c["tls-server-name"]) if c.get("tls-server-name") else None,
        cert_data=_data(u, "client-certificate-data"),
        cert_file=_file(u, "client-certificate", user.base),
        key_data=_data(u, "client-key-data"),
        key_file=_file(u, "client-key", user.base),
        token=str(u["token"]) if u.get("token") else None,
        token_file=_file(u, "tokenFile", user.base),
        namespace=str(context.body.get("namespace") or "default"),
        needs_official_loader=any(u.get(f) for f in PLUGIN_FIELDS) or bool(c.get("proxy-url")),
        source=kubeconfig,
    )


def load(kubeconfig: str | None, environ: Mapping[str, str]) -> Credentials:
    """``--kubeconfig`` if given; in a pod, the service account; else kubectl's search."""
    if not kubeconfig and environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster(environ)
    return from_kubeconfig(kubeconfig, environ)


def _data(body: Mapping[str, Any], field: str) -> bytes | None:
    value = body.get(field)
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubeconfigError(f"{field}: not base64") from exc


def _file(body: Mapping[str, Any], field: str, base: Path) -> str | None:
    value = body.get(field)
    if not value:
        return None
    return str(base / str(value))  # an absolute path stays as it is
