"""Observability shared by every exalb program: JSON logs on stderr and one small HTTP server.

Logs go to stderr as one JSON object per line (structlog), because stdout of a process that
ExaBGP runs belongs to ExaBGP, and because log pipelines parse JSON.

The HTTP server serves ``/metrics`` (prometheus_client's registry), ``/healthz`` and
``/readyz`` on ``address``: what Prometheus and the kubelet's probes need, on the pod (for a
speaker: the node) address. JSON endpoints that tell more than that (the speaker's
``/status``: every LoadBalancer Service, peers, ASNs, Secret names) are *private*: served
only on a loopback address (``private_address``) and on a unix socket (``unix_socket``),
never on ``address``. Who reaches those, and how, is the README's "Security model": root
on the node, and users the API server lets port-forward to the speaker pods
(a port-forward dials the pod's loopback; the pod proxy cannot).

Every listener is bounded (:mod:`exalb.httpd`): a connection is accepted only with a free
slot (``max_connections``) and within a rate (``max_rate`` per second), the rest wait in
the kernel's queue; each has a deadline, one request each. A hostile or idle client costs
at most one of a few threads for a few seconds, and a flood costs the kernel, not the
program's loop.

The unix socket is created 0600: a path on a shared filesystem reaches a speaker in another
network namespace (a node namespace in the lab) without bridging a network, and file
permissions are the access control. ``kubectl exalb --speaker n1=unix:///run/exalb/status.sock``
reads it this way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from exalb import httpd

log = structlog.get_logger(__name__)


def configure_logging(level: str = "info", *, stream: Any = None) -> None:
    """structlog → JSON lines on stderr (or ``stream``), with ISO timestamps."""
    lvl = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, stream=stream or sys.stderr, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


JsonEndpoint = Callable[[Mapping[str, str]], Any]
"""An endpoint: query parameters -> a JSON-able value, or ``bytes`` already encoded."""


def _claim_socket_path(path: str) -> None:
    """Remove a stale socket file left by a crashed process; refuse to replace anything else
    (a live server's socket, or a file that is not a socket)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by a running server")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); an empty host is 127.0.0.1."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ObservabilityServer:
    """``/metrics``, ``/healthz``, ``/readyz`` (and ``endpoints``) on ``address``; those and
    ``private_endpoints`` on ``private_address`` and ``unix_socket``. See the module
    docstring for who may reach which."""

    def __init__(
        self,
        address: str,
        *,
        endpoints: Mapping[str, JsonEndpoint] | None = None,
        private_endpoints: Mapping[str, JsonEndpoint] | None = None,
        private_address: str | None = None,
        ready: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
        unix_socket: str | None = None,
        max_connections: int = 16,
        max_rate: float = 20.0,
        connection_timeout: float = 10.0,
    ) -> None:
        self._ready = ready
        self._registry = registry
        public = dict(endpoints or {})
        private = {**public, **(private_endpoints or {})}
        limits = httpd.Limits(max_connections, max_rate, connection_timeout)
        if private_address is not None and not is_loopback(split_address(private_address)[0]):
            raise ValueError(f"{private_address}: private endpoints are served on loopback only")
        if unix_socket is not None:
            _claim_socket_path(unix_socket)  # before binding a port: a refusal leaks nothing
        self.servers: list[tuple[str, httpd.BoundedMixIn]] = []
        try:
            host, port = split_address(address)
            self.httpd = httpd.bounded_server(
                host, port, self._handler(public), listener="public", limits=limits
            )
            self.servers.append(("obs-http", self.httpd))
            self.private: httpd.BoundedHTTPServer | None = None
            if private_address is not None:
                host, port = split_address(private_address)
                self.private = httpd.bounded_server(
                    host, port, self._handler(private), listener="loopback", limits=limits
                )
                self.servers.append(("obs-loopback", self.private))
            self.unix_socket = unix_socket
            self.unixd: httpd.BoundedUnixServer | None = None
            if unix_socket is not None:
                self.unixd = self._unix(unix_socket, self._handler(private), limits)
                self.servers.append(("obs-unix", self.unixd))
        except BaseException:
            for _, server in self.servers:
                server.server_close()
            raise
        self._threads = [
            threading.Thread(target=srv.serve_forever, daemon=True, name=name)
            for name, srv in self.servers
        ]

    @staticmethod
    def _unix(
        path: str, handler: type[BaseHTTPRequestHandler], limits: httpd.Limits
    ) -> httpd.BoundedUnixServer:
        unixd = httpd.BoundedUnixServer(path, handler)
        httpd.configure(unixd, "unix", limits)
        try:
            unixd.server_bind()
            # 0600 before listen(): nobody but the owner (or root) ever connects
            os.chmod(path, 0o600)
            unixd.server_activate()
        except BaseException:
            unixd.server_close()
            raise
        return unixd

    def _handler(self, endpoints: Mapping[str, JsonEndpoint]) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self, endpoints)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def private_port(self) -> int | None:
        return None if self.private is None else int(self.private.server_address[1])

    def start(self) -> ObservabilityServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for (_, server), thread in zip(self.servers, self._threads, strict=True):
            if thread.is_alive():
                server.shutdown()
            server.server_close()
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_socket)

    def _handle(self, req: BaseHTTPRequestHandler, endpoints: Mapping[str, JsonEndpoint]) -> None:
        path, _, query = req.path.partition("?")
        params: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            params[unquote(key)] = unquote(value)  # ?service=ns%2Fname == ?service=ns/name
        try:
            if path == "/metrics":
                self._send(req, 200, generate_latest(self._registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(req, 200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ok = self._ready()
                self._send(req, 200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
            elif path in endpoints:
                answer = endpoints[path](params)
                if not isinstance(answer, bytes):
                    answer = json.dumps(answer, indent=2, default=str).encode() + b"\n"
                self._send(req, 200, answer, "application/json")
            else:
                self._send(req, 404, b"not found\n", "text/plain")
        except Exception:  # a broken endpoint must not kill the server
            log.exception("http endpoint failed", path=path)
            self._send(req, 500, b"internal error (see the log)\n", "text/plain")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
