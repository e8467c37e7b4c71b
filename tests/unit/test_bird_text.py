"""``birdc``'s text (BIRD 2.0.12, as measured in the lab) parsed into the shapes the lab tests
use for FRR's JSON (``lab/bird.py``)."""

from __future__ import annotations

from lab.bird import parse_bird_asn, parse_bird_neighbors, parse_protocols, parse_route

ROUTE = """BIRD 2.0.12 ready.
Table master4:
203.0.113.10/32      unicast [n1_v4 10:44:31.406] * (100) [AS64501i]
\tvia 198.18.0.2 on eth1
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64501
\tBGP.next_hop: 198.18.0.2
\tBGP.local_pref: 100
                     unicast [n2_v4 10:44:31.414] (100) [AS64502i]
\tvia 198.18.0.6 on eth2
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64502
\tBGP.next_hop: 198.18.0.6
\tBGP.local_pref: 100
\tBGP.community: (64500,120)
"""

PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:45:49.096
n1_v4      BGP        ---        start  10:46:04.789  Passive       Socket: Connection closed
  BGP state:          Passive
    Neighbor address: 198.18.0.2
    Neighbor AS:      64501
    Local AS:         64500
    Neighbor graceful restart active
    Restart timer:    118.954/-
  Channel ipv4
    Routes:         1 imported, 0 exported, 1 preferred
n2_v4      BGP        ---        up     10:45:49.096  Established
  BGP state:          Established
    Neighbor address: 198.18.0.6
    Neighbor AS:      64502
  Channel ipv4
    Routes:         1 imported, 1 exported, 0 preferred
"""


def test_route_paths_in_frr_shape() -> None:
    route = parse_route(ROUTE, "203.0.113.10/32")
    assert route is not None
    assert [(p["protocol"], p["bestpath"], p["nexthops"][0]["ip"]) for p in route["paths"]] == [
        ("n1_v4", True, "198.18.0.2"),
        ("n2_v4", False, "198.18.0.6"),
    ]
    assert route["paths"][1]["community"] == "(64500,120)"
    assert route["paths"][0]["aspath"] == "64501" and route["paths"][0]["locPrf"] == 100
    assert parse_route(ROUTE, "203.0.113.11/32") is None


def test_protocols_by_neighbor() -> None:
    protocols = parse_protocols(PROTOCOLS)
    assert set(protocols) == {"198.18.0.2", "198.18.0.6"}
    n1, n2 = protocols["198.18.0.2"], protocols["198.18.0.6"]
    assert n1["state"] == "Passive" and n1["gracefulRestartActive"] is True
    assert n1["since"] == "10:46:04.789" and n1["routes"]["imported"] == 1
    assert n2["state"] == "Established" and "gracefulRestartActive" not in n2
    assert n2["routes"] == {"imported": 1, "exported": 1, "preferred": 0}


def test_config_asn_and_neighbors() -> None:
    conf = "template bgp t {\n  local as 64500;\n}\nprotocol bgp a from t { local 198.18.0.1; "
    conf += "neighbor 198.18.0.2 as 64501; }\nprotocol bgp b { neighbor 2001:db8::2 as 64500; }\n"
    assert parse_bird_asn(conf) == 64500
    assert {str(k): v for k, v in parse_bird_neighbors(conf).items()} == {
        "198.18.0.2": 64501,
        "2001:db8::2": 64500,
    }
