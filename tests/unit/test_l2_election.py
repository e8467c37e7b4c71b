"""L2 election: eligibility reasons and MetalLB's hash ranking (table tests)."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

import pytest

from exalb.config.model import Config, L2Advertisement, LabelSelector, Pool
from exalb.views import EXCLUDE_LB_LABEL, Endpoint, EndpointsView, NodeView, ServiceView
from speaker.l2.election import (
    NO_ENDPOINTS,
    NO_LOCAL_ENDPOINTS,
    NO_MATCHING_ADVERTISEMENT,
    NO_SPEAKER,
    NODE_EXCLUDED,
    NODE_NETWORK_UNAVAILABLE,
    NODE_NOT_SELECTED,
    NOT_A_CANDIDATE,
    NOT_OWNER,
    elect,
    for_node,
    rank_nodes,
)

ip = ipaddress.ip_address
V4 = ip("198.18.0.37")  # MetalLB hash order: node-d, node-c, node-b, node-a
V6 = ip("2001:db8::10")
NAMES = ("node-a", "node-b", "node-c", "node-d")
POOL = Pool(
    "p", cidrs=(ipaddress.ip_network("198.18.0.0/24"), ipaddress.ip_network("2001:db8::/64"))
)
BGP_POOL = Pool("bgp", cidrs=(ipaddress.ip_network("203.0.113.0/24"),))
ZONE_A = LabelSelector(match_labels=(("zone", "a"),))


def cfg(*ads: L2Advertisement) -> Config:
    return Config(pools=(BGP_POOL, POOL), l2_advertisements=ads or (L2Advertisement("l2", ("p",)),))


def nodes(**over: NodeView) -> tuple[NodeView, ...]:
    base = {n: NodeView(n, labels=(("zone", "a" if n < "node-c" else "b"),)) for n in NAMES}
    base.update(over)
    return tuple(base.values())


def svc(
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (V4,),
    policy: str = "Cluster",
    labels: tuple[tuple[str, str], ...] = (),
    name: str = "web",
) -> ServiceView:
    return ServiceView(
        "default",
        name,
        assigned_ips=ips,
        traffic_policy="Local" if policy == "Local" else "Cluster",
        labels=labels,
    )


def eps(*on: str, name: str = "web", ready: bool = True) -> EndpointsView:
    return EndpointsView(
        "default", name, tuple(Endpoint(("10.0.0.1",), n, ready=ready) for n in on)
    )


def test_rank_is_metallb_hash() -> None:
    """sha256(node + "#" + ip) ascending; pinned values guard against accidental changes."""
    assert rank_nodes(NAMES, V4) == ("node-d", "node-c", "node-b", "node-a")
    assert rank_nodes(NAMES, ip("198.51.100.50")) == ("node-a", "node-d", "node-b", "node-c")
    assert rank_nodes(NAMES, ip("2001:db8:50::50")) == ("node-a", "node-b", "node-d", "node-c")
    expect = sorted(NAMES, key=lambda n: hashlib.sha256(f"{n}#{V6}".encode()).digest())
    assert rank_nodes(NAMES, V6) == tuple(expect)


def test_every_node_agrees_and_input_order_does_not_matter() -> None:
    services = [(svc(), eps(*NAMES))]
    one = elect(cfg(), services, nodes())
    two = elect(cfg(), services, tuple(reversed(nodes())))
    assert one == two
    views = [for_node(one, n) for n in NAMES]
    owners = [v.node for v in views if v.owned]
    assert owners == ["node-d"]
    assert [e.rank for v in views for e in v.entries] == [3, 2, 1, 0]


@dataclass
class Case:
    name: str
    config: Config = field(default_factory=cfg)
    service: ServiceView = field(default_factory=svc)
    endpoints: EndpointsView = field(default_factory=lambda: eps(*NAMES))
    nodes: tuple[NodeView, ...] = field(default_factory=nodes)
    speakers: frozenset[str] | None = None
    candidates: tuple[str, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("all eligible, hash order", candidates=("node-d", "node-c", "node-b", "node-a")),
    Case(
        "nodeSelector restricts",
        config=cfg(L2Advertisement("l2", ("p",), node_selectors=(ZONE_A,))),
        candidates=("node-b", "node-a"),
        reasons={"node-c": NODE_NOT_SELECTED, "node-d": NODE_NOT_SELECTED},
    ),
    Case(
        "serviceSelector does not match",
        config=cfg(
            L2Advertisement("l2", ("p",), service_selectors=(LabelSelector((("tier", "edge"),)),))
        ),
        reasons=dict.fromkeys(NAMES, NO_MATCHING_ADVERTISEMENT),
    ),
    Case(
        "serviceSelector matches",
        config=cfg(
            L2Advertisement("l2", ("p",), service_selectors=(LabelSelector((("tier", "edge"),)),))
        ),
        service=svc(labels=(("tier", "edge"),)),
        candidates=("node-d", "node-c", "node-b", "node-a"),
    ),
    Case(
        "network unavailable and exclude label never own",
        nodes=nodes(
            **{
                "node-d": NodeView("node-d", network_unavailable=True),
                "node-c": NodeView("node-c", labels=((EXCLUDE_LB_LABEL, ""),)),
            }
        ),
        candidates=("node-b", "node-a"),
        reasons={"node-d": NODE_NETWORK_UNAVAILABLE, "node-c": NODE_EXCLUDED},
    ),
    Case(
        "ETP Local: only nodes with a serving local endpoint",
        service=svc(policy="Local"),
        endpoints=eps("node-a", "node-c"),
        candidates=("node-c", "node-a"),
        reasons={"node-b": NO_LOCAL_ENDPOINTS, "node-d": NO_LOCAL_ENDPOINTS},
    ),
    Case(
        "ETP Local: a not-ready endpoint does not count",
        service=svc(policy="Local"),
        endpoints=EndpointsView(
            "default",
            "web",
            (
                Endpoint(("10.0.0.1",), "node-d", ready=False, serving=False),
                Endpoint(("10.0.0.2",), "node-b", ready=True),
            ),
        ),
        candidates=("node-b",),
        reasons={"node-d": NO_LOCAL_ENDPOINTS},
    ),
    Case(
        "ETP Cluster: one endpoint anywhere is enough",
        endpoints=eps("node-a"),
        candidates=("node-d", "node-c", "node-b", "node-a"),
    ),
    Case(
        "no serving endpoint anywhere",
        endpoints=eps(),
        reasons=dict.fromkeys(NAMES, NO_ENDPOINTS),
    ),
    Case(
        "only nodes running a speaker",
        speakers=frozenset({"node-a", "node-c"}),
        candidates=("node-c", "node-a"),
        reasons={"node-b": NO_SPEAKER, "node-d": NO_SPEAKER},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_eligibility(case: Case) -> None:
    (result,) = elect(
        case.config, [(case.service, case.endpoints)], case.nodes, speaker_nodes=case.speakers
    )
    assert result.candidates == case.candidates
    assert result.owner == (case.candidates[0] if case.candidates else None)
    for node, reason in case.reasons.items():
        assert result.reason(node) == reason
    for node in case.candidates[1:]:
        assert result.reason(node) == NOT_OWNER
    if case.candidates:
        assert result.reason(case.candidates[0]) is None


def test_dual_stack_ranks_both_ips_by_the_first() -> None:
    results = elect(cfg(), [(svc(ips=(V6, V4)), eps(*NAMES))], nodes())
    assert [r.ip for r in results] == [V4, V6]
    expect = rank_nodes(NAMES, V6)
    assert all(r.candidates == expect for r in results)


def test_non_l2_ips_are_not_elected() -> None:
    assert elect(cfg(), [(svc(ips=(ip("203.0.113.5"),)), eps(*NAMES))], nodes()) == ()
    assert elect(cfg(), [(svc(ips=(ip("198.51.100.1"),)), eps(*NAMES))], nodes()) == ()
    assert elect(cfg(), [(svc(ips=()), eps(*NAMES))], nodes()) == ()


def test_interfaces_per_node_from_matching_advertisements() -> None:
    config = cfg(
        L2Advertisement("a", ("p",), node_selectors=(ZONE_A,), interfaces=("eth1",)),
        L2Advertisement("b", ("p",), interfaces=("eth0",)),
    )
    (r,) = elect(config, [(svc(), eps(*NAMES))], nodes())
    assert r.interfaces_of("node-a") == ("eth0", "eth1")
    assert r.interfaces_of("node-d") == ("eth0",)
    open_ad = cfg(L2Advertisement("a", ("p",)), L2Advertisement("b", ("p",), interfaces=("x",)))
    (r,) = elect(open_ad, [(svc(), eps(*NAMES))], nodes())
    assert r.interfaces_of("node-a") == ()  # one advertisement without a list: all


def test_shared_ip_gets_one_ranking() -> None:
    a = (svc(policy="Local", name="a"), eps("node-a", name="a"))
    b = (svc(policy="Local", name="b"), eps("node-b", name="b"))
    (r,) = elect(cfg(), [b, a], nodes())
    assert r.services == ("default/a", "default/b")
    assert set(r.candidates) == {"node-a", "node-b"}
    assert r.candidates == rank_nodes(["node-a", "node-b"], V4)
    assert r.reason("node-c") == NO_LOCAL_ENDPOINTS


def test_node_view_lists_reason_and_rank() -> None:
    results = elect(cfg(), [(svc(policy="Local"), eps("node-a", "node-b"))], nodes())
    view = for_node(results, "node-c")
    (entry,) = view.entries
    assert view.owned == ()
    assert entry.rank is None and entry.reason == NO_LOCAL_ENDPOINTS
    assert entry.candidates == rank_nodes(["node-a", "node-b"], V4)
    assert for_node(results, "stranger").entries[0].reason == NOT_A_CANDIDATE
