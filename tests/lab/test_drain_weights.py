"""What a router does with exalb's graceful drain and weighted ECMP, with real ExaBGP 5.0.15
and real FRR 8.4 (Debian) in namespaces; the oracle is FRR's JSON and r1's kernel FIB.

``containerlab/bgp-driver``: one node n1 with two links to r1, so one prefix announced on
both sessions is a two-path ECMP route at r1 (via 198.18.0.2 and 198.18.0.6), which is all
it takes to see a path being de-preferred or weighted. The topology is iBGP (as it is); the
eBGP cases reconfigure r1 (``remote-as 64501``) before ExaBGP starts.

* GRACEFUL_SHUTDOWN: over iBGP exalb's LOCAL_PREF 0 moves the path out of the multipath set;
  over eBGP LOCAL_PREF is not sent and FRR itself sets LOCAL_PREF 0 on a path carrying
  65535:0 (its default, no ``bgp graceful-shutdown`` needed: that command is for FRR's *own*
  maintenance). Either way the FIB drops the next hop before the withdraw, which then
  changes nothing in the FIB.
* Link bandwidth: 3 and 1 endpoints' worth become kernel weights 75 and 25 without any
  configuration at FRR; changing them changes the weights without a session reset.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

import pytest

from exalb.config.model import Peer
from lab.runner import Lab
from lab.wait import wait_for
from speaker import linkbw
from speaker.decisions import Route
from speaker.drain import graceful_shutdown
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver
from tests.lab.test_bgp_driver import (
    ROUTER,
    DriverThread,
    _same_session,
    _session,
    established,
    start_exabgp,
)

pytestmark = pytest.mark.lab
ip = ipaddress.ip_address
net = ipaddress.ip_network
PREFIX = "203.0.113.10/32"
A, B = "198.18.0.2", "198.18.0.6"  # n1's two addresses = r1's two next hops


def peers(asn: int) -> tuple[Peer, Peer]:
    """n1's sessions to r1's two addresses; ``asn`` 64500 = iBGP, 64501 = eBGP."""
    return (
        Peer(name="a", my_asn=asn, peer_asn=64500, peer_address=ip("198.18.0.1"),
             source_address=ip(A), hold_time=9),
        Peer(name="b", my_asn=asn, peer_asn=64500, peer_address=ip("198.18.0.5"),
             source_address=ip(B), hold_time=9),
    )  # fmt: skip


@pytest.fixture(params=["ibgp", "ebgp"])
def lab_and_asn(
    request: pytest.FixtureRequest, lab_factory: Callable[[str], Lab]
) -> tuple[Lab, int]:
    lab = lab_factory("bgp-driver")
    if request.param == "ibgp":
        return lab, 64500
    lab.vtysh(ROUTER, "configure terminal", "router bgp 64500",
              f"neighbor {ip('198.18.0.2')} remote-as 64501",
              f"neighbor {ip('198.18.0.6')} remote-as 64501")  # fmt: skip
    return lab, 64501


def start(lab: Lab, asn: int) -> DriverThread:
    sock, _, rendered = start_exabgp(lab, list(peers(asn)))
    d = DriverThread(Driver(unix_connector(sock)))
    d.call(asyncio.sleep(0))
    d.loop.call_soon_threadsafe(d.driver.set_neighbors, rendered.neighbors)
    wait_for("both sessions", lambda: established(lab, A) and established(lab, B), 20, 0.02)
    return d


def fib_weights(lab: Lab) -> dict[str, int]:
    route = lab.route(ROUTER, PREFIX)
    return route.weights if route else {}


def frr_path(lab: Lab, via: str) -> dict[str, object]:
    entry = lab.frr(ROUTER).bgp_route(PREFIX) or {}
    paths = [p for p in entry.get("paths", []) if p["nexthops"][0]["ip"] == via]
    assert len(paths) == 1, entry
    return dict(paths[0])


def test_graceful_shutdown_moves_traffic_before_the_withdraw(lab_and_asn: tuple[Lab, int]) -> None:
    lab, asn = lab_and_asn
    d = start(lab, asn)
    try:
        routes = [Route(net(PREFIX), "a"), Route(net(PREFIX), "b")]
        d.set_routes(routes)
        wait_for("two paths", lambda: set(fib_weights(lab)) == {A, B}, 10, 0.01)
        ibgp = {"a", "b"} if asn == 64500 else set()
        drained_b = [routes[0], *graceful_shutdown([routes[1]], ibgp)]
        sent = time.monotonic()
        d.set_routes(drained_b)
        wait_for("b's path out of r1's FIB", lambda: set(fib_weights(lab)) == {A}, 10, 0.002)
        took = time.monotonic() - sent
        path = frr_path(lab, B)
        assert path["locPrf"] == 0, path  # sent (iBGP) or set by FRR itself (eBGP)
        assert path["community"] == {"string": "graceful-shutdown", "list": ["gracefulShutdown"]}
        assert not path.get("multipath") and not path.get("bestpath")
        print(f"\n{'iBGP' if asn == 64500 else 'eBGP'}: GRACEFUL_SHUTDOWN -> next hop out of "
              f"r1's FIB in {took * 1000:.0f} ms")  # fmt: skip
        # the withdraw that follows the drain changes nothing in the FIB
        d.set_routes([routes[0]])
        d.converged()
        wait_for("b's path gone from FRR", lambda: len(
            (lab.frr(ROUTER).bgp_route(PREFIX) or {}).get("paths", [])) == 1, 10, 0.02)  # fmt: skip
        assert set(fib_weights(lab)) == {A}
        # and announced normally again (uncordon / new pod): back in the ECMP set
        d.set_routes(routes)
        wait_for("two paths again", lambda: set(fib_weights(lab)) == {A, B}, 10, 0.01)
    finally:
        d.stop()


def test_link_bandwidth_weights_the_fib_without_session_resets(
    lab_and_asn: tuple[Lab, int],
) -> None:
    lab, asn = lab_and_asn
    d = start(lab, asn)
    try:
        sessions = {a: _session(lab, a) for a in (A, B)}

        def weighted(na: int, nb: int) -> list[Route]:
            return [
                Route(net(PREFIX), "a", extended_communities=(linkbw.link_bandwidth(asn, na),)),
                Route(net(PREFIX), "b", extended_communities=(linkbw.link_bandwidth(asn, nb),)),
            ]

        d.set_routes(weighted(3, 1))
        wait_for("weights 75:25", lambda: fib_weights(lab) == {A: 75, B: 25}, 10, 0.01)
        ext = frr_path(lab, A)["extendedCommunity"]
        assert "LB:" in str(ext) and "3.000 Mbps" in str(ext), ext
        d.set_routes(weighted(1, 2))
        wait_for("weights 33:66", lambda: fib_weights(lab) == {A: 33, B: 66}, 10, 0.01)
        d.set_routes(weighted(1, 1))
        wait_for("weights 50:50", lambda: fib_weights(lab) == {A: 50, B: 50}, 10, 0.01)
        # one path without the community: FRR falls back to plain ECMP (draft's rule)
        d.set_routes([weighted(3, 1)[0], Route(net(PREFIX), "b")])
        wait_for("plain ECMP", lambda: fib_weights(lab) == {A: 1, B: 1}, 10, 0.01)
        d.converged()
        assert all(_same_session(sessions[a], _session(lab, a)) for a in (A, B)), (
            "a weight change reset a session"
        )
    finally:
        d.stop()
