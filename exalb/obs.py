"""Observability shared by every exalb program: JSON logs on stderr and one small HTTP server.

Logs go to stderr as one JSON object per line (structlog), because stdout of a process that
ExaBGP runs belongs to ExaBGP, and because log pipelines parse JSON. The HTTP server serves
``/metrics`` (prometheus_client's registry), ``/healthz``, ``/readyz`` and whatever JSON
endpoints a program adds (the speaker's ``/status``); it binds where it is told, which in
tests is loopback or a test namespace only.

It can serve the same endpoints on a unix socket too (``unix_socket``). Why: a speaker runs
in its node's network namespace (host network in a cluster, a node namespace in the lab); a
path on a shared filesystem reaches it from any namespace without bridging a network, and
file permissions (0600, root) are the access control. ``kubectl exalb --speaker
n1=unix:///run/exalb/status.sock`` reads it this way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

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


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    """HTTP over a unix stream socket (``HTTPServer`` assumes a (host, port) address)."""

    daemon_threads = True


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


class _HTTPServer6(ThreadingHTTPServer):
    """For an IPv6 bind address (``[2001:db8::1]:7472``, e.g. a pod IP on an IPv6-only
    cluster): http.server binds IPv4 unless told otherwise."""

    address_family = socket.AF_INET6


class ObservabilityServer:
    """``/metrics``, ``/healthz``, ``/readyz`` and extra JSON endpoints on one port, and
    optionally the same on a unix socket."""

    def __init__(
        self,
        address: str,
        *,
        endpoints: Mapping[str, JsonEndpoint] | None = None,
        ready: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
        unix_socket: str | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self._endpoints = dict(endpoints or {})
        self._ready = ready
        self._registry = registry
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        if unix_socket is not None:
            _claim_socket_path(unix_socket)  # before binding the port: a refusal leaks nothing
        bind_host = host.strip("[]") or "127.0.0.1"
        server_class = _HTTPServer6 if ":" in bind_host else ThreadingHTTPServer
        self.httpd = server_class((bind_host, int(port)), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="obs-http"
        )
        self.unix_socket = unix_socket
        self.unixd: _UnixHTTPServer | None = None
        self._unix_thread: threading.Thread | None = None
        if unix_socket is not None:
            unixd = _UnixHTTPServer(unix_socket, Handler, bind_and_activate=False)
            try:
                unixd.server_bind()
                # 0600 before listen(): nobody but the owner (root) ever connects
                os.chmod(unix_socket, 0o600)
                unixd.server_activate()
            except BaseException:
                unixd.server_close()
                self.httpd.server_close()
                raise
            self.unixd = unixd
            self._unix_thread = threading.Thread(
                target=self.unixd.serve_forever, daemon=True, name="obs-unix"
            )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> ObservabilityServer:
        self._thread.start()
        if self._unix_thread is not None:
            self._unix_thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.unixd is not None:
            if self._unix_thread is not None and self._unix_thread.is_alive():
                self.unixd.shutdown()
            self.unixd.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.unix_socket))

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
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
            elif path in self._endpoints:
                body = json.dumps(self._endpoints[path](params), indent=2, default=str)
                self._send(req, 200, body.encode() + b"\n", "application/json")
            else:
                self._send(req, 404, b"not found\n", "text/plain")
        except Exception as exc:  # a broken endpoint must not kill the server
            log.exception("http endpoint failed", path=path)
            self._send(req, 500, f"{exc}\n".encode(), "text/plain")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
