"""The one module that calls into the ``kubernetes`` client.

Everything else in exalb sees plain JSON dicts and :class:`ApiError`. Requests go through
the client's own authentication and TLS setup (kubeconfig, in-cluster service account,
client certificates, bearer tokens) but skip its model classes: exalb reads a handful of
fields, and decoding thousands of Services into generated models is slow and hides fields
the models lag behind on (e.g. ``status.conditions`` of a Service).

Retry policy (tenacity): connection errors, 5xx and 429 are transient and retried with
jittered exponential backoff, honouring ``Retry-After``; every other 4xx is final and
raised at once (a 409 means "re-read and re-decide", which only the caller can do).
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
import websocket
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import stream as k8s_stream
from kubernetes.config.config_exception import ConfigException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from exalb.k8s.reachability import Reachability
from exalb.k8s.resources import Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]


#: Seconds without a byte (not even a BOOKMARK) after which a watch is given up.
WATCH_READ_TIMEOUT = 90.0

#: TCP keepalive on every connection to the API server: probe after 10 s of silence, every
#: 5 s, give up after 3 lost probes; and drop a connection whose sent data stays unacked for
#: 30 s. Why: a watch is silent for up to a minute between BOOKMARKs, and a connection that
#: died without a FIN or RST (a partitioned node, a conntrack entry flushed by a restarted
#: kube-proxy) would otherwise keep an informer blind until the read timeout; with these
#: the kernel notices in about 25 s. client-go's own 30 s keepalive (with 15 s x 9 probes)
#: would take minutes.
KEEPALIVE = (10, 5, 3)
USER_TIMEOUT_MS = 30_000


def _socket_options() -> list[tuple[int, int, int]]:
    idle, interval, count = KEEPALIVE
    options = list(urllib3.connection.HTTPConnection.default_socket_options)
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", count),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, name):  # Linux has all four; others get what they have
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


class ApiError(Exception):
    """A failed API call, with what a caller needs to decide what to do next."""

    def __init__(
        self, status: int, reason: str, body: JSON | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.body = body or {}
        self.retry_after = retry_after
        message = self.body.get("message") if isinstance(self.body, dict) else None
        super().__init__(f"{status} {reason}: {message or ''}".strip())

    @property
    def message(self) -> str:
        msg = self.body.get("message")
        return str(msg) if msg else self.reason

    @property
    def transient(self) -> bool:
        """Connection trouble (status 0), throttling or a server-side error."""
        return self.status in {0, 429} or self.status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.transient


def _wait(state: RetryCallState) -> float:
    base = wait_exponential_jitter(initial=0.2, max=10)(state)
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ApiError) and exc.retry_after:
        return max(base, min(exc.retry_after, 30.0))
    return float(base)


@dataclass(frozen=True)
class ListResult:
    items: list[JSON]
    resource_version: str


class KubeClient:
    """JSON-in, JSON-out access to the API server."""

    def __init__(self, kubeconfig: str | None = None, *, retry_for: float = 30.0) -> None:
        cfg = k8s_client.Configuration()
        try:
            if kubeconfig:
                k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=cfg)
            else:
                k8s_config.load_kube_config(client_configuration=cfg)
        except ConfigException as exc:
            # also an explicit --kubeconfig that is missing or empty: an answer, not a trace
            raise ApiError(0, f"no Kubernetes configuration: {exc}") from exc
        cfg.socket_options = _socket_options()
        self._cfg = cfg
        self._api = k8s_client.ApiClient(cfg)
        self._retry_for = retry_for
        self.reachability = Reachability()  # the informers' shared wake-up after an outage
        self.host = cfg.host

    def close(self) -> None:
        self._api.close()

    # ------------------------------------------------------------------ raw
    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] | None = 30.0,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        method_, url, hdrs, body_, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._api.call_api(method_, url, hdrs, body_, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.reachability.failed()
            raise ApiError(0, f"connection error: {exc}") from exc
        except k8s_client.ApiException as exc:
            self.reachability.answered()
            raise ApiError(exc.status or 0, str(exc.reason), _decode(exc.body)) from exc
        self.reachability.answered()
        return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> JSON:
        """One call with retries on transient errors; non-2xx raises :class:`ApiError`."""
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=_wait,
            stop=stop_after_delay(self._retry_for),
            reraise=True,
        ):
            with attempt:
                resp = self._send(
                    method, path, query=query, body=body, content_type=content_type, timeout=timeout
                )
                data = resp.read()
                payload = _decode(data)
                if resp.status >= 400:
                    retry_after = resp.getheader("Retry-After")
                    raise ApiError(
                        resp.status,
                        str(resp.reason),
                        payload,
                        float(retry_after) if retry_after and retry_after.isdigit() else None,
                    )
                return payload
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ verbs
    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        items: list[JSON] = []
        cont: str | None = None
        rv = ""
        while True:
            page = self.request(
                "GET",
                resource.path(namespace),
                query={
                    "limit": 500,
                    "continue": cont,
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                },
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            cont = meta.get("continue")
            if not cont:
                return ListResult(items, rv)

    def watch(
        self,
        resource: Resource,
        resource_version: str,
        namespace: str | None = None,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[tuple[str, JSON]]:
        """Yield (type, object) pairs, BOOKMARKs included; a 410 raises ``ApiError(410)``."""
        resp = self._send(
            "GET",
            resource.path(namespace),
            query={
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout_seconds,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
            },
            # Read timeout: the apiserver sends a BOOKMARK about once a minute on a quiet
            # watch, so 90 s of silence means the connection is dead (e.g. the node was cut
            # off: no FIN, no RST ever arrives) and the informer must reconnect; waiting for
            # timeoutSeconds + 30 s left a partitioned controller blind for minutes.
            timeout=(10.0, min(timeout_seconds + 30.0, WATCH_READ_TIMEOUT)),
        )
        if resp.status >= 400:
            raise ApiError(resp.status, str(resp.reason), _decode(resp.read()))
        raw = resp.response
        try:
            buffer = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    etype = str(event.get("type"))
                    obj = event.get("object") or {}
                    if etype == "ERROR":
                        raise ApiError(int(obj.get("code") or 500), str(obj.get("reason")), obj)
                    obj.setdefault("apiVersion", resource.api_version)
                    obj.setdefault("kind", resource.kind)
                    yield etype, obj
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.reachability.failed()
            raise ApiError(0, f"watch connection error: {exc}") from exc
        finally:
            raw.release_conn()

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON | None:
        try:
            return self.request("GET", resource.path(namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def create(self, resource: Resource, body: JSON, namespace: str | None = None) -> JSON:
        return self.request("POST", resource.path(namespace), body=body)

    def replace(
        self,
        resource: Resource,
        name: str,
        body: JSON,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        return self.request("PUT", resource.path(namespace, name, subresource), body=body)

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: JSON,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> JSON:
        """JSON merge patch (RFC 7386); works the same for built-in types and CRDs."""
        return self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, resource: Resource, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", resource.path(namespace, name))
        except ApiError as exc:
            if not exc.not_found:
                raise

    # ------------------------------------------------------------------ port-forward
    def port_forward_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 10.0
    ) -> tuple[int, bytes]:
        """``GET path`` (HTTP/1.0) on ``pod``'s loopback ``port`` through the API server's
        port-forward (RBAC: ``get`` and ``create`` on ``pods/portforward``); returns status and
        body.

        Why a port-forward: it dials ``localhost:port`` in the pod's network namespace (for a
        host-network pod, the node's loopback), which the pod proxy cannot reach, and the API
        server authorizes the user first. One request per forward: the forward closes with
        the connection. Failures raise :class:`ApiError` (403: not allowed; status 0: the
        forward or the port failed, with the kubelet's reason)."""
        # A client of its own: the library's stream helper swaps the client's request method
        # for a websocket one while it runs, which would capture concurrent plain requests
        # (the pod proxy, listing) made on a shared client.
        api = k8s_client.ApiClient(self._cfg)
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
            return _http_get_over(sock, path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            reason = forward.error(port) or exc
            raise ApiError(0, f"port-forward to {pod}:{port}: {reason}") from exc
        finally:
            forward.close()
            api.close()


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_namespace(kubeconfig: str | None = None) -> str:
    """The namespace ``kubectl`` would use: the kubeconfig's current context's, the pod's own
    in a cluster, else ``default``. Never raises (a CLI asks this before anything else)."""
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"
    try:
        _, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError):
        return "default"
    context = (current or {}).get("context") or {}
    return str(context.get("namespace") or "default")


class _SocketHTTPConnection(http.client.HTTPConnection):
    """HTTP on a socket that is already connected (one end of a port-forward)."""

    def __init__(self, sock: Any, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._given = sock

    def connect(self) -> None:
        self.sock = self._given


def _http_get_over(sock: Any, path: str, timeout: float) -> tuple[int, bytes]:
    conn = _SocketHTTPConnection(sock, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


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
            body = raw if isinstance(raw, dict) else _decode(raw)
    return ApiError(int(match.group(1)), match.group(2) or "websocket handshake refused", body)


def _decode(data: Any) -> JSON:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, TypeError):
        return {"message": data.decode(errors="replace") if isinstance(data, bytes) else str(data)}
    return value if isinstance(value, dict) else {"items": value}
