"""exalb against BIRD 2 as a new user's router would run it (``containerlab/bgp-bird``).

r1 is BIRD (Debian's bird2): eBGP with each node (its own AS) and iBGP with BIRD as route
reflector (the nodes presenting AS 64500 on a second subnet of their link), IPv4 and IPv6,
graceful restart on; BGP routes go to the kernel as ECMP routes. The oracle is BIRD's own
view (``birdc``, parsed by ``lab/bird.py``) and r1's kernel FIB. The router-agnostic tests
(withdraw, ECMP, SIGKILL, graceful restart, restarted pod) run against BIRD too, from
``test_speaker.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab import bird
from lab.controlplane import ControlPlane
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.api_objects import advertisement, pool
from tests.lab.speaker_lab import NODES, ROUTER, NodeNet, SpeakerLab, bgp_peer, speaker_lab

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

VIP4, VIP6 = "203.0.113.120", "2001:db8:ffff::120"


@pytest.fixture
def bird_sl(lab_factory: Any, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    if not bird.available():
        pytest.skip("BIRD 2 is not installed (Debian's bird2)")
    lab: Lab = lab_factory("bgp-bird")
    with speaker_lab(lab, speaker_control_plane) as sl:
        yield sl


def ibgp_addresses(n: NodeNet) -> tuple[str, str, str, str]:
    """(node v4, r1 v4, node v6, r1 v6) of the node's iBGP subnet (bgp-bird.clab.yml)."""
    i = n.ipv4.rsplit(".", 1)[1]
    link = n.ipv6.split(":")[3]  # 2001:db8:0:<link>::2
    r1 = int(i) - 1
    return f"198.18.1.{i}", f"198.18.1.{r1}", f"2001:db8:1:{link}::2", f"2001:db8:1:{link}::1"


def ibgp_peer(n: NodeNet, family: int) -> dict[str, Any]:
    _, r4, _, r6 = ibgp_addresses(n)
    return bgp_peer(
        n,
        family,
        myASN=64500,
        peerASN=64500,
        peerAddress=r4 if family == 4 else r6,
        enableGracefulRestart=True,
    ) | {"metadata": {"name": f"{ROUTER}-{n.name}-ibgp{family}"}}


def test_ebgp_and_ibgp_route_reflector_v4_v6_attributes_ecmp_withdraw(
    bird_sl: SpeakerLab,
) -> None:
    sl, lab, c = bird_sl, bird_sl.lab, bird_sl.cluster
    r1 = lab.bird(ROUTER)
    ebgp = [bgp_peer(n, f, enableGracefulRestart=True) for n in NODES.values() for f in (4, 6)]
    ibgp = [ibgp_peer(n, f) for n in NODES.values() for f in (4, 6)]
    c.apply_config(
        pool("pool", ["203.0.113.0/24", "2001:db8:ffff::/64"]),
        *ebgp,
        *ibgp,
        advertisement(
            "ads", ["pool"], localPref=200, communities=["64500:120"]
        ),  # LOCAL_PREF reaches iBGP peers only
    )
    for n in NODES.values():
        c.node(n)
    c.service("web", [VIP4, VIP6], policy="Local")
    c.endpoints("web", list(NODES))
    c.endpoints("web", list(NODES), family="IPv6")
    sl.start()
    sl.wait_ready()
    addresses = [a for n in NODES.values() for a in (n.ipv4, n.ipv6)]
    addresses += [a for n in NODES.values() for a in ibgp_addresses(n)[::2]]

    def established() -> bool:
        protocols = r1.protocols()
        return all(protocols.get(a, {}).get("state") == "Established" for a in addresses)

    wait_for("12 sessions Established at BIRD", established, 20, 0.1)
    # iBGP paths win on LOCAL_PREF 200 (eBGP ones keep BIRD's default 100): the FIB has one
    # next hop per node on the iBGP subnet, for both families
    route4 = lab.wait_route(ROUTER, f"{VIP4}/32", nexthops=3, timeout=15)
    assert route4.gateways == {ibgp_addresses(n)[0] for n in NODES.values()}
    route6 = lab.wait_route(ROUTER, f"{VIP6}/128", nexthops=3, timeout=15)
    assert route6.gateways == {ibgp_addresses(n)[2] for n in NODES.values()}
    view = sl.bgp_route(f"{VIP4}/32")
    assert view is not None
    print(f"\nBIRD's paths for {VIP4}/32:")
    for p in view["paths"]:
        print(f"  {p['protocol']:10} via {p['nexthops'][0]['ip']:12} lp={p.get('locPrf')} "
              f"as_path={p.get('aspath')!r} community={p.get('community')!r}")  # fmt: skip
    by_proto = {p["protocol"]: p for p in view["paths"]}
    assert len(by_proto) == 6  # 3 eBGP + 3 iBGP
    assert by_proto["n1_ibgp4"]["locPrf"] == 200 and by_proto["n1_v4"]["locPrf"] == 100
    assert by_proto["n1_v4"]["aspath"] == "64501" and by_proto["n1_ibgp4"]["aspath"] == ""
    assert "(64500,120)" in by_proto["n1_v4"]["community"]
    # the route reflector hands the best path to every client but the one it came from
    protocols = r1.protocols()
    exported = [protocols[ibgp_addresses(n)[0]]["routes"]["exported"] for n in NODES.values()]
    assert sorted(exported) == [0, 1, 1], exported
    # n2 loses its endpoints: its paths go, v4 and v6; the Service deleted: all go
    c.endpoints("web", ["n1", "n3"])
    c.endpoints("web", ["n1", "n3"], family="IPv6")
    lab.wait_route(ROUTER, f"{VIP4}/32", nexthops=2, timeout=5)
    lab.wait_route(ROUTER, f"{VIP6}/128", nexthops=2, timeout=5)
    c.delete(f"/api/v1/namespaces/{c.app_ns}/services/web")
    lab.wait_no_route(ROUTER, f"{VIP4}/32", timeout=5)
    lab.wait_no_route(ROUTER, f"{VIP6}/128", timeout=5)
    assert sl.bgp_route(f"{VIP4}/32") is None
