"""The API server client: JSON in, JSON out, on urllib3.

Everything else in exalb sees plain JSON dicts and :class:`ApiError`. Requests skip any
model classes: exalb reads a handful of fields, and decoding thousands of Services into
generated models is slow and hides fields the models lag behind on (e.g.
``status.conditions`` of a Service). Configuration and authentication (kubeconfig,
in-cluster service account, client certificates, bearer tokens) come from
:mod:`exalb.k8s.kubeconfig` and :mod:`exalb.k8s.transport`; the ``kubernetes`` package is
imported only for what it alone implements (credential plugins, the CLI's port-forward), so
a speaker on every node does not carry it.

Retry policy (tenacity): connection errors, 5xx and 429 are transient and retried with
jittered exponential backoff, honouring ``Retry-After``; every other 4xx is final and
raised at once (a 409 means "re-read and re-decide", which only the caller can do).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from exalb.k8s import kubeconfig as kubeconfig_files
from exalb.k8s import transport
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


# 0.2 s doubling to 10 s, plus up to 1 s of jitter so that speakers on many nodes do not retry
# in step. Built from the two waits every tenacity version has (wait_exponential_jitter's
# parameters were renamed in 9.x).
_BACKOFF = wait_exponential(multiplier=0.2, max=10) + wait_random(0, 1)


def _wait(state: RetryCallState) -> float:
    base = _BACKOFF(state)
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
        try:
            creds = kubeconfig_files.load(kubeconfig, os.environ)
            self._transport = transport.build(creds, _socket_options())
        except kubeconfig_files.KubeconfigError as exc:
            # also an explicit --kubeconfig that is missing or empty: an answer, not a trace
            raise ApiError(0, f"no Kubernetes configuration: {exc}") from exc
        self._kubeconfig = kubeconfig
        self._retry_for = retry_for
        self.reachability = Reachability()  # the informers' shared wake-up after an outage
        self.host = self._transport.server

    def close(self) -> None:
        self._transport.pool.clear()

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
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One request, no retry; the body is read unless ``stream``."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        auth = self._transport.authorization()
        if auth:
            headers["Authorization"] = auth
        url = self._transport.server + path
        fields = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        if fields:
            url += "?" + urllib.parse.urlencode(fields)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if isinstance(timeout, tuple):
            limit = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            limit = urllib3.Timeout(total=timeout)
        try:
            resp = self._transport.pool.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=limit,
                retries=False,  # retries are tenacity's (request) or the informer's (watch)
                preload_content=not stream,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.reachability.failed()
            raise ApiError(0, f"connection error: {exc}") from exc
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
                payload = decode_json(resp.data)
                if resp.status >= 400:
                    retry_after = resp.headers.get("Retry-After")
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
            stream=True,
        )
        if resp.status >= 400:
            try:
                raise ApiError(resp.status, str(resp.reason), decode_json(resp.read()))
            finally:
                resp.release_conn()
        try:
            buffer = b""
            for chunk in resp.stream(amt=None, decode_content=True):
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
            resp.release_conn()

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
        from exalb.k8s.official import port_forward_get  # noqa: PLC0415 (CLI only)

        return port_forward_get(self._kubeconfig, namespace, pod, port, path, timeout)


def default_namespace(kubeconfig: str | None = None) -> str:
    """The namespace ``kubectl`` would use: the pod's own in a cluster, else the kubeconfig's
    current context's, else ``default``. Never raises (a CLI asks this before anything else)."""
    try:
        if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return kubeconfig_files.in_cluster(os.environ).namespace
        return kubeconfig_files.current_namespace(kubeconfig, os.environ)
    except kubeconfig_files.KubeconfigError:
        return "default"


def decode_json(data: Any) -> JSON:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, TypeError):
        return {"message": data.decode(errors="replace") if isinstance(data, bytes) else str(data)}
    return value if isinstance(value, dict) else {"items": value}
