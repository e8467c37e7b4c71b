"""The README's lab demo, run as a test: every step it shows is asserted."""

from __future__ import annotations

import io
import ipaddress
import os
import re
import shutil
from pathlib import Path

import pytest

from lab import netns
from lab.demo import Demo

pytestmark = [pytest.mark.lab, pytest.mark.k8s]


@pytest.fixture
def root_with_frr() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not Path("/usr/lib/frr/bgpd").exists() or shutil.which("ip") is None:
        pytest.skip("needs Debian's frr and iproute2")


def test_demo_flow(root_with_frr: None) -> None:
    out = io.StringIO()
    demo = Demo(out, requests=60)
    try:
        result = demo.run()
        run = demo.lab.run if demo.lab else ""
    finally:
        demo.close()
    text = out.getvalue()
    # The Service got an IP from the sample pool, and kubectl shows it.
    ip = ipaddress.ip_address(result.service_ip)
    assert ipaddress.ip_address("203.0.113.10") <= ip <= ipaddress.ip_address("203.0.113.20")
    assert "web    LoadBalancer" in text and result.service_ip in text
    # r1 has one nexthop per node, and the client's requests reach every node.
    assert result.nexthops_before == ["198.18.0.10", "198.18.0.2", "198.18.0.6"]
    assert set(result.spread_before) == {"n1", "n2", "n3"}
    assert sum(result.spread_before.values()) == 60
    # n2 fails: its path goes, traffic moves to the others, no request is lost.
    assert result.nexthops_after == ["198.18.0.10", "198.18.0.2"]
    assert set(result.spread_after) == {"n1", "n3"}
    assert sum(result.spread_after.values()) == 60
    assert result.failed_requests == 0
    # kubectl exalb (the real plugin through kubectl) explains it, before and after.
    status, routes, why = result.plugin_outputs
    assert "demo/web" in status and "n1,n2,n3" in status
    assert len(re.findall(r"\bsent\s+demo/web", routes)) == 3
    assert re.search(r"^\s*n2\s+-\s+\?\s+unreachable", why, re.M)
    assert "announced by BGP from: n1,n3" in why
    print(f"failover (n2 link down + processes killed -> r1 FIB): {result.failover_ms:.0f} ms")
    # Nothing is left behind.
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(f"exalb-{run}-")]
