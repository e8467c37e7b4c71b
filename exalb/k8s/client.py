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

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from exalb.k8s.resources import Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]


#: Seconds without a byte (not even a BOOKMARK) after which a watch is given up.
WATCH_READ_TIMEOUT = 90.0


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
        self._api = k8s_client.ApiClient(cfg)
        self._retry_for = retry_for
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
            return self._api.call_api(method_, url, hdrs, body_, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"connection error: {exc}") from exc
        except k8s_client.ApiException as exc:
            raise ApiError(exc.status or 0, str(exc.reason), _decode(exc.body)) from exc

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


def _decode(data: Any) -> JSON:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, TypeError):
        return {"message": data.decode(errors="replace") if isinstance(data, bytes) else str(data)}
    return value if isinstance(value, dict) else {"items": value}
