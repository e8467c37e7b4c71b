"""ExaBGP line protocol: encoding, parsing of lines captured from a real ExaBGP 5.0.15, and
properties of the convergence plan."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from exalb.config.model import IPNetwork
from speaker.decisions import Route
from speaker.exabgp import protocol as p
from speaker.exabgp import show

net = ipaddress.ip_network
ip = ipaddress.ip_address

# Captured from ExaBGP 5.0.15 (namespace lab, FRR 8.4 peer), verbatim.
ADJ_EXTENSIVE = [
    "neighbor 198.18.0.1 local-ip 198.18.0.2 local-as 64501 peer-as 64500 router-id 198.18.0.2 "
    "family-allowed in-open ipv4 unicast 203.0.113.10/32 next-hop 198.18.0.2 med 5 "
    "local-preference 200 community [ 64500:1 64500:2 ] large-community 64500:1:2",
    "neighbor 198.18.0.1 local-ip 198.18.0.2 local-as 64501 peer-as 64500 router-id 198.18.0.2 "
    "family-allowed in-open ipv4 unicast 203.0.113.11/32 next-hop 198.18.0.2 community 64500:3",
    "neighbor 2001:db8:1::1 local-ip 2001:db8:1::2 local-as 64501 peer-as 64500 router-id "
    "198.18.0.2 family-allowed in-open ipv6 unicast 2001:db8:ffff::10/128 next-hop 2001:db8:1::2",
]
ADJ_PLAIN = [
    "198.18.0.1 ipv4 unicast 203.0.113.10/32 next-hop 198.18.0.2",
    "2001:db8:1::1 ipv6 unicast 2001:db8:ffff::10/128 next-hop 2001:db8:1::2",
]
SUMMARY = [
    "Peer            AS        up/down state       |     #sent     #recvd",
    "198.18.0.1       64500     0:00:08 established           3          2",
    "2001:db8:1::1   64500     0:00:07 established           2          1",
    "198.18.0.5       64500     down    connect               0          0",
]
EVENT_UP = (
    '{ "exabgp": "5.0.0", "time": 1795702223.654362, "host" : "vm", "pid" : 9830, "ppid" : 9787,'
    ' "counter": 8, "type": "state", "neighbor": { "address": { "local": "2001:db8:1::2", "peer":'
    ' "2001:db8:1::1" }, "asn": { "local": 64501, "peer": 64500 }, "router-id": "198.18.0.2" ,'
    ' "state": "up" } }'
)
EVENT_DOWN = (
    '{ "exabgp": "5.0.0", "time": 1795702218.8841512, "host" : "vm", "pid" : 9276, "ppid" : 9245,'
    ' "counter": 3, "type": "state", "neighbor": { "address": { "local": "198.18.0.2", "peer":'
    ' "198.18.0.1" }, "asn": { "local": 64501, "peer": 64500 }, "router-id": "198.18.0.2" ,'
    ' "state": "down", "reason": "stop, message [shutting down]" } }'
)
EVENT_SHUTDOWN = (
    '{ "exabgp": "5.0.0", "time": 1795702218.8845916, "host" : "vm", "pid" : 9276, "ppid" : 9245,'
    ' "type": "notification", "notification": "shutdown" }'
)
NEIGHBOR_JSON = (
    '[{"state": "up", "duration": 9, "fsm": "ESTABLISHED", "local": {"capabilities": {"asn4": '
    'true, "graceful-restart": false}, "families": {"ipv4 unicast": true}, "address": '
    '"198.18.0.2", "as": 64501, "id": "198.18.0.2", "hold": 90}, "peer": {"capabilities": '
    '{"asn4": true, "graceful-restart": true}, "families": {"ipv4 unicast": true}, "address": '
    '"198.18.0.1", "as": 64500, "id": "198.18.0.1", "hold": 9}, "messages": {}, "capabilities": '
    '["asn4"], "families": ["ipv4 unicast"], "add-path": {"ipv4 unicast": "disabled"}}]'
)


def R(prefix: str, peer: str = "r1", **kw: object) -> Route:
    return Route(prefix=net(prefix), peer_name=peer, **kw)  # type: ignore[arg-type]


def test_encode_announce_and_withdraw() -> None:
    route = R("203.0.113.10/32", local_pref=200, med=5, communities=("64500:1", "64500:2"),
              large_communities=("64500:1:2",))  # fmt: skip
    assert p.announce(route, "198.18.0.1") == (
        "neighbor 198.18.0.1 announce route 203.0.113.10/32 next-hop self local-preference 200 "
        "med 5 community [ 64500:1 64500:2 ] large-community [ 64500:1:2 ]"
    )
    assert p.announce(R("2001:db8::1/128"), ip("2001:db8:1::1")) == (
        "neighbor 2001:db8:1::1 announce route 2001:db8::1/128 next-hop self"
    )
    assert p.withdraw(net("203.0.113.10/32"), "198.18.0.1") == (
        "neighbor 198.18.0.1 withdraw route 203.0.113.10/32"
    )
    assert p.end_of_rib("198.18.0.1", 4) == "neighbor 198.18.0.1 announce eor ipv4 unicast"


def test_bulk_groups_equal_attributes() -> None:
    routes = [R("203.0.113.1/32"), R("203.0.113.2/32"), R("203.0.113.3/32", local_pref=5)]
    lines = p.announce_bulk(routes, "198.18.0.1")
    assert lines == [
        "neighbor 198.18.0.1 announce attributes next-hop self nlri 203.0.113.1/32 203.0.113.2/32",
        "neighbor 198.18.0.1 announce route 203.0.113.3/32 next-hop self local-preference 5",
    ]
    many = [R(f"198.51.100.{i}/32") for i in range(10)]
    assert len(p.announce_bulk(many, "198.18.0.1", per_line=4)) == 3
    assert p.withdraw_bulk([net("203.0.113.2/32"), net("203.0.113.1/32")], "198.18.0.1") == [
        "neighbor 198.18.0.1 withdraw attributes next-hop self nlri 203.0.113.1/32 203.0.113.2/32"
    ]


def test_parse_acks_events_and_output() -> None:
    assert p.parse_line("done\n") == p.Ack(True)
    assert p.parse_line("error") == p.Ack(False)
    assert p.parse_line("shutdown") == p.Shutdown()
    assert p.parse_line(EVENT_SHUTDOWN) == p.Shutdown()
    up = p.parse_line(EVENT_UP)
    assert up == p.PeerStateEvent(ip("2001:db8:1::1"), ip("2001:db8:1::2"), "up", 64500)
    down = p.parse_line(EVENT_DOWN)
    assert isinstance(down, p.PeerStateEvent) and down.state == "down"
    assert down.reason == "stop, message [shutting down]"
    assert p.parse_line("reload in progress") == p.Output("reload in progress")
    assert p.parse_line(NEIGHBOR_JSON) == p.Output(NEIGHBOR_JSON)  # an answer, not an event
    assert p.parse_line('{"198.18.0.1": {"routes": []}}') == p.Output(
        '{"198.18.0.1": {"routes": []}}'
    )
    other = p.parse_line('{"exabgp": "5.0.0", "type": "update", "neighbor": {}}')
    assert isinstance(other, p.OtherEvent) and other.type == "update"


def test_parse_adj_rib_out_extensive() -> None:
    rib = show.parse_adj_rib_out([*ADJ_EXTENSIVE, "done-ish garbage", ""])
    assert set(rib) == {"198.18.0.1", "2001:db8:1::1"}
    e = rib["198.18.0.1"][net("203.0.113.10/32")]
    assert e == show.AdjRibEntry(
        peer=ip("198.18.0.1"), prefix=net("203.0.113.10/32"), next_hop="198.18.0.2",
        local_pref=200, med=5, communities=("64500:1", "64500:2"),
        large_communities=("64500:1:2",),
    )  # fmt: skip
    assert rib["198.18.0.1"][net("203.0.113.11/32")].communities == ("64500:3",)
    assert e.matches(
        R(
            "203.0.113.10/32",
            local_pref=200,
            med=5,
            communities=("64500:1", "64500:2"),
            large_communities=("64500:1:2",),
        )
    )
    assert not e.matches(R("203.0.113.10/32", local_pref=200))
    v6 = rib["2001:db8:1::1"][net("2001:db8:ffff::10/128")]
    assert v6.next_hop == "2001:db8:1::2" and v6.local_pref is None


def test_parse_adj_rib_out_plain() -> None:
    rib = show.parse_adj_rib_out(ADJ_PLAIN)
    assert rib["198.18.0.1"][net("203.0.113.10/32")].next_hop == "198.18.0.2"
    assert net("2001:db8:ffff::10/128") in rib["2001:db8:1::1"]


def test_parse_neighbor_summary_and_json() -> None:
    rows = show.parse_neighbor_summary(SUMMARY)
    assert [(str(r.peer), r.state, r.sent, r.received) for r in rows] == [
        ("198.18.0.1", "established", 3, 2),
        ("2001:db8:1::1", "established", 2, 1),
        ("198.18.0.5", "connect", 0, 0),
    ]
    assert rows[0].established and rows[0].asn == 64500
    (st_,) = show.parse_neighbor_json([NEIGHBOR_JSON])
    assert st_.peer == ip("198.18.0.1") and st_.state == "up" and st_.hold_time == 9
    assert st_.local_address == ip("198.18.0.2") and st_.peer_asn == 64500
    assert st_.families == ("ipv4 unicast",) and not st_.graceful_restart


def test_plan_orders_withdraws_first_and_skips_unchanged() -> None:
    have = show.parse_adj_rib_out(ADJ_EXTENSIVE)
    want = {
        "198.18.0.1": {
            net("203.0.113.10/32"): R(
                "203.0.113.10/32", local_pref=200, med=5, communities=("64500:1", "64500:2"),
                large_communities=("64500:1:2",),
            ),  # unchanged
            net("203.0.113.11/32"): R("203.0.113.11/32"),  # attributes changed
            net("203.0.113.12/32"): R("203.0.113.12/32"),  # new
        },
        "2001:db8:1::1": {},  # everything withdrawn
    }  # fmt: skip
    cmds = p.plan(want, have)
    assert [c.line for c in cmds] == [
        "neighbor 2001:db8:1::1 withdraw route 2001:db8:ffff::10/128",
        "neighbor 198.18.0.1 announce attributes next-hop self nlri "
        "203.0.113.11/32 203.0.113.12/32",
    ]
    assert p.plan(want, want) == []


# -- properties ----------------------------------------------------------------------------------

prefixes = st.builds(
    lambda n, length: ipaddress.ip_network(f"203.0.113.{n}/{length}", strict=False),
    st.integers(0, 255),
    st.sampled_from([24, 28, 32]),
)
routes = st.builds(
    Route,
    prefix=prefixes,
    peer_name=st.just("r1"),
    local_pref=st.one_of(st.none(), st.integers(1, 300)),
    communities=st.sampled_from([(), ("64500:1",), ("64500:1", "64500:2")]),
)
ribs = st.dictionaries(st.sampled_from(["198.18.0.1", "198.18.0.5"]),
                       st.lists(routes, max_size=12))  # fmt: skip


def _as_rib(d: dict[str, list[Route]]) -> dict[str, dict[IPNetwork, Route]]:
    return {n: {r.prefix: r for r in rs} for n, rs in d.items()}


def _simulate(
    actual: dict[str, dict[IPNetwork, Route]], cmds: list[p.Command]
) -> dict[str, dict[IPNetwork, Route]]:
    out = {n: dict(rs) for n, rs in actual.items()}
    for c in cmds:
        rib = out.setdefault(c.neighbor, {})
        for prefix in c.withdrawn:
            assert prefix in rib  # never withdraw what is not there
            del rib[prefix]
        for r in c.announced:
            rib[r.prefix] = r
    return {n: rs for n, rs in out.items() if rs}


@settings(max_examples=200, deadline=None)
@given(ribs, ribs, st.booleans())
def test_plan_converges_and_is_minimal(
    desired_l: dict[str, list[Route]], actual_l: dict[str, list[Route]], bulk: bool
) -> None:
    desired, actual = _as_rib(desired_l), _as_rib(actual_l)
    cmds = p.plan(desired, actual, bulk=bulk, per_line=3)
    assert _simulate(actual, cmds) == {n: rs for n, rs in desired.items() if rs}
    touched = {(c.neighbor, r.prefix) for c in cmds for r in c.announced}
    for n, rs in desired.items():
        for prefix, r in rs.items():
            if actual.get(n, {}).get(prefix) == r:
                assert (n, prefix) not in touched  # unchanged routes are never resent
    assert p.plan(desired, _simulate(actual, cmds)) == []
    for c in cmds:  # every line names its neighbor: nothing reaches another session
        assert c.line.startswith(f"neighbor {c.neighbor} ")


@given(routes)
def test_announce_parses_back_from_adj_rib_form(route: Route) -> None:
    """What ExaBGP prints for an announced route matches the Route it came from."""
    attrs = p.announce(route, "198.18.0.1").split(" next-hop self", 1)[1]
    line = (
        "neighbor 198.18.0.1 local-ip 198.18.0.2 local-as 1 peer-as 2 router-id 198.18.0.2 "
        f"family-allowed in-open ipv4 unicast {route.prefix} next-hop 198.18.0.2{attrs}"
    )
    entry = show.parse_adj_rib_line(line)
    assert entry is not None and entry.matches(route)
