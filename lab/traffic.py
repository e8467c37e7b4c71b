"""Client traffic for zero-loss measurements: a steady stream of new connections and a set of
long-lived ones, from the client's namespace through the router to a Service IP.

Why two kinds: a new connection only needs *some* node to take it and a pod to answer; it
fails when it is sent to a node that drops it (a path withdrawn but still in the router's
FIB, a node gone) or when its packets are split between two nodes by an ECMP change in the
middle of the handshake. A long-lived connection also fails when an ECMP change re-hashes
it to another node *later*: that node has no connection-tracking state for it (kube-proxy
NAT), so the flow is reset or stalls. Drains and rolling upgrades change the router's ECMP
set, so the two are counted apart: the first must be zero, the second says what a router
with hash-threshold ECMP costs (resilient next-hop groups would keep unaffected flows).

* :class:`NewConnections`: every ``1/rate`` seconds one TCP connection (a fresh source
  port, so the router's layer-4 hash spreads them) sends ``GET /`` and must read an answer
  within ``timeout``; refused, reset, timed out or empty counts as failed.
* :class:`LongLived`: ``count`` connections to an echo port; each sends one byte every
  ``interval`` and must get it back within ``timeout``. A connection that errs or stalls is
  broken (counted once, not reopened).

Sockets are created inside the client namespace (:func:`lab.nsnet.in_netns`); traffic never
leaves the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lab.nsnet import in_netns


@dataclass(frozen=True)
class Attempt:
    started: float  # monotonic
    seconds: float
    ok: bool
    body: str = ""
    error: str = ""


def _node_of(body: str) -> str | None:
    for word in body.split():
        if word.startswith("node="):
            return word[5:]
    return None


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class NewConnections:
    """A steady stream of one-request connections; see the module docstring."""

    def __init__(
        self, namespace: str, ip: str, port: int = 80, rate: float = 20.0, timeout: float = 3.0
    ) -> None:
        self.namespace, self.ip, self.port = namespace, ip, port
        self.interval, self.timeout = 1.0 / rate, timeout
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(8, int(rate * timeout) + 4))
        self._thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> NewConnections:
        self._thread.start()
        return self

    def _schedule(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._one, due)
            due += self.interval
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _one(self, due: float) -> None:
        started = time.monotonic()
        with in_netns(self.namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.ip, self.port))
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {self.ip}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
            result = Attempt(due, time.monotonic() - started, bool(body), body,
                             "" if body else "empty")  # fmt: skip
        except OSError as exc:
            result = Attempt(due, time.monotonic() - started, False, error=_error_name(exc))
        finally:
            sock.close()
        with self._lock:
            self.attempts.append(result)

    def stop(self) -> NewConnectionsResult:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True)
        with self._lock:
            attempts = sorted(self.attempts, key=lambda a: a.started)
        return NewConnectionsResult(tuple(attempts))


@dataclass(frozen=True)
class NewConnectionsResult:
    attempts: tuple[Attempt, ...]

    @property
    def total(self) -> int:
        return len(self.attempts)

    @property
    def failed(self) -> int:
        return sum(1 for a in self.attempts if not a.ok)

    def errors(self) -> Counter[str]:
        return Counter(a.error for a in self.attempts if not a.ok)

    def by_node(self) -> Counter[str]:
        """Answers by the node of the pod that served them."""
        return Counter(n for a in self.attempts if a.ok and (n := _node_of(a.body)))

    def failures(self, limit: int = 10) -> list[str]:
        first = self.attempts[0].started if self.attempts else 0.0
        return [f"t+{a.started - first:.2f}s {a.error} after {a.seconds:.2f}s"
                for a in self.attempts if not a.ok][:limit]  # fmt: skip

    def slow(self, threshold: float = 1.0) -> int:
        """Answered, but only after ``threshold`` seconds: at least one packet was lost and
        retransmitted (TCP's first SYN retransmission comes after 1 s)."""
        return sum(1 for a in self.attempts if a.ok and a.seconds >= threshold)

    def summary(self) -> str:
        text = f"{self.failed}/{self.total} failed"
        errors = self.errors()
        if errors:
            text += " (" + ", ".join(f"{k} {v}" for k, v in errors.most_common()) + ")"
        slowest = max((a.seconds for a in self.attempts if a.ok), default=0.0)
        return text + f", {self.slow()} answered only after >= 1 s (slowest {slowest:.2f} s)"


@dataclass
class _Conn:
    sock: socket.socket
    sent_at: float | None = None
    broken: str = ""


@dataclass(frozen=True)
class LongLivedResult:
    opened: int
    failed_to_open: int
    broken: tuple[str, ...] = field(default=())  # one reason per broken connection

    @property
    def survived(self) -> int:
        return self.opened - len(self.broken)

    def summary(self) -> str:
        reasons = Counter(self.broken)
        text = f"{len(self.broken)}/{self.opened} broken"
        if reasons:
            text += " (" + ", ".join(f"{k} {v}" for k, v in reasons.most_common()) + ")"
        if self.failed_to_open:
            text += f", {self.failed_to_open} could not be opened"
        return text


class LongLived:
    """``count`` echo connections kept busy; see the module docstring."""

    def __init__(
        self,
        namespace: str,
        ip: str,
        port: int,
        count: int = 30,
        interval: float = 0.2,
        timeout: float = 2.0,
    ) -> None:
        self.namespace, self.ip, self.port = namespace, ip, port
        self.count, self.interval, self.timeout = count, interval, timeout
        self.conns: list[_Conn] = []
        self.failed_to_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LongLived:
        for _ in range(self.count):
            with in_netns(self.namespace):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect((self.ip, self.port))
                sock.sendall(b"x")
                if sock.recv(1) != b"x":
                    raise OSError("no echo")
            except OSError:
                self.failed_to_open += 1
                sock.close()
                continue
            sock.setblocking(False)
            self.conns.append(_Conn(sock))
        self._thread.start()
        return self

    def alive(self) -> int:
        return sum(1 for c in self.conns if not c.broken)

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                for c in self.conns:
                    if not c.broken and c.sent_at is None:
                        self._send(c, now)
                next_send = now + self.interval
            for c in self.conns:
                if not c.broken and c.sent_at is not None and now - c.sent_at > self.timeout:
                    c.broken = "stalled"
            waiting = [c.sock for c in self.conns if not c.broken and c.sent_at is not None]
            if not waiting:
                self._stop.wait(max(0.0, next_send - time.monotonic()))
                continue
            readable, _, _ = select.select(waiting, [], [], 0.02)
            for c in self.conns:
                if c.sock in readable:
                    self._receive(c)

    @staticmethod
    def _send(c: _Conn, now: float) -> None:
        try:
            c.sock.send(b"x")
            c.sent_at = now
        except OSError as exc:
            c.broken = _error_name(exc)

    @staticmethod
    def _receive(c: _Conn) -> None:
        try:
            data = c.sock.recv(64)
        except BlockingIOError:
            return
        except OSError as exc:
            c.broken = _error_name(exc)
            return
        if not data:
            c.broken = "closed"
        else:
            c.sent_at = None

    def stop(self) -> LongLivedResult:
        self._stop.set()
        self._thread.join(5)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.sock.close()
        return LongLivedResult(
            len(self.conns), self.failed_to_open, tuple(c.broken for c in self.conns if c.broken)
        )
