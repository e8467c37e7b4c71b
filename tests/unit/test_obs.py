"""The shared HTTP server binds IPv4 and IPv6 addresses (pod IPs of either family)."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from exalb.obs import ObservabilityServer


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
