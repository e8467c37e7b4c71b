"""Table-driven tests of the speaker's BGP decisions (MetalLB's rules in docs/metallb.md,
"Announcing rules", and exalb additions)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from exalb.config.model import (
    BGPAdvertisement,
    Config,
    LabelSelector,
    Peer,
    Pool,
)
from exalb.views import EXCLUDE_LB_LABEL, Endpoint, EndpointsView, NodeView, ServiceView
from speaker.decisions import (
    Options,
    Route,
    cluster_warnings,
    decide,
    decide_service,
    merge_routes,
    peers_for_node,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network

RACK_A = LabelSelector(match_labels=(("rack", "a"),))

PEER_V4 = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"))
PEER_V4_B = Peer(name="r2", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.5"))
PEER_V6 = Peer(name="r1v6", my_asn=64501, peer_asn=64500, peer_address=ip("2001:db8:1::1"))
PEER_RACK_A = Peer(
    name="ra", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.9"), node_selectors=(RACK_A,)
)
POOL = Pool(name="prod", cidrs=(net("203.0.113.0/24"), net("2001:db8:ffff::/64")))
POOL2 = Pool(name="other", cidrs=(net("198.51.100.0/24"),))
AD = BGPAdvertisement(name="ad", pools=("prod",))

CONFIG = Config(
    pools=(POOL2, POOL),
    peers=(PEER_V4, PEER_V4_B, PEER_V6, PEER_RACK_A),
    bgp_advertisements=(AD,),
    source="crd",
)
NODE = NodeView(name="n1", labels=(("rack", "b"),), addresses=(ip("198.18.0.2"),))
SVC = ServiceView(namespace="ns", name="web", assigned_ips=(ip("203.0.113.10"),))
EPS = EndpointsView("ns", "web", (Endpoint(("10.0.0.1",), "n1"),))
EPS_OTHER_NODE = EndpointsView("ns", "web", (Endpoint(("10.0.0.1",), "n2"),))
EPS_NOT_READY = EndpointsView("ns", "web", (Endpoint(("10.0.0.1",), "n1", ready=False),))


def r(prefix: str, peer: str, **kw: object) -> Route:
    return Route(prefix=net(prefix), peer_name=peer, **kw)  # type: ignore[arg-type]


def test_peers_for_node_by_node_selector() -> None:
    assert peers_for_node(CONFIG, NODE) == (PEER_V4, PEER_V4_B, PEER_V6)
    rack_a = replace(NODE, labels=(("rack", "a"),))
    assert PEER_RACK_A in peers_for_node(CONFIG, rack_a)


REASON_CASES = [
    # (id, config, node, service, endpoints, options, expected reason)
    ("not-lb", CONFIG, NODE, replace(SVC, is_load_balancer=False), EPS, Options(),
     "notLoadBalancer"),
    ("lb-class", CONFIG, NODE, replace(SVC, load_balancer_class="other"), EPS, Options(),
     "loadBalancerClass"),
    ("no-ip", CONFIG, NODE, replace(SVC, assigned_ips=()), EPS, Options(), "noIPAllocated"),
    ("ip-in-no-pool", CONFIG, NODE, replace(SVC, assigned_ips=(ip("198.18.0.200"),)), EPS,
     Options(), "ipNotAllowed"),
    ("ips-in-two-pools", CONFIG, NODE,
     replace(SVC, assigned_ips=(ip("203.0.113.10"), ip("198.51.100.1"))), EPS, Options(),
     "ipNotAllowed"),
    ("pool-without-ads", CONFIG, NODE, replace(SVC, assigned_ips=(ip("198.51.100.1"),)), EPS,
     Options(), "notOwner"),
    ("ad-other-nodes",
     replace(CONFIG, bgp_advertisements=(replace(AD, node_selectors=(RACK_A,)),)),
     NODE, SVC, EPS, Options(), "notOwner"),
    ("ad-other-services",
     replace(CONFIG, bgp_advertisements=(
         replace(AD, service_selectors=(LabelSelector((("app", "db"),)),)),)),
     NODE, SVC, EPS, Options(), "noMatchingAdvertisement"),
    ("conflicting-localpref",
     replace(CONFIG, bgp_advertisements=(replace(AD, local_pref=100),
                                         replace(AD, name="ad2", local_pref=200))),
     NODE, SVC, EPS, Options(), "conflictingAdvertisements"),
    # MetalLB (internal/config/config.go, isAggrLengthDifferent): a dual-stack pool's ads
    # can send the same update unless *both* aggregation lengths differ.
    ("conflicting-localpref-dual-pool-one-length-differs",
     replace(CONFIG, bgp_advertisements=(replace(AD, local_pref=100),
                                         replace(AD, name="ad2", local_pref=200,
                                                 aggregation_length=24))),
     NODE, SVC, EPS, Options(), "conflictingAdvertisements"),
    # ... and an empty peers list shares every peer (haveSharedPeers).
    ("conflicting-localpref-all-peers-vs-one",
     replace(CONFIG, bgp_advertisements=(replace(AD, local_pref=100),
                                         replace(AD, name="ad2", local_pref=200,
                                                 peers=("r2",)))),
     NODE, SVC, EPS, Options(), "conflictingAdvertisements"),
    ("network-unavailable", CONFIG, replace(NODE, network_unavailable=True), SVC, EPS,
     Options(), "nodeNetworkUnavailable"),
    ("excluded", CONFIG, replace(NODE, labels=((EXCLUDE_LB_LABEL, ""),)), SVC, EPS, Options(),
     "nodeLabeledExcludeBalancers"),
    ("etp-local-no-local", CONFIG, NODE, replace(SVC, traffic_policy="Local"), EPS_OTHER_NODE,
     Options(), "noLocalEndpoints"),
    ("etp-local-not-ready", CONFIG, NODE, replace(SVC, traffic_policy="Local"), EPS_NOT_READY,
     Options(), "noLocalEndpoints"),
    ("no-endpoints", CONFIG, NODE, SVC, None, Options(), "noEndpoints"),
    ("not-ready-anywhere", CONFIG, NODE, SVC, EPS_NOT_READY, Options(), "noEndpoints"),
    ("ipv6-no-v6-peer", replace(CONFIG, peers=(PEER_V4,)), NODE,
     replace(SVC, assigned_ips=(ip("2001:db8:ffff::10"),)), EPS, Options(), "noPeers"),
    ("ad-names-absent-peer",
     replace(CONFIG, bgp_advertisements=(replace(AD, peers=("ra",)),)),
     NODE, SVC, EPS, Options(), "noPeers"),
    # order: the exclusion label is checked before endpoints (MetalLB order)
    ("excluded-before-endpoints", CONFIG, replace(NODE, labels=((EXCLUDE_LB_LABEL, "x"),)), SVC,
     None, Options(), "nodeLabeledExcludeBalancers"),
    ("unavailable-before-excluded", CONFIG,
     replace(NODE, network_unavailable=True, labels=((EXCLUDE_LB_LABEL, ""),)), SVC, EPS,
     Options(), "nodeNetworkUnavailable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "node", "svc", "eps", "options", "reason"),
    [c[1:] for c in REASON_CASES],
    ids=[c[0] for c in REASON_CASES],
)
def test_withdraw_reasons(
    config: Config,
    node: NodeView,
    svc: ServiceView,
    eps: EndpointsView | None,
    options: Options,
    reason: str,
) -> None:
    d = decide_service(config, node, svc, eps, options=options)
    assert not d.announce
    assert d.reason == reason
    assert d.routes == frozenset()


ANNOUNCE_CASES = [
    ("default-ad-all-v4-peers", CONFIG, NODE, SVC, EPS, Options(),
     {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2")}),
    ("ignore-exclude-lb", CONFIG, replace(NODE, labels=((EXCLUDE_LB_LABEL, ""),)), SVC, EPS,
     Options(ignore_exclude_lb=True),
     {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2")}),
    ("etp-local-with-local", CONFIG, NODE, replace(SVC, traffic_policy="Local"), EPS, Options(),
     {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2")}),
    ("etp-cluster-remote-endpoint", CONFIG, NODE, SVC, EPS_OTHER_NODE, Options(),
     {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2")}),
    ("serving-not-ready-counts", CONFIG, NODE, SVC,
     EndpointsView("ns", "web", (Endpoint(("10.0.0.1",), "n2", ready=False, serving=True),)),
     Options(), {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2")}),
    ("dual-stack-family-split", CONFIG, NODE,
     replace(SVC, assigned_ips=(ip("203.0.113.10"), ip("2001:db8:ffff::10"))), EPS, Options(),
     {r("203.0.113.10/32", "r1"), r("203.0.113.10/32", "r2"), r("2001:db8:ffff::10/128", "r1v6")}),
    ("ad-selects-peer-and-attrs",
     replace(CONFIG, bgp_advertisements=(replace(
         AD, peers=("r2",), local_pref=150, communities=("64500:2", "64500:1", "64500:1"),
         large_communities=("64500:1:2",), aggregation_length=24, aggregation_length_v6=64),)),
     NODE, replace(SVC, assigned_ips=(ip("203.0.113.10"), ip("2001:db8:ffff::10"))), EPS,
     Options(),
     {r("203.0.113.0/24", "r2", local_pref=150, communities=("64500:1", "64500:2"),
        large_communities=("64500:1:2",))}),
    ("localpref-differs-but-peers-disjoint",
     replace(CONFIG, bgp_advertisements=(replace(AD, peers=("r1",), local_pref=100),
                                         replace(AD, name="ad2", peers=("r2",), local_pref=200))),
     NODE, SVC, EPS, Options(),
     {r("203.0.113.10/32", "r1", local_pref=100), r("203.0.113.10/32", "r2", local_pref=200)}),
    # MetalLB's isAggrLengthDifferent: in a dual-stack pool both lengths must differ.
    ("localpref-differs-but-aggregation-differs",
     replace(CONFIG, peers=(PEER_V4,), bgp_advertisements=(
         replace(AD, local_pref=100), replace(AD, name="ad2", local_pref=200,
                                              aggregation_length=24, aggregation_length_v6=64))),
     NODE, SVC, EPS, Options(),
     {r("203.0.113.10/32", "r1", local_pref=100), r("203.0.113.0/24", "r1", local_pref=200)}),
    ("two-ads-communities-merged",
     replace(CONFIG, peers=(PEER_V4,), bgp_advertisements=(
         replace(AD, communities=("64500:1",)), replace(AD, name="ad2", communities=("64500:2",)))),
     NODE, SVC, EPS, Options(), {r("203.0.113.10/32", "r1", communities=("64500:1", "64500:2"))}),
    ("out-of-pool-ip-kept-with-allocated-pool", CONFIG, NODE,
     replace(SVC, assigned_ips=(ip("198.18.0.200"),), allocated_pool="prod"), EPS, Options(),
     {r("198.18.0.200/32", "r1"), r("198.18.0.200/32", "r2")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "node", "svc", "eps", "options", "routes"),
    [c[1:] for c in ANNOUNCE_CASES],
    ids=[c[0] for c in ANNOUNCE_CASES],
)
def test_announcements(
    config: Config,
    node: NodeView,
    svc: ServiceView,
    eps: EndpointsView | None,
    options: Options,
    routes: set[Route],
) -> None:
    d = decide_service(config, node, svc, eps, options=options)
    assert d.announce, d
    assert d.reason is None
    assert d.routes == frozenset(routes)


def test_out_of_pool_ip_warns_and_unknown_allocated_pool_withdraws() -> None:
    kept = decide_service(
        CONFIG, NODE, replace(SVC, assigned_ips=(ip("198.18.0.200"),), allocated_pool="prod"), EPS
    )
    assert kept.announce and kept.pool == "prod"
    assert any("outside every pool" in w for w in kept.warnings)
    gone = decide_service(
        CONFIG, NODE, replace(SVC, assigned_ips=(ip("198.18.0.200"),), allocated_pool="gone"), EPS
    )
    assert gone.reason == "ipNotAllowed"


def test_decide_aggregates_dedups_and_explains() -> None:
    config = replace(
        CONFIG,
        peers=(PEER_V4,),
        bgp_advertisements=(replace(AD, aggregation_length=24, communities=("64500:9",)),),
    )
    a = replace(SVC, name="a", assigned_ips=(ip("203.0.113.10"),))
    b = replace(SVC, name="b", assigned_ips=(ip("203.0.113.20"),))
    c = replace(SVC, name="c", assigned_ips=())
    eps = {
        "ns/a": EndpointsView("ns", "a", EPS.endpoints),
        "ns/b": EndpointsView("ns", "b", EPS.endpoints),
    }
    out = decide(config, NODE, [c, b, a], eps)
    assert out.routes == {r("203.0.113.0/24", "r1", communities=("64500:9",))}
    assert [d.service for d in out.decisions] == ["ns/a", "ns/b", "ns/c"]
    assert [d.reason for d in out.decisions] == [None, None, "noIPAllocated"]
    assert out.routes_for("r1") == out.routes
    assert out.peers == (PEER_V4,)


def test_excluded_node_warns_loudly() -> None:
    out = decide(CONFIG, replace(NODE, labels=((EXCLUDE_LB_LABEL, ""),)), [SVC], {"ns/web": EPS})
    assert out.routes == frozenset()
    assert out.warnings and "exclude-from-external-load-balancers" in out.warnings[0]


def test_merge_routes_union_and_preferences() -> None:
    merged = merge_routes(
        [
            r("203.0.113.0/24", "r1", local_pref=100, communities=("1:1",), med=20),
            r("203.0.113.0/24", "r1", local_pref=200, large_communities=("1:2:3",), med=10),
            r("203.0.113.0/24", "r2"),
            r("203.0.113.0/24", "r2"),
        ]
    )
    assert merged == {
        r("203.0.113.0/24", "r1", local_pref=200, communities=("1:1",),
          large_communities=("1:2:3",), med=10),
        r("203.0.113.0/24", "r2"),
    }  # fmt: skip


def test_cluster_warning_when_every_node_is_excluded() -> None:
    excluded = NodeView("a", labels=((EXCLUDE_LB_LABEL, ""),))
    normal = NodeView("b")
    assert cluster_warnings((excluded, normal), Options()) == ()
    (warning,) = cluster_warnings((excluded,), Options())
    assert EXCLUDE_LB_LABEL in warning and "--ignore-exclude-lb" in warning
    assert cluster_warnings((excluded,), Options(ignore_exclude_lb=True)) == ()
