"""The shared HTTP server: binds IPv4 and IPv6 addresses (pod IPs of either family), serves
private endpoints on loopback and the unix socket only, and bounds what a client can hold
(a cap on connections, a deadline on each)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from exalb.obs import ObservabilityServer
from garp.metrics import Metrics


@pytest.mark.parametrize(("address", "host"), [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "[::1]")])
def test_binds_either_family(address: str, host: str) -> None:
    if ":" in host and not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = ObservabilityServer(address, endpoints={"/status": lambda q: {"q": q}}).start()
    try:
        base = f"http://{host}:{server.port}"
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).read() == b"ok\n"
        body = urllib.request.urlopen(f"{base}/status?service=a%2Fb", timeout=5).read()
        assert b'"service": "a/b"' in body
    finally:
        server.stop()


# -- who reaches what, and how much a client can hold -------------------------------------


def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get_unix(path: str, request: str) -> bytes:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(f"GET {request} HTTP/1.0\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_private_endpoints_only_on_loopback_and_the_unix_socket(tmp_path: Path) -> None:
    """/status (every Service, peers, Secret names) is never served on the node address;
    /metrics and the probes are served everywhere."""
    sock = str(tmp_path / "s.sock")
    server = ObservabilityServer(
        "127.0.0.2:0",  # stands for the node address
        private_endpoints={"/status": lambda q: b'{"raw": true}\n'},
        private_address="127.0.0.1:0",
        unix_socket=sock,
    ).start()
    try:
        assert _get("127.0.0.2", server.port, "/status") == (404, b"not found\n")
        assert _get("127.0.0.2", server.port, "/healthz") == (200, b"ok\n")
        assert _get("127.0.0.2", server.port, "/metrics")[0] == 200
        assert server.private_port is not None
        assert _get("127.0.0.1", server.private_port, "/status") == (200, b'{"raw": true}\n')
        assert _get("127.0.0.1", server.private_port, "/metrics")[0] == 200
        assert _get_unix(sock, "/status").endswith(b'{"raw": true}\n')
    finally:
        server.stop()


@pytest.mark.parametrize("address", ["0.0.0.0:0", "198.51.100.1:7474", "[::]:0", "node:1"])
def test_private_address_must_be_loopback(address: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        ObservabilityServer("127.0.0.1:0", private_address=address)


def test_a_broken_endpoint_answers_500_without_its_error_text() -> None:
    def broken(_: object) -> None:
        raise RuntimeError("secret detail")

    server = ObservabilityServer("127.0.0.1:0", endpoints={"/x": broken}).start()
    try:
        assert _get("127.0.0.1", server.port, "/x") == (500, b"internal error (see the log)\n")
    finally:
        server.stop()


def _idle(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def test_connections_beyond_the_cap_wait_in_the_kernels_queue() -> None:
    """With every slot held, a new connection is not accepted (no thread, no interpreter
    time) until a slot frees; then it is served."""
    server = ObservabilityServer("127.0.0.1:0", max_connections=3, connection_timeout=30).start()
    idle = [_idle(server.port) for _ in range(3)]
    try:
        wait_until(lambda: server.httpd.open_connections == 3)
        waiting = _idle(server.port)  # connects: the kernel queues it
        waiting.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):
            waiting.recv(100)  # nobody accepted it
        assert server.httpd.open_connections == 3
        idle[0].close()
        waiting.settimeout(5)
        assert waiting.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_connections_are_accepted_at_a_bounded_rate() -> None:
    server = ObservabilityServer("127.0.0.1:0", max_connections=4, max_rate=10).start()
    try:
        started = time.monotonic()
        for _ in range(20):
            assert _get("127.0.0.1", server.port, "/healthz")[0] == 200
        # a burst of 4, then 10 per second: 16 more take at least 1.5 s
        assert time.monotonic() - started >= 1.5
    finally:
        server.stop()


def test_idle_and_trickling_connections_are_reaped() -> None:
    """A client that sends nothing, or a byte now and then, loses its connection after the
    deadline: it never pins a thread for longer."""
    server = ObservabilityServer("127.0.0.1:0", connection_timeout=0.6).start()
    idle, slow = _idle(server.port), _idle(server.port)
    try:
        started = time.monotonic()
        slow.sendall(b"GET /status HTTP/1.0\r\n")
        for _ in range(10):  # a header line every 0.2 s: each read is fast, the whole is not
            time.sleep(0.2)
            try:
                slow.sendall(b"X-A: b\r\n")
            except OSError:
                break
        assert idle.recv(10) == b""  # closed by the server
        wait_until(lambda: server.httpd.open_connections == 0)
        assert time.monotonic() - started < 5
        assert _get("127.0.0.1", server.port, "/healthz") == (200, b"ok\n")
    finally:
        idle.close()
        slow.close()
        server.stop()


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_garp_metrics_listener_is_bounded_too() -> None:
    """garp serves its metrics on the node's address (host network): the same cap as the
    speaker's listeners, so idle connections from the node network cannot pin its threads,
    and its liveness probe (GET /metrics) is still answered once a slot frees."""
    server = Metrics().serve(0, "127.0.0.1")
    port = int(server.server_address[1])
    idle = [_idle(port) for _ in range(server.max_connections)]
    try:
        wait_until(lambda: server.open_connections == server.max_connections)
        waiting = _idle(port)
        waiting.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        idle[0].close()
        waiting.settimeout(5)
        body = b""
        while chunk := waiting.recv(65536):
            body += chunk
        assert body.startswith(b"HTTP/1.0 200")
        assert b"exalb_l2_" in body
        waiting.close()
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()
