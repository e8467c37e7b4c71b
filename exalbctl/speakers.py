"""How ``kubectl exalb`` reaches the speakers' ``/status`` documents.

Two ways, chosen in this order:

1. **Explicit** ``--speaker NAME=URL`` (repeatable) or ``EXALB_SPEAKERS="n1=URL,n2=URL"``.
   ``URL`` is ``http://host:port`` (the speaker's ``--status-addr``, a loopback address) or
   ``unix:///path/to/socket`` (its ``--status-socket``). For labs and debugging on the node:
   a unix socket on the host reaches a speaker that lives in another network namespace
   without bridging any network, and needs no cluster at all.
2. **Discovery** (the default in a cluster): list the speaker pods by label
   (``app.kubernetes.io/part-of=exalb,app.kubernetes.io/component=speaker``, as the Helm chart
   sets them) in the speaker namespace (``--speaker-namespace``, env ``EXALB_NAMESPACE`` or
   ``METALLB_NAMESPACE``, default ``metallb-system``) and read each pod's container port
   named ``status`` (the chart's ``speaker.statusPort``, 7474) **through a port-forward by
   the API server** (``/api/v1/namespaces/<ns>/pods/<pod>/portforward``). Why: the speaker
   serves ``/status`` (every LoadBalancer Service, peers, ASNs, Secret names) on the
   node's loopback only, so nobody on the node network or the pod network reads it. A
   port-forward dials the pod's loopback (for a host-network pod, the node's), after the
   API server has authorized the user (``get`` and ``create`` on ``pods/portforward``
   in that namespace, audited as such; the websocket this client uses is checked for
   both). The pod proxy cannot: it dials the pod IP, and it drops
   the user's credentials, so a speaker behind it could not tell who asks. No
   ``kubectl port-forward`` process, no NodePort, no extra Service.

   A speaker pod without a ``status`` port is of a version that served ``/status`` on its
   ``metrics`` port: it is read through the pod proxy (``get pods/proxy``) as before, so
   ``kubectl exalb`` keeps working during a rolling upgrade.

Every speaker is read concurrently, with a timeout; one that cannot be reached becomes a
:class:`~exalbctl.report.SpeakerStatus` with an ``error`` (shown as unreachable), never an
exception, so one dead node cannot hide the answers of the others.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from exalb.http_get import get_once
from exalb.k8s.client import ApiError
from exalbctl.report import SpeakerStatus

DEFAULT_NAMESPACE = "metallb-system"
DEFAULT_SELECTOR = "app.kubernetes.io/part-of=exalb,app.kubernetes.io/component=speaker"
DEFAULT_PORT = 7474  # charts/exalb values: speaker.statusPort
PORT_NAME = "status"
LEGACY_PORT_NAME = "metrics"  # speakers that served /status there (read via the pod proxy)
STATUS_PATH = "/status"


@dataclass(frozen=True)
class Target:
    """Where one speaker's ``/status`` is read: a URL, or a pod through the API server."""

    name: str
    url: str | None = None  # http://host:port or unix:///path
    pod: str | None = None  # namespace/name, read through the API server
    port: int | None = None
    error: str | None = None  # known to be unreachable before trying (e.g. pod Pending)
    proxy: bool = False  # the pod proxy (an older speaker's metrics port), not a port-forward

    @property
    def source(self) -> str:
        if self.url is not None:
            return self.url
        return f"pod {self.pod}:{self.port}" + (" (pod proxy)" if self.proxy else "")


def parse_speaker(text: str) -> Target:
    """``NAME=URL`` with URL ``http(s)://...`` or ``unix:///path`` → :class:`Target`."""
    name, sep, url = text.strip().partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ValueError(f"{text!r}: expected NAME=URL (http://host:port or unix:///path)")
    if url.startswith("unix://"):
        if not url[len("unix://") :].startswith("/"):
            raise ValueError(f"{text!r}: a unix URL needs an absolute path: unix:///path")
    elif not url.startswith(("http://", "https://")):
        raise ValueError(f"{text!r}: URL must start with http://, https:// or unix://")
    return Target(name=name, url=url)


def parse_speakers(specs: Iterable[str]) -> list[Target]:
    """Repeated ``--speaker`` values; each may also hold a comma-separated list (the form of
    ``EXALB_SPEAKERS``)."""
    return [parse_speaker(part) for spec in specs for part in spec.split(",") if part.strip()]


def pod_proxy_path(namespace: str, pod: str, port: int, path: str = STATUS_PATH) -> str:
    """The API server's proxy to one pod port: ``/api/v1/namespaces/NS/pods/POD:PORT/proxy``."""
    return (
        f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/"
        f"{quote(pod, safe='')}:{int(port)}/proxy{path}"
    )


def _status_port(pod: Mapping[str, Any], default: int) -> tuple[int, bool]:
    """The pod's ``status`` port (port-forward); else its ``metrics`` port (an older
    speaker: pod proxy); else ``default`` (port-forward)."""
    named: dict[str, int] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") in (PORT_NAME, LEGACY_PORT_NAME) and port.get("containerPort"):
                named.setdefault(str(port["name"]), int(port["containerPort"]))
    if PORT_NAME in named:
        return named[PORT_NAME], False
    if LEGACY_PORT_NAME in named:
        return named[LEGACY_PORT_NAME], True
    return default, False


def targets_from_pods(pods: Sequence[Mapping[str, Any]], *, default_port: int) -> list[Target]:
    """One target per speaker pod, named by its node; a pod that cannot answer yet (not
    Running, no IP) is a target with an ``error`` so it is listed, not silently dropped."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        node = str(spec.get("nodeName") or meta.get("name"))
        port, proxy = _status_port(pod, default_port)
        phase = status.get("phase") or "Unknown"
        error = None
        if phase != "Running":
            error = f"pod {ref} is {phase}"
        elif not status.get("podIP"):
            error = f"pod {ref} has no IP yet"
        out.append(Target(name=node, pod=ref, port=port, error=error, proxy=proxy))
    return sorted(out, key=lambda t: (t.name, t.pod or ""))


# -- reading one speaker ------------------------------------------------------------------


class ProxyGetter(Protocol):
    """The one call pod-proxy reads need (``KubeClient.request`` fits)."""

    def __call__(
        self, method: str, path: str, *, query: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]: ...


class ForwardGetter(Protocol):
    """A GET through a port-forward (``KubeClient.port_forward_get`` fits)."""

    def __call__(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float
    ) -> tuple[int, bytes]: ...


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def status_path(service: str | None) -> str:
    """``/status`` narrowed to one Service (``namespace/name``; both are DNS labels, so the
    slash is the only character worth keeping unescaped)."""
    return STATUS_PATH + (f"?service={quote(service, safe='/')}" if service else "")


def _get_http(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # http(s) only: parse_speaker
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _document(code: int, body: bytes) -> dict[str, Any]:
    if code != 200:
        raise OSError(f"HTTP {code}: {body.decode(errors='replace').strip()[:200]}")
    return _checked(json.loads(body))


def _checked(doc: object) -> dict[str, Any]:
    if not isinstance(doc, dict) or "node" not in doc or "services" not in doc:
        raise ValueError("the answer is not a speaker /status document")
    return doc


def fetch(
    target: Target,
    *,
    service: str | None = None,
    timeout: float = 10.0,
    proxy: ProxyGetter | None = None,
    forward: ForwardGetter | None = None,
) -> SpeakerStatus:
    """Read one speaker; every failure becomes ``SpeakerStatus.error``."""
    if target.error is not None:
        return SpeakerStatus(target.name, target.source, error=target.error)
    try:
        doc = _read(target, service, timeout, proxy, forward)
    except Exception as exc:  # noqa: BLE001 (any failure is this speaker's answer, shown; never hides the others)
        return SpeakerStatus(target.name, target.source, error=_describe(exc))
    return SpeakerStatus(target.name, target.source, doc=doc)


def _read(
    target: Target,
    service: str | None,
    timeout: float,
    proxy: ProxyGetter | None,
    forward: ForwardGetter | None,
) -> dict[str, Any]:
    if target.url is not None and target.url.startswith("unix://"):
        return _document(
            *get_once(
                _UnixHTTPConnection(target.url[len("unix://") :], timeout), status_path(service)
            )
        )
    if target.url is not None:
        return _document(*_get_http(target.url.rstrip("/") + status_path(service), timeout))
    ns, _, pod = str(target.pod).partition("/")
    port = int(target.port or DEFAULT_PORT)
    if target.proxy:
        if proxy is None:
            raise OSError("no API server access for the pod proxy")
        query = {"service": service} if service else None
        return _checked(proxy("GET", pod_proxy_path(ns, pod, port), query=query, timeout=timeout))
    if forward is None:
        raise OSError("no API server access for the port-forward")
    return _document(*forward(ns, pod, port, status_path(service), timeout=timeout))


_EXCEPTION_TEXT: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (FileNotFoundError, "no such socket (is the speaker running with --status-socket?)"),
    (ConnectionRefusedError, "connection refused"),
    ((TimeoutError, socket.timeout), "timed out"),
    (json.JSONDecodeError, "the answer is not JSON"),
)


def _describe(exc: Exception) -> str:
    """One short line: why this speaker could not be read."""
    if isinstance(exc, ApiError):  # the API server (403: not allowed) or the port-forward
        return ((f"{exc.status} " if exc.status else "") + exc.message).splitlines()[0][:240]
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    for kinds, text in _EXCEPTION_TEXT:
        if isinstance(exc, kinds):
            return text
    text = str(exc) or type(exc).__name__
    if "timed out" in text.lower():  # e.g. urllib3's MaxRetryError around a read timeout
        return "timed out (through the API server's pod proxy)"
    return text.splitlines()[0][:160]


def fetch_all(
    targets: Sequence[Target],
    fetch_one: Callable[[Target], SpeakerStatus],
    workers: int = 16,
) -> list[SpeakerStatus]:
    """Read every speaker concurrently (a slow node costs one timeout, not one per node)."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(targets))) as pool:
        return list(pool.map(fetch_one, targets))
