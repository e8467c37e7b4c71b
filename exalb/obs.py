"""Observability shared by every exalb program: JSON logs on stderr and one small HTTP server.

Logs go to stderr as one JSON object per line (structlog), because stdout of a process that
ExaBGP runs belongs to ExaBGP, and because log pipelines parse JSON. The HTTP server serves
``/metrics`` (prometheus_client's registry), ``/healthz``, ``/readyz`` and whatever JSON
endpoints a program adds (the speaker's ``/status``); it binds where it is told, which in
tests is loopback or a test namespace only.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


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


class ObservabilityServer:
    """``/metrics``, ``/healthz``, ``/readyz`` and extra JSON endpoints on one port."""

    def __init__(
        self,
        address: str,
        *,
        endpoints: Mapping[str, JsonEndpoint] | None = None,
        ready: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
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

        self.httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="obs-http"
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> ObservabilityServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        params: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            params[key] = value
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
            structlog.get_logger(__name__).exception("http endpoint failed", path=path)
            self._send(req, 500, f"{exc}\n".encode(), "text/plain")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
