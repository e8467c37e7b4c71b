"""Valid configs parse into the expected model, in both formats."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from exalb.config.documents import parse_documents, parse_files, split_documents
from exalb.config.legacy import parse_legacy_text
from exalb.config.values import parse_addresses, parse_duration

ROOT = Path(__file__).resolve().parents[2]
LEGACY_EXAMPLES = sorted((ROOT / "examples" / "legacy").glob("*.yaml"))


@pytest.mark.parametrize("path", LEGACY_EXAMPLES, ids=lambda p: p.name)
def test_issue_legacy_examples_are_accepted(path: Path) -> None:
    result = parse_files([str(path)])
    assert result.ok, [str(p) for p in result.problems]


def test_legacy_conversion_names_follow_metallb() -> None:
    result = parse_legacy_text("""
peers:
- {peer-address: 198.18.0.1, peer-asn: 64501, my-asn: 64500, hold-time: 1m30s}
- {peer-address: 198.18.0.5, peer-asn: 64501, my-asn: 64500,
   node-selectors: [{match-labels: {rack: a}}]}
bgp-communities: {gold: "64500:100"}
address-pools:
- name: l2
  protocol: layer2
  addresses: [198.51.100.0/28]
- name: bgp-a
  protocol: bgp
  addresses: [203.0.113.0/28]
  bgp-advertisements:
  - {aggregation-length: 32, localpref: 100, communities: [gold, "64500:7"]}
  - {aggregation-length: 28}
- name: bgp-b
  protocol: bgp
  avoid-buggy-ips: true
  auto-assign: false
  addresses: [203.0.113.16/28]
""")
    cfg = result.config
    assert cfg is not None, [str(p) for p in result.problems]
    assert [p.name for p in cfg.peers] == ["peer1", "peer2"]
    assert cfg.peers[0].hold_time == 90 and cfg.peers[0].keepalive_time == 30
    assert cfg.peers[1].node_selectors[0].matches({"rack": "a"})
    assert [a.name for a in cfg.bgp_advertisements] == [
        "bgpadvertisement1",
        "bgpadvertisement2",
        "bgpadvertisement3",
    ]
    ad1 = cfg.bgp_advertisements[0]
    assert ad1.local_pref == 100 and ad1.communities == ("64500:100", "64500:7")
    assert cfg.bgp_advertisements[2].pools == ("bgp-b",)
    assert [a.name for a in cfg.l2_advertisements] == ["l2advertisement1"]
    b = cfg.pool("bgp-b")
    assert b is not None and b.avoid_buggy_ips and not b.auto_assign
    assert cfg.source == "configmap"


def test_crd_defaults_and_aliases() -> None:
    text = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p, labels: {zone: a}}
spec:
  addresses: ["203.0.113.0/28", "2001:db8:ffff::1 - 2001:db8:ffff::4"]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities}
spec:
  communities:
  - {name: no-adv, value: "65535:65282"}
  - {name: big, value: "large:64500:1:2"}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: ad}
spec:
  ipAddressPoolSelectors: [{matchLabels: {zone: a}}]
  communities: [no-adv, big, "large:1:2:3"]
  peers: [r1]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: r1, namespace: metallb-system}
spec:
  myASN: 64501
  peerASN: 64500
  peerAddress: 198.18.0.1
  passwordSecret: {name: bgp-pw}
  holdTime: 9s
  enableGracefulRestart: true
"""
    docs, _ = split_documents(text, "t")
    result = parse_documents([("t", d) for d in docs])
    cfg = result.config
    assert cfg is not None, [str(p) for p in result.problems]
    pool = cfg.pools[0]
    assert pool.auto_assign and not pool.avoid_buggy_ips
    assert pool.capacity(4) == 16 and pool.capacity(6) == 4
    ad = cfg.bgp_advertisements[0]
    assert ad.pools == ("p",) and ad.aggregation_length == 32
    assert ad.aggregation_length_v6 == 128 and ad.local_pref == 0
    assert ad.communities == ("65535:65282",)
    assert ad.large_communities == ("64500:1:2", "1:2:3")
    peer = cfg.peers[0]
    assert peer.hold_time == 9 and peer.keepalive_time == 3 and peer.enable_graceful_restart
    assert peer.password_secret is not None
    assert peer.password_secret.namespace == "metallb-system"
    assert not result.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.0/30", ["198.18.0.0/30"]),
        ("198.18.0.5/30", ["198.18.0.4/30"]),
        (
            "198.18.0.1-198.18.0.6",
            ["198.18.0.1/32", "198.18.0.2/31", "198.18.0.4/31", "198.18.0.6/32"],
        ),
        ("198.18.0.1 - 198.18.0.1", ["198.18.0.1/32"]),
        ("2001:db8::-2001:db8::3", ["2001:db8::/126"]),
    ],
)
def test_address_syntax(text: str, expected: list[str]) -> None:
    assert parse_addresses(text) == tuple(ipaddress.ip_network(e) for e in expected)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("1m30s", 90),
        ("1.5m", 90),
        ("3m", 180),
        ("0", 0),
        ("500ms", 0.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_other_namespace_objects_are_ignored_with_warning() -> None:
    docs, _ = split_documents(
        """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p, namespace: elsewhere}
spec: {addresses: [198.18.0.0/24]}
""",
        "t",
    )
    result = parse_documents([("t", d) for d in docs], namespace="metallb-system")
    assert result.config is not None and result.config.pools == ()
    assert any("not the install namespace" in str(w) for w in result.warnings)


@pytest.mark.parametrize(("value", "warned"), [(False, False), (True, True)])
def test_disable_mp_warns_only_when_set(value: bool, warned: bool) -> None:
    """The CRD defaults disableMP to false on every BGPPeer the API server returns: that is
    no reason for a warning (the doctor reports config warnings)."""
    peer = {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": "r1", "namespace": "metallb-system"},
            "spec": {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1",
                     "disableMP": value}}  # fmt: skip
    result = parse_documents([("t", peer)], namespace="metallb-system")
    assert any("disableMP" in str(w) for w in result.warnings) is warned
