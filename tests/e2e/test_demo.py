"""The README's demo (scripts/demo.sh), run as a test: every step it shows is asserted."""

from __future__ import annotations

import io
import ipaddress
import re

import pytest

from lab import netns
from lab.demo import Demo, in_range
from lab.demo_config import L2_TO, POOL
from tests.e2e.conftest import cluster_unavailable

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

NODE_IPS = ["198.51.100.11", "198.51.100.12", "198.51.100.13"]


def test_demo_flow() -> None:
    reason = cluster_unavailable()
    if reason:
        pytest.fail(f"the demo {reason}", pytrace=False)
    out = io.StringIO()
    demo = Demo(out, requests=60)
    try:
        result = demo.run()
        run = demo.lab.run if demo.lab else ""
    finally:
        demo.close()
    text = out.getvalue()
    print(text)
    # BGP: the Service got an IP from the pool, r1 has one nexthop per node, the client's
    # requests reach pods on every node
    assert in_range(result.service_ip, POOL)
    assert "web    LoadBalancer" in text and result.service_ip in text
    assert result.nexthops_before == NODE_IPS
    assert set(result.spread_before) == {"n1", "n2", "n3"}
    assert sum(result.spread_before.values()) == 60
    # n2 fails: its path goes, traffic moves to the others, no request is lost
    assert result.nexthops_after == [NODE_IPS[0], NODE_IPS[2]]
    assert set(result.spread_after) == {"n1", "n3"}
    assert sum(result.spread_after.values()) == 60
    assert result.failed_requests == 0
    # kubectl exalb (the real plugin through kubectl and the API server's port-forward)
    status, routes, why, l2_status = result.plugin_outputs
    assert "demo/web" in status and "n1,n2,n3" in status
    assert len(re.findall(r"\bsent\s+demo/web", routes)) == 3
    assert re.search(r"^\s*n2\s+-\s+\?\s+unreachable", why, re.M)
    assert "announced by BGP from: n1,n3" in why
    # L2 with the legacy ConfigMap: two Services share one IP of the layer2 range
    assert result.l2_ips[0] == result.l2_ips[1] == result.l2_ip
    assert in_range(result.l2_ip, L2_TO)
    assert ipaddress.ip_address(result.l2_ip) in ipaddress.ip_network("198.51.100.0/24")
    assert result.l2_owner_before in {"n1", "n2", "n3"}
    assert re.search(
        rf"web-l2-http\s+{re.escape(result.l2_ip)}\s+default\s+-\s+{result.l2_owner_before}\b",
        l2_status,
    )
    # the owner fails: another node answers the client
    assert result.l2_owner_after not in ("", result.l2_owner_before)
    print(
        f"BGP failover (n2 down -> r1 FIB): {result.failover_ms:.0f} ms; L2 failover seen by the "
        f"client: {result.l2_client_gap_s * 1000:.0f} ms, {result.l2_failed_requests} failed; "
        f"helm install -> first route {result.install_to_route_s:.1f} s"
    )
    # nothing is left behind
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(f"exalb-{run}-")]
