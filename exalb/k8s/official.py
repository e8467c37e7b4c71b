"""The one module that calls into the ``kubernetes`` package, for what only it implements.

* Kubeconfigs with a credential plugin (``exec``, ``auth-provider``), basic auth or a proxy:
  :func:`plugin_transport` loads them with the package's loader, whose refreshing token
  and TLS files feed exalb's own transport (:mod:`exalb.k8s.transport`).
* One HTTP GET through the API server's port-forward (``kubectl exalb``): the protocol (a
  websocket with a channel per port) is the package's stream helper.

It is imported lazily, only for these: the controller and the speakers in a pod use the
service account and never load the package (why: :mod:`exalb.k8s.kubeconfig`).
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import os
import re
import ssl
from typing import Any

import urllib3
import websocket
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import stream as k8s_stream
from kubernetes.config.config_exception import ConfigException

from exalb.http_get import get_once
from exalb.k8s.client import JSON, ApiError, decode_json
from exalb.k8s.kubeconfig import KubeconfigError
from exalb.k8s.transport import POOL_SIZE, Transport


def _configuration(kubeconfig: str | None) -> k8s_client.Configuration:
    """The package's own loading: ``kubeconfig``, else in a pod the service account, else
    kubectl's search (the same order as :func:`exalb.k8s.kubeconfig.load`)."""
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            k8s_config.load_kube_config(client_configuration=cfg)
    except ConfigException as exc:
        raise KubeconfigError(str(exc)) from exc
    return cfg


def port_forward_get(
    kubeconfig: str | None, namespace: str, pod: str, port: int, path: str, timeout: float
) -> tuple[int, bytes]:
    """See ``KubeClient.port_forward_get``."""
    # A client of its own: the library's stream helper swaps the client's request method
    # for a websocket one while it runs.
    try:
        cfg = _configuration(kubeconfig)
    except KubeconfigError as exc:
        raise ApiError(0, f"no Kubernetes configuration: {exc}") from exc
    api = k8s_client.ApiClient(cfg)
    core = k8s_client.CoreV1Api(api)
    # The library's websocket takes its timeout from this process-wide default (no
    # parameter reaches it); only the CLI port-forwards, with one timeout for all.
    previous = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(timeout)
    try:
        forward = k8s_stream.portforward(
            core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
    except k8s_client.ApiException as exc:
        api.close()
        raise _forward_error(exc) from exc
    finally:
        websocket.setdefaulttimeout(previous)
    sock = forward.socket(port)
    sock.settimeout(timeout)
    try:
        return get_once(_SocketHTTPConnection(sock, timeout), path)
    except (OSError, http.client.HTTPException) as exc:
        reason = forward.error(port) or exc
        raise ApiError(0, f"port-forward to {pod}:{port}: {reason}") from exc
    finally:
        forward.close()
        api.close()


class _SocketHTTPConnection(http.client.HTTPConnection):
    """HTTP on a socket that is already connected (one end of a port-forward)."""

    def __init__(self, sock: Any, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._given = sock

    def connect(self) -> None:
        self.sock = self._given


def _forward_error(exc: k8s_client.ApiException) -> ApiError:
    """The library reports a refused websocket handshake as status 0 with the handshake in
    its text ("Handshake status 403 Forbidden -+-+- <headers> -+-+- <body bytes>"): recover
    the status and the API server's JSON answer."""
    text = str(exc.reason or exc)
    parts = text.split(" -+-+- ")
    match = re.match(r"Handshake status (\d{3}) ?(.*)", parts[0])
    if match is None:
        return ApiError(int(exc.status or 0), text[:200])
    body: JSON = {}
    if len(parts) >= 3:
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError):
            raw = ast.literal_eval(parts[-1].strip())
            body = raw if isinstance(raw, dict) else decode_json(raw)
    return ApiError(int(match.group(1)), match.group(2) or "websocket handshake refused", body)


def plugin_transport(source: str | None, socket_options: list[tuple[int, int, int]]) -> Transport:
    """A kubeconfig with a credential plugin or a proxy, loaded by the ``kubernetes``
    package; its settings become our pool, its refreshing token our header."""
    cfg = _configuration(source)
    pool_args: dict[str, Any] = {
        "maxsize": POOL_SIZE,
        "socket_options": socket_options,
        "cert_reqs": ssl.CERT_REQUIRED if cfg.verify_ssl else ssl.CERT_NONE,
        "ca_certs": cfg.ssl_ca_cert,
        "cert_file": cfg.cert_file,
        "key_file": cfg.key_file,
    }
    if cfg.tls_server_name:
        pool_args["server_hostname"] = cfg.tls_server_name
    pool: urllib3.PoolManager
    if cfg.proxy:
        pool = urllib3.ProxyManager(cfg.proxy, proxy_headers=cfg.proxy_headers, **pool_args)
    else:
        pool = urllib3.PoolManager(**pool_args)

    def auth() -> str | None:
        value = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
        return str(value) if value else None

    return Transport(str(cfg.host).rstrip("/"), pool, auth)
