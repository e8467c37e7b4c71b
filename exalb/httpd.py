"""HTTP servers that a noisy or hostile client cannot exhaust: bounded connections, a rate,
and a deadline on each connection.

Why: the standard library's threading servers accept every connection and start one thread
for each, without a limit, and a connection that sends nothing keeps its thread forever. A
few hundred idle connections (or slow ones, a byte every few seconds) pin a few hundred
threads, and every request that is served competes for the interpreter with the program's
own loop, which is what must stay fast (a speaker's route changes). So:

* **a connection is accepted only when a slot is free** (at most ``max_connections`` open)
  **and the rate allows it** (``max_rate`` per second, bursts of ``max_connections``).
  Until then the connection waits in the kernel's listen queue (``request_queue_size``),
  and beyond that the kernel refuses it: a flood costs the kernel, not the interpreter;
* **a deadline per connection** (``connection_timeout`` seconds from accept, reading the
  request and writing the answer included): each socket read or write times out after that
  long, and a connection past its deadline is shut down however it trickles (checked every
  0.2 s while the server waits and after each request), so its thread ends;
* one request per connection (HTTP/1.0): no idle keep-alive connection stays open.

The handler class is the caller's (``BaseHTTPRequestHandler``); :func:`bounded_server`
builds the TCP (IPv4 or IPv6) variant, :class:`BoundedUnixServer` the unix-socket one.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

if TYPE_CHECKING:
    _Server = socketserver.BaseServer
else:
    _Server = object

WAITED = Counter(
    "exalb_http_accept_waits",
    "times a listener left connections in the kernel's queue (all slots busy, or the rate)",
    ["listener"],
)
REAPED = Counter(
    "exalb_http_connections_reaped",
    "connections closed by the server because they outlived their deadline",
    ["listener"],
)

#: How often a waiting listener checks deadlines and whether it is shutting down.
TICK = 0.2


class BoundedMixIn(socketserver.ThreadingMixIn, _Server):
    """A thread per connection: few at once, at a bounded rate, each with a deadline."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    listener = "http"
    max_connections = 16
    max_rate = 20.0  # accepted connections per second (sustained)
    connection_timeout = 10.0
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def _bounded_init(self) -> None:
        self._open: dict[Any, float] = {}  # request -> deadline
        self._open_lock = threading.Lock()
        self._slots = threading.Semaphore(self.max_connections)
        self._tokens = float(self.max_connections)
        self._refilled = self.clock()
        self._closing = False

    def get_request(self) -> tuple[Any, Any]:
        """Accept only with a free slot and a token; an OSError makes the server skip."""
        waited = False
        while not self._slots.acquire(timeout=TICK):
            waited = True
            self._reap()
            if self._closing:
                raise OSError("shutting down")
        try:
            while (delay := self._take_token()) > 0:
                waited = True
                time.sleep(min(delay, TICK))
                self._reap()
                if self._closing:
                    raise OSError("shutting down")
            if waited:
                WAITED.labels(self.listener).inc()
            request, address = super().get_request()
        except BaseException:
            self._slots.release()
            raise
        request.settimeout(self.connection_timeout)
        with self._open_lock:
            self._open[request] = self.clock() + self.connection_timeout
        return request, address

    def _take_token(self) -> float:
        """0 when a token was taken, else seconds until the next one."""
        now = self.clock()
        burst = float(self.max_connections)
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self.max_rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.max_rate

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def service_actions(self) -> None:
        self._reap()

    def _reap(self) -> None:
        """Shut down connections past their deadline (a blocked read or write returns)."""
        now = self.clock()
        with self._open_lock:
            late = [r for r, deadline in self._open.items() if deadline < now]
            for request in late:
                self._open[request] = float("inf")  # once
        for request in late:
            REAPED.labels(self.listener).inc()
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def shutdown(self) -> None:
        self._closing = True
        super().shutdown()

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection reset, timed out or reaped is the client's business, not a traceback
        on stderr (the handler answers 500 itself for an endpoint that fails)."""

    def _forget(self, request: Any) -> None:
        with self._open_lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()


class BoundedHTTPServer(BoundedMixIn, ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._bounded_init()
        super().__init__(address, handler)


class BoundedHTTPServer6(BoundedHTTPServer):
    """For an IPv6 address (a pod IP on an IPv6-only cluster): http.server binds IPv4
    unless told otherwise."""

    address_family = socket.AF_INET6


class BoundedUnixServer(BoundedMixIn, socketserver.UnixStreamServer):
    """HTTP over a unix stream socket (``HTTPServer`` assumes a (host, port) address)."""

    def __init__(self, path: str, handler: type[BaseHTTPRequestHandler]) -> None:
        self._bounded_init()
        super().__init__(path, handler, bind_and_activate=False)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 16
    max_rate: float = 20.0
    connection_timeout: float = 10.0


def bounded_server(
    host: str,
    port: int,
    handler: type[BaseHTTPRequestHandler],
    *,
    listener: str,
    limits: Limits,
) -> BoundedHTTPServer:
    """An HTTP server on ``host:port`` (IPv4 or IPv6), named ``listener`` in the metrics."""
    cls = BoundedHTTPServer6 if ":" in host else BoundedHTTPServer
    server = cls((host, port), handler)
    configure(server, listener, limits)
    return server


def configure(server: BoundedMixIn, listener: str, limits: Limits) -> None:
    """Set the limits (before the server accepts anything)."""
    server.listener = listener
    server.max_connections = limits.max_connections
    server.max_rate = limits.max_rate
    server.connection_timeout = limits.connection_timeout
    server._bounded_init()
