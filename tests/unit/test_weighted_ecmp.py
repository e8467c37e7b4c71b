"""Weighted ECMP for Local Services: the link-bandwidth community from the BGPAdvertisement
annotation to the ExaBGP line and back from ``show adj-rib out`` (speaker.linkbw)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace
from typing import Any

import pytest

from exalb.config.crd import parse_objects
from exalb.config.model import BGPAdvertisement, Config, Peer, Pool
from exalb.config.objects import WEIGHTED_ECMP_ANNOTATION
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView
from speaker import linkbw
from speaker.decisions import Route, decide_service, merge_routes
from speaker.exabgp import protocol, show

ip = ipaddress.ip_address
net = ipaddress.ip_network

PEER = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"))
POOL = Pool(name="prod", cidrs=(net("203.0.113.0/24"),))
WEIGHTED = BGPAdvertisement(name="w", pools=("prod",), weighted_ecmp=True)
CONFIG = Config(pools=(POOL,), peers=(PEER,), bgp_advertisements=(WEIGHTED,), source="crd")
NODE = NodeView(name="n1", addresses=(ip("198.18.0.2"),))
LOCAL = ServiceView(namespace="ns", name="web", traffic_policy="Local",
                    assigned_ips=(ip("203.0.113.10"),))  # fmt: skip


def endpoints(*spec: tuple[str, bool | None, bool | None]) -> EndpointsView:
    """(node, ready, serving) per endpoint."""
    return EndpointsView("ns", "web", tuple(
        Endpoint((f"10.0.0.{i}",), node, ready, serving) for i, (node, ready, serving) in
        enumerate(spec)
    ))  # fmt: skip


# -- the encoding ------------------------------------------------------------------------------


def test_one_megabit_per_endpoint_and_the_as_fits_in_16_bits() -> None:
    assert linkbw.link_bandwidth(64501, 3) == "bandwidth:64501:375000"
    assert linkbw.link_bandwidth(64501, 0) == "bandwidth:64501:125000"  # never "no bandwidth"
    assert linkbw.link_bandwidth(4_200_000_000, 1) == "bandwidth:23456:125000"  # AS_TRANS


def test_huge_counts_stay_below_exabgps_limit_and_float32_exact() -> None:
    text = linkbw.link_bandwidth(64501, 10**9)
    value = linkbw.bandwidth_of(text)
    assert value is not None and value <= linkbw.MAX_BYTES
    # what ExaBGP reports back (hex of the float32) reads as the same text
    wire = "0x4004" + struct.pack("!Hf", 64501, value).hex().upper()
    assert linkbw.from_wire(wire) == text
    for n in (1, 2, 3, 1073, 1074, 5000, 34_000):  # beyond 1073 the float32 rounds
        t = linkbw.link_bandwidth(64501, n)
        raw = struct.pack("!Hf", 64501, linkbw.bandwidth_of(t) or 0).hex()
        assert linkbw.from_wire("0x4004" + raw) == t


def test_from_wire_reads_exabgps_hex_and_keeps_other_communities() -> None:
    assert linkbw.from_wire("0x4004FBF548B71B00") == "bandwidth:64501:375000"
    assert linkbw.from_wire("0x4004fbf548b71b00") == "bandwidth:64501:375000"
    assert linkbw.from_wire("0x0002FDE800000001") == "0x0002FDE800000001"  # a route target
    assert linkbw.from_wire("target:1:2") == "target:1:2"
    assert linkbw.from_wire("0x4004zz") == "0x4004ZZ"


def test_merge_keeps_one_bandwidth_the_largest() -> None:
    assert linkbw.merge(["bandwidth:1:125000", "x"], ["bandwidth:1:375000"]) == (
        "bandwidth:1:375000", "x"
    )  # fmt: skip
    assert linkbw.merge([], []) == ()


# -- the decision ------------------------------------------------------------------------------


def test_local_service_carries_its_ready_local_endpoints() -> None:
    eps = endpoints(("n1", True, True), ("n1", None, None), ("n1", True, True), ("n2", True, True),
                    ("n1", False, True))  # terminating, still serving: not counted  # fmt: skip
    d = decide_service(CONFIG, NODE, LOCAL, eps)
    assert d.announce
    (route,) = d.routes
    assert route.extended_communities == ("bandwidth:64501:375000",)


def test_only_terminating_endpoints_still_announce_with_the_smallest_weight() -> None:
    d = decide_service(CONFIG, NODE, LOCAL, endpoints(("n1", False, True)))
    assert d.announce
    assert next(iter(d.routes)).extended_communities == ("bandwidth:64501:125000",)


@pytest.mark.parametrize(
    ("config", "service"),
    [
        (CONFIG, replace(LOCAL, traffic_policy="Cluster")),  # every node reaches every pod
        (replace(CONFIG, bgp_advertisements=(replace(WEIGHTED, weighted_ecmp=False),)), LOCAL),
    ],
    ids=["cluster-policy", "not-opted-in"],
)
def test_no_bandwidth_without_opt_in_or_for_cluster_policy(
    config: Config, service: ServiceView
) -> None:
    d = decide_service(config, NODE, service, endpoints(("n1", True, True)))
    assert d.announce
    assert next(iter(d.routes)).extended_communities == ()


def test_merge_routes_keeps_the_largest_bandwidth() -> None:
    a = Route(net("203.0.113.10/32"), "r1", extended_communities=("bandwidth:64501:125000",))
    b = replace(a, extended_communities=("bandwidth:64501:250000",))
    (merged,) = merge_routes([a, b])
    assert merged.extended_communities == ("bandwidth:64501:250000",)


# -- the wire ----------------------------------------------------------------------------------


def test_announce_line_and_adj_rib_out_round_trip() -> None:
    route = Route(net("203.0.113.10/32"), "r1", extended_communities=("bandwidth:64501:375000",))
    line = protocol.announce(route, "198.18.0.1")
    assert line.endswith("next-hop self extended-community [ bandwidth:64501:375000 ]")
    seen = (
        "neighbor 198.18.0.1 local-ip 198.18.0.2 local-as 64501 peer-as 64500 router-id "
        "198.18.0.2 family-allowed in-open ipv4 unicast 203.0.113.10/32 next-hop 198.18.0.2 "
        "extended-community 0x4004FBF548B71B00"
    )  # as ExaBGP 5.0.15 prints it (measured)
    entry = show.parse_adj_rib_line(seen)
    assert entry is not None and entry.extended_communities == ("bandwidth:64501:375000",)
    assert entry.matches(route)
    assert not entry.matches(replace(route, extended_communities=("bandwidth:64501:125000",)))
    # a changed weight is a re-announce (implicit replace), never a withdraw
    (cmd,) = protocol.plan({"198.18.0.1": {route.prefix: replace(
        route, extended_communities=("bandwidth:64501:125000",))}},
        {"198.18.0.1": {route.prefix: entry}})  # fmt: skip
    assert cmd.verb == "announce" and "bandwidth:64501:125000" in cmd.line


# -- the config --------------------------------------------------------------------------------


def _ad(annotations: dict[str, Any] | None) -> list[dict[str, Any]]:
    meta: dict[str, Any] = {"name": "ad", "namespace": "lb"}
    if annotations is not None:
        meta["annotations"] = annotations
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "prod", "namespace": "lb"},
         "spec": {"addresses": ["203.0.113.0/24"]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement", "metadata": meta,
         "spec": {"ipAddressPools": ["prod"]}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("annotations", "weighted"),
    [(None, False), ({WEIGHTED_ECMP_ANNOTATION: "true"}, True),
     ({WEIGHTED_ECMP_ANNOTATION: "False"}, False), ({"other": "true"}, False)],
)  # fmt: skip
def test_the_annotation_opts_in(annotations: dict[str, Any] | None, weighted: bool) -> None:
    result = parse_objects(_ad(annotations), namespace="lb")
    assert result.config is not None, result.problems
    assert result.config.bgp_advertisements[0].weighted_ecmp is weighted


def test_a_misspelt_value_is_an_error_naming_the_annotation() -> None:
    result = parse_objects(_ad({WEIGHTED_ECMP_ANNOTATION: "yes"}), namespace="lb")
    assert result.config is None
    (err,) = result.errors
    assert WEIGHTED_ECMP_ANNOTATION in str(err) and "'yes'" in str(err)
