"""Issue 11: where exalb used to part from MetalLB without saying so, one test per point.

Each test names the MetalLB rule it follows (in our words) and where MetalLB keeps it
(MetalLB v0.16.2 source). Where exalb keeps a deliberate difference (the no-churn contract:
an assigned IP is kept and flagged where MetalLB would clear it), the test says so and the
README's "How exalb differs from MetalLB" lists it.
"""

from __future__ import annotations

import copy
import io
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.allocator import (
    ADDITIONAL_ASSIGN_FAILED,
    ALLOCATION_FAILED,
    EXTRA_IPS_RELEASED,
    IP_ALLOCATED,
    IP_MIGRATED,
    IP_OUT_OF_POOL,
    IP_WRONG_FAMILY,
    NOT_SELECTED_BY_POOL,
    Allocator,
    Decision,
)
from controller.plan import plan
from controller.status import service_patches
from exalb.config.documents import parse_documents, split_documents
from exalb.config.legacy import object_name
from exalb.config.model import (
    BFDProfile,
    Config,
    L2Advertisement,
    LabelSelector,
    Peer,
    Pool,
    ServiceAllocation,
)
from exalb.config.result import ParseResult
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView, service_view
from exalbctl import report
from exalbctl.main import main
from speaker.decisions import decide_service
from speaker.l2.announcer import owned_services
from speaker.l2.election import SHARED_IP_WITH_SERVICE_SELECTOR, NodeL2View, elect, for_node
from speaker.status import l2_service_json
from tests.unit.helpers import config, ips, pool, svc

DUAL = pool("dual", "198.51.100.0/30", "2001:db8:1::/126")
V4ONLY = pool("dual", "198.51.100.0/30")
DUAL_STACK = {"cluster_ip_families": (4, 6)}


def parse(text: str) -> ParseResult:
    docs, problems = split_documents(text, "config")
    assert not problems.errors
    return parse_documents([("config", d) for d in docs])


def accepted(text: str) -> Config:
    result = parse(text)
    assert result.config is not None, [str(e) for e in result.errors]
    return result.config


def refused(text: str) -> list[str]:
    result = parse(text)
    assert result.config is None, "config was accepted"
    return [str(e) for e in result.errors]


POOL_YAML = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p}
spec: {addresses: [%s]}
"""


def ad_yaml(name: str, spec: str) -> str:
    return (
        "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n"
        f"metadata: {{name: {name}}}\nspec: {spec}\n"
    )


# -- 1. RequireDualStack after single-stack ------------------------------------------------


def test_p1_require_dual_stack_after_single_stack_completes_the_pair_from_the_same_pool() -> None:
    """MetalLB (controller/service.go, convergeBalancer + serviceFamilyChanged): a Service
    whose IPs no longer match its families is cleared and allocated again, as a pair from a
    pool with both families. exalb completes the pair instead: the IP it holds stays, the
    missing family comes from the same pool."""
    al = Allocator(config(DUAL, pool("other", "203.0.113.0/30", "2001:db8:2::/126")))
    first = al.assign(svc("a"))
    assert first.ips == ips("198.51.100.0")
    d = al.assign(
        svc("a", family_policy="RequireDualStack", assigned_ips=["198.51.100.0"], **DUAL_STACK)
    )
    assert d.ips == ips("198.51.100.0", "2001:db8:1::")
    assert d.changed and d.reason == IP_ALLOCATED and d.pool == "dual" and not d.flags


def test_p1_require_dual_stack_waits_flagged_until_its_pool_gains_the_family() -> None:
    """When the pool lacks the second family MetalLB would re-allocate the pair from another
    pool (moving the IP); exalb keeps the IP, flags ``missingFamily`` (event
    AdditionalAssignFailed, MetalLB's reason for a family it cannot add) and completes the
    pair as soon as the pool has the family."""
    al = Allocator(config(V4ONLY))
    al.assign(svc("a"))
    want = svc("a", family_policy="RequireDualStack", assigned_ips=["198.51.100.0"], **DUAL_STACK)
    d = al.assign(want)
    assert d.ips == ips("198.51.100.0") and not d.changed
    flag = d.flag("missingFamily")
    assert flag is not None and flag.reason == ADDITIONAL_ASSIGN_FAILED
    assert "pool dual has no IPv6 addresses" in flag.message
    assert d.reason == ADDITIONAL_ASSIGN_FAILED and d.warning
    al.set_config(config(DUAL))
    d = al.assign(want)
    assert d.ips == ips("198.51.100.0", "2001:db8:1::") and d.changed and not d.flags


def test_p1_prefer_dual_stack_is_completed_when_its_pool_gains_the_family() -> None:
    """MetalLB (controller/service.go): a PreferDualStack Service with one IP tries, on every
    converge, to add the other family from its pool (AllocateFromPoolForAdditionalFamily),
    and says AdditionalAssignFailed when it cannot. Completing is not moving."""
    al = Allocator(config(V4ONLY))
    want = svc("a", family_policy="PreferDualStack", **DUAL_STACK)
    first = al.assign(want)
    assert first.ips == ips("198.51.100.0")
    again = al.assign(svc("a", family_policy="PreferDualStack", assigned_ips=["198.51.100.0"],
                          **DUAL_STACK))  # fmt: skip
    assert again.reason == ADDITIONAL_ASSIGN_FAILED and not again.warning and not again.flags
    al.set_config(config(DUAL))
    d = al.assign(svc("a", family_policy="PreferDualStack", assigned_ips=["198.51.100.0"],
                      **DUAL_STACK))  # fmt: skip
    assert d.ips == ips("198.51.100.0", "2001:db8:1::") and d.reason == IP_ALLOCATED


# -- 2. more IPs in status than the Service's families allow -------------------------------


def test_p2_one_ip_per_family_first_usable_in_status_order_rest_released() -> None:
    """MetalLB (internal/ipfamily, ForAddresses): three IPs, or two of one family, have no
    family; convergeBalancer then clears them all and allocates anew. exalb keeps one IP per
    family the Service has (the first in status order that a pool may assign) and releases
    the rest with a Warning ExtraIPsReleased; the released IPs are free for others."""
    al = Allocator(config(pool("p", "198.18.0.0/29", "2001:db8::/126")))
    status = ["203.0.113.9", "198.18.0.5", "2001:db8::1", "198.18.0.6"]
    restored = al.restore(svc("a", assigned_ips=status))
    assert restored.ips == ips("198.18.0.5")
    d = al.assign(svc("a", assigned_ips=status))
    assert d.ips == ips("198.18.0.5") and d.changed
    assert d.reason == EXTRA_IPS_RELEASED and d.warning
    assert "released 203.0.113.9, 2001:db8::1, 198.18.0.6" in d.message
    assert al.holders(ips("198.18.0.6")[0]) == ()
    assert al.assign(svc("b", requested_ips=["198.18.0.6"])).ips == ips("198.18.0.6")


def test_p2_dual_stack_keeps_one_of_each_family() -> None:
    al = Allocator(config(pool("p", "198.18.0.0/29", "2001:db8::/126")))
    status = ["198.18.0.1", "198.18.0.2", "2001:db8::3"]
    d = al.assign(svc("a", family_policy="RequireDualStack", assigned_ips=status, **DUAL_STACK))
    assert d.ips == ips("198.18.0.1", "2001:db8::3") and d.reason == EXTRA_IPS_RELEASED


def test_p2_a_dual_stack_service_made_single_stack_keeps_its_own_family() -> None:
    """The policy went back to SingleStack: MetalLB re-allocates (serviceFamilyChanged);
    exalb keeps the IP of the Service's family and releases the other."""
    al = Allocator(config(DUAL))
    d = al.assign(svc("a", family_policy="RequireDualStack", **DUAL_STACK))
    assert d.ips == ips("198.51.100.0", "2001:db8:1::")
    d = al.assign(svc("a", assigned_ips=["198.51.100.0", "2001:db8:1::"]))
    assert d.ips == ips("198.51.100.0") and d.reason == EXTRA_IPS_RELEASED
    assert al.holders(ips("2001:db8:1::")[0]) == ()


# -- 3. avoidBuggyIPs turned on ------------------------------------------------------------


def test_p3_avoid_buggy_ips_turned_on_keeps_the_dot0_ip_and_flags_it_out_of_pool() -> None:
    """MetalLB (internal/allocator/allocator.go, poolFor): with avoidBuggyIPs an .0/.255
    address does not belong to the pool, so Assign refuses it and convergeBalancer
    re-allocates (ClearAssignment). exalb keeps it and flags it like any IP that left its
    pool (IPOutOfPool, exalb.io/OutOfPool, the out-of-pool metric), never hands it to
    another Service, and moves it only on exalb.io/migrate."""
    plain = pool("p", "198.18.0.0/30")
    al = Allocator(config(plain))
    assert al.assign(svc("a")).ips == ips("198.18.0.0")
    changed = al.set_config(config(pool("p", "198.18.0.0/30", avoid_buggy_ips=True)))
    assert changed == ("default/a",)
    d = al.assign(svc("a", assigned_ips=["198.18.0.0"]))
    assert d.ips == ips("198.18.0.0") and d.reason == IP_OUT_OF_POOL and d.warning
    assert d.out_of_pool == ips("198.18.0.0")
    assert "excluded by avoidBuggyIPs of IPAddressPool p" in d.message
    assert al.out_of_pool() == {"default/a": ips("198.18.0.0")}
    assert al.assign(svc("b", requested_ips=["198.18.0.0"])).pending
    d = al.assign(svc("a", assigned_ips=["198.18.0.0"], migrate=True))
    assert d.reason == IP_MIGRATED and d.ips == ips("198.18.0.1")


# -- 4. aggregation length over a range ---------------------------------------------------


def test_p4_aggregation_is_checked_against_the_widest_cidr_of_a_range() -> None:
    """MetalLB (internal/config/config.go, validateBGPAdvPerPool + lowestMask): a range is
    summarised into CIDRs and the aggregation length must not be shorter than the widest of
    them; the narrower ones do not count. 198.18.0.1-198.18.0.6 is /32 /31 /31 /32."""
    pool = POOL_YAML % '"198.18.0.1-198.18.0.6"'
    cfg = accepted(pool + ad_yaml("ad", "{aggregationLength: 31}"))
    assert cfg.bgp_advertisements[0].aggregation_length == 31
    errors = refused(
        POOL_YAML % '"198.18.0.1-198.18.0.6"' + ad_yaml("ad", "{aggregationLength: 30}")
    )
    assert any("the widest CIDR of range 198.18.0.1-198.18.0.6" in e for e in errors), errors
    # a plain CIDR is its own widest CIDR
    refused(POOL_YAML % "198.18.0.0/28" + ad_yaml("ad", "{aggregationLength: 27}"))


# -- 5. LOCAL_PREF conflicts and duplicate advertisements ---------------------------------


def test_p5_local_pref_conflict_with_service_selectors_is_left_to_the_speaker() -> None:
    """MetalLB (internal/config/config.go, validateBGPAdvPerPool): advertisements with
    serviceSelectors are not checked for LOCAL_PREF at config time; the speaker refuses the
    Services that both match (speaker/bgp_controller.go, checkBGPAdvConflicts, reason
    conflictingAdvertisements) and announces the rest."""
    text = (
        POOL_YAML % "198.18.0.0/28"
        + ad_yaml("a", "{localPref: 100}")
        + ad_yaml("b", "{localPref: 200, serviceSelectors: [{matchLabels: {tier: gold}}]}")
    )
    cfg = accepted(text)
    peer = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ips("10.0.0.1")[0])
    cfg = Config(
        pools=cfg.pools, peers=(peer,), bgp_advertisements=cfg.bgp_advertisements, source="crd"
    )
    node = NodeView("n1")
    eps = EndpointsView("default", "x")

    def decide(labels: tuple[tuple[str, str], ...]) -> Any:
        service = ServiceView("default", "x", labels=labels, assigned_ips=ips("198.18.0.1"))
        return decide_service(cfg, node, service, EndpointsView("default", "x", eps.endpoints))

    gold = decide((("tier", "gold"),))
    assert not gold.announce and gold.reason == "conflictingAdvertisements"
    plain = decide(())
    assert plain.reason != "conflictingAdvertisements"


def test_p5_two_advertisements_identical_but_for_their_names_are_accepted() -> None:
    """MetalLB (internal/config/config.go, validateDuplicateBGPAdvertisements) compares
    whole objects, names included, so two objects never duplicate each other."""
    text = POOL_YAML % "198.18.0.0/28" + ad_yaml("a", "{localPref: 100}")
    cfg = accepted(text + ad_yaml("b", "{localPref: 100}"))
    assert [a.name for a in cfg.bgp_advertisements] == ["a", "b"]


def test_p5_same_community_by_alias_and_by_value_is_one_community() -> None:
    """MetalLB refuses an entry written twice but keeps communities in a set, so an alias
    and its value in one advertisement are one community."""
    alias = (
        "---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\n"
        "spec: {communities: [{name: gold, value: '64500:1'}]}\n"
    )
    cfg = accepted(
        POOL_YAML % "198.18.0.0/28" + alias + ad_yaml("a", "{communities: [gold, '64500:1']}")
    )
    assert cfg.bgp_advertisements[0].communities == ("64500:1",)
    refused(POOL_YAML % "198.18.0.0/28" + ad_yaml("a", "{communities: ['64500:1', '64500:1']}"))


def test_p5_local_pref_conflict_without_selectors_is_still_refused() -> None:
    """Without serviceSelectors MetalLB refuses the config when two advertisements of a
    pool have different LOCAL_PREF, the same aggregation, a shared peer and shared nodes."""
    text = POOL_YAML % "198.18.0.0/28" + ad_yaml("a", "{localPref: 100}")
    errors = refused(text + ad_yaml("b", "{localPref: 200}"))
    assert any("BGPAdvertisement/b: spec.localPref: 200 conflicts" in e for e in errors)
    # An empty peers list is every peer, so it shares a peer with any list ...
    refused(text + ad_yaml("b", "{localPref: 200, peers: [other]}"))
    # ... two disjoint lists share none, and different node selectors are left to the
    # speaker (exalb's config does not depend on Node labels; README).
    accepted(text.replace("{localPref: 100}", "{localPref: 100, peers: [one]}")
             + ad_yaml("b", "{localPref: 200, peers: [two]}"))  # fmt: skip
    accepted(text + ad_yaml("b", "{localPref: 200, nodeSelectors: [{matchLabels: {a: b}}]}"))


# -- 6. duplicate selectors and values ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n"
            "spec: {nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]}\n",
            "L2Advertisement/l2: spec.nodeSelectors[1]: duplicates nodeSelectors[0]",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n"
            "spec: {serviceSelectors: [{matchExpressions: [{key: a, operator: In, "
            "values: [x, x]}]}]}\n",
            "spec.serviceSelectors[0].matchExpressions[0].values[1]: duplicate entry 'x'",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: ad}\n"
            "spec: {ipAddressPoolSelectors: [{matchExpressions: [{key: a, operator: Exists},"
            " {key: a, operator: Exists}]}]}\n",
            "spec.ipAddressPoolSelectors[0].matchExpressions[1]: duplicates matchExpressions[0]",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
            "spec: {addresses: [198.18.0.0/28], serviceAllocation: {serviceSelectors: "
            "[{matchLabels: {app: x}}, {matchLabels: {app: x}}]}}\n",
            "IPAddressPool/p: spec.serviceAllocation.serviceSelectors[1]: duplicates "
            "serviceSelectors[0]",
        ),
    ],
)
def test_p6_duplicate_selectors_and_values_are_refused_naming_the_field(
    text: str, expect: str
) -> None:
    """MetalLB (internal/config/config.go, validateLabelSelectorDuplicate and
    validateLabelSelectorMatchExpressions): a selector listed twice, an expression listed
    twice in one selector (values compared after sorting), or a value listed twice in one
    expression makes the config invalid."""
    errors = refused(text)
    assert any(expect in e for e in errors), errors


def test_p6_same_values_in_another_order_is_a_duplicate_but_other_expressions_are_not() -> None:
    base = (
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec:\n"
        "  {myASN: 1, peerASN: 2, peerAddress: 198.18.0.1, nodeSelectors: [%s]}\n"
    )
    refused(base % "{matchExpressions: [{key: a, operator: In, values: [x, y]}]}, "
                   "{matchExpressions: [{key: a, operator: In, values: [y, x]}]}")  # fmt: skip
    accepted(base % "{matchExpressions: [{key: a, operator: In, values: [x]}]}, "
                    "{matchExpressions: [{key: a, operator: NotIn, values: [x]}]}")  # fmt: skip


# -- 7. exalbctl config convert: valid object names -----------------------------------------

LEGACY = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    peers:
    - {peer-address: 198.18.0.1, peer-asn: 64501, my-asn: 64500}
    address-pools:
    - name: 01-numbered-addresspool
      protocol: bgp
      addresses: [198.51.100.0/24]
      bgp-advertisements: [{localpref: 100}]
    - name: Capitalized-AddressPool
      protocol: layer2
      addresses: [192.168.1.240/28]
    - name: fine
      protocol: layer2
      addresses: [192.168.2.0/28]
"""


def test_p7_convert_gives_pools_valid_names_and_keeps_every_reference(tmp_path: Path) -> None:
    """MetalLB (configmaptocrs/main.go, convertNamesToK8S and formatToK8S): a legacy pool
    name that is not a lower-case DNS label is cut to 63 characters, lower-cased, '_'
    becomes '-', and what precedes the first letter is dropped. The advertisements follow
    the new names, and the output says which Services' address-pool annotations to change."""
    src = tmp_path / "cm.yaml"
    src.write_text(LEGACY)
    out = io.StringIO()
    assert main(["config", "convert", str(src)], out) == 0
    text = out.getvalue()
    objs = list(yaml.safe_load_all(text))
    pools = [o["metadata"]["name"] for o in objs if o["kind"] == "IPAddressPool"]
    assert pools == ["numbered-addresspool", "capitalized-addresspool", "fine"]
    refs = {
        o["metadata"]["name"]: o["spec"]["ipAddressPools"] for o in objs if "Advert" in o["kind"]
    }
    assert refs == {
        "bgpadvertisement1": ["numbered-addresspool"],
        "l2advertisement1": ["capitalized-addresspool"],
        "l2advertisement2": ["fine"],
    }
    assert "#   01-numbered-addresspool -> numbered-addresspool" in text
    assert "#   Capitalized-AddressPool -> capitalized-addresspool" in text
    assert "annotation must be changed to the new name" in text
    back = tmp_path / "crds.yaml"
    back.write_text(text)
    out = io.StringIO()
    assert main(["config", "check", str(back)], out) == 0, out.getvalue()
    # exalb reading the legacy ConfigMap itself keeps the names: annotations keep matching.
    live = parse(LEGACY).config
    assert live is not None
    assert [p.name for p in live.pools] == [
        "01-numbered-addresspool", "Capitalized-AddressPool", "fine"
    ]  # fmt: skip


def test_p7_names_that_cannot_be_made_valid_or_that_collide_are_refused(tmp_path: Path) -> None:
    assert object_name("Capitalized-AddressPool") == "capitalized-addresspool"
    assert object_name("my_pool") == "my-pool"
    assert object_name("x" * 70) == "x" * 63
    assert object_name("0123") is None and object_name("pool-") is None
    src = tmp_path / "c.yaml"
    src.write_text(
        "address-pools:\n"
        "- {name: Web, protocol: layer2, addresses: [198.18.0.0/28]}\n"
        "- {name: web, protocol: layer2, addresses: [198.18.0.16/28]}\n"
        "- {name: '42', protocol: layer2, addresses: [198.18.0.32/28]}\n"
    )
    out = io.StringIO()
    assert main(["config", "convert", str(src)], out) == 1
    text = out.getvalue()
    assert "address-pools[1].name: 'web' becomes IPAddressPool 'web', as 'Web' does" in text
    assert "address-pools[2].name: '42' cannot be turned into an IPAddressPool name" in text
    # BFD profiles are refused the same way, and so is a peer's reference that cannot be
    # converted (it names no profile of the config).
    src.write_text(
        "peers:\n"
        "- {peer-address: 198.18.0.1, peer-asn: 64501, my-asn: 64500, bfd-profile: '_7'}\n"
        "bfd-profiles:\n"
        "- {name: Slow_BFD}\n"
        "- {name: slow-bfd}\n"
        "- {name: '-1-'}\n"
    )
    out = io.StringIO()
    assert main(["config", "convert", str(src)], out) == 1
    text = out.getvalue()
    assert "bfd-profiles[1].name: 'slow-bfd' becomes BFDProfile 'slow-bfd', as 'Slow_BFD'" in text
    assert "bfd-profiles[2].name: '-1-' cannot be turned into a BFDProfile name" in text
    assert "peers[0].bfd-profile: '_7' cannot be turned into a BFDProfile name" in text


LONG_BFD = "-".join(f"tooLongBFDProfileName0{i}" for i in range(1, 5))  # 95 characters
LEGACY_BFD = f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: config, namespace: metallb-system}}
data:
  config: |
    peers:
    - peer-address: 198.18.0.1
      peer-asn: 64501
      my-asn: 64500
      bfd-profile: underscored_bfd_profile
    - {{peer-address: 198.18.0.2, peer-asn: 64501, my-asn: 64500, bfd-profile: {LONG_BFD}}}
    - {{peer-address: 198.18.0.3, peer-asn: 64501, my-asn: 64500, bfd-profile: fine}}
    - {{peer-address: 198.18.0.4, peer-asn: 64501, my-asn: 64500}}
    bfd-profiles:
    - name: underscored_bfd_profile
      receive-interval: 280
      transmit-interval: 270
      echo-interval: 62
      minimum-ttl: 254
      detect-multiplier: 200
    - {{name: {LONG_BFD}, receive-interval: 150, passive-mode: true}}
    - {{name: fine}}
    address-pools:
    - {{name: default, protocol: bgp, addresses: [198.51.100.0/24]}}
"""
# A DNS-1123 label: stricter than the subdomain an object name must be, and what MetalLB's
# converter aims at (its output for this input is labels only).
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


def test_p7_convert_gives_bfd_profiles_valid_names_and_peers_follow(tmp_path: Path) -> None:
    """MetalLB (configmaptocrs/main.go, convertNamesToK8S and formatToK8S; its test case
    config-yaml-convert-names): BFD profile names get the pool names' treatment (a name
    that is not a lower-case DNS label is cut to 63 characters, lower-cased, '_' becomes
    '-', and what precedes the first letter is dropped), and so does every peer's
    bfd-profile, so each peer still names its profile. The output lists the renames."""
    src = tmp_path / "cm.yaml"
    src.write_text(LEGACY_BFD)
    out = io.StringIO()
    assert main(["config", "convert", str(src)], out) == 0, out.getvalue()
    text = out.getvalue()
    objs = list(yaml.safe_load_all(text))
    long_name = "toolongbfdprofilename01-toolongbfdprofilename02-toolongbfdprofi"
    assert len(long_name) == 63
    profiles = [o["metadata"]["name"] for o in objs if o["kind"] == "BFDProfile"]
    assert profiles == ["underscored-bfd-profile", long_name, "fine"]
    assert all(re.fullmatch(DNS1123_LABEL, name) for name in profiles), profiles
    refs = {
        o["metadata"]["name"]: o["spec"].get("bfdProfile") for o in objs if o["kind"] == "BGPPeer"
    }
    assert refs == {
        "peer1": "underscored-bfd-profile", "peer2": long_name, "peer3": "fine", "peer4": None
    }  # fmt: skip
    assert "# BFDProfile names changed to valid object names" in text
    assert "#   underscored_bfd_profile -> underscored-bfd-profile  (from bfd-profiles[0])" in text
    assert f"#   {LONG_BFD} -> {long_name}  (from bfd-profiles[1])" in text
    assert "IPAddressPool names changed" not in text  # no pool was renamed
    back = tmp_path / "crds.yaml"
    back.write_text(text)
    out = io.StringIO()
    assert main(["config", "check", str(back)], out) == 0, out.getvalue()
    # exalb reading the legacy ConfigMap itself keeps the names, references included.
    live = parse(LEGACY_BFD).config
    assert live is not None
    assert sorted(p.name for p in live.bfd_profiles) == sorted(
        ["underscored_bfd_profile", LONG_BFD, "fine"]
    )
    assert [p.bfd_profile for p in live.peers] == [
        "underscored_bfd_profile",
        LONG_BFD,
        "fine",
        None,
    ]


# -- 8. L2, allow-shared-ip and serviceSelectors --------------------------------------------

NODES = tuple(NodeView(n) for n in ("n1", "n2", "n3"))
L2_POOL = Pool("l2", (ipaddress.ip_network("198.18.0.0/28"),))
GOLD = LabelSelector((("tier", "gold"),))


def _svc(name: str, labels: tuple[tuple[str, str], ...] = (), share: str | None = "k") -> Any:
    return (
        ServiceView(
            "default", name, labels=labels, sharing_key=share, assigned_ips=ips("198.18.0.1")
        ),
        EndpointsView("default", name, ()),
    )


def _eps_everywhere(pair: Any) -> Any:
    s, _ = pair
    return s, EndpointsView("default", s.name, (Endpoint(("10.0.0.1",), "n1"),))


def test_p8_shared_ip_with_a_service_selector_advertisement_is_not_announced_in_l2() -> None:
    """MetalLB (speaker/layer2_controller.go, ShouldAnnounce): a Service with the
    allow-shared-ip annotation that an L2Advertisement with serviceSelectors matches is not
    announced in L2, reason sharedIPWithServiceSelector. A sharer no such advertisement
    matches is announced as usual; the refused one is not, even by the IP's owner."""
    cfg = Config(
        pools=(L2_POOL,),
        l2_advertisements=(
            L2Advertisement("all", ("l2",)),
            L2Advertisement("gold", ("l2",), service_selectors=(GOLD,)),
        ),
    )
    gold = _eps_everywhere(_svc("gold", (("tier", "gold"),)))
    plain = _eps_everywhere(_svc("plain"))
    (e,) = elect(cfg, [gold, plain], NODES)
    assert e.services == ("default/gold", "default/plain")
    assert e.refused == (("default/gold", SHARED_IP_WITH_SERVICE_SELECTOR),)
    owner = e.owner
    assert owner is not None and set(e.candidates) == {"n1", "n2", "n3"}
    assert e.reason_for(owner, "default/plain") is None
    assert e.reason_for(owner, "default/gold") == SHARED_IP_WITH_SERVICE_SELECTOR
    assert owned_services([e], owner) == {"default/plain"}
    why = l2_service_json([e], owner, "default/gold")
    assert why == {"announce": False, "reason": SHARED_IP_WITH_SERVICE_SELECTOR, "owner": owner}
    # Alone, or with every sharer refused, nobody answers.
    (alone,) = elect(cfg, [gold], NODES)
    assert alone.candidates == () and alone.reason("n1") == SHARED_IP_WITH_SERVICE_SELECTOR
    # Without allow-shared-ip the selector advertisement applies normally.
    (free,) = elect(cfg, [_eps_everywhere(_svc("gold", (("tier", "gold"),), share=None))], NODES)
    assert free.candidates and not free.refused
    assert isinstance(for_node([e], "n1"), NodeL2View)


def test_p8_the_merge_never_answers_from_a_node_a_sharer_excludes() -> None:
    """What is left merged: sharers of one IP that no serviceSelectors advertisement
    matches all have the same advertisements (one pool), so the one ranking over their
    union never uses a node a sharer's advertisements exclude."""
    zone = LabelSelector((("zone", "a"),))
    cfg = Config(
        pools=(L2_POOL,), l2_advertisements=(L2Advertisement("a", ("l2",), node_selectors=(zone,)),)
    )
    nodes = (NodeView("n1", labels=(("zone", "a"),)), NodeView("n2"), NodeView("n3"))
    (e,) = elect(cfg, [_eps_everywhere(_svc("x")), _eps_everywhere(_svc("y"))], nodes)
    assert e.candidates == ("n1",) and e.reason("n2") == "nodeNotSelected"


# -- 9. kept but flagged: selectors, family, requested IP outside every pool --------------


def _flags(d: Decision) -> list[str]:
    return [f.kind for f in d.flags]


def test_p9_service_no_longer_selected_by_its_pool_keeps_its_ip_flagged() -> None:
    """MetalLB (internal/allocator/allocator.go, Assign + isPoolCompatibleWithService): an
    IP whose pool's serviceAllocation no longer selects the Service (namespace, namespace
    labels, Service labels) is refused, and convergeBalancer re-allocates. exalb keeps it
    and flags notSelectedByPool; exalb.io/migrate moves it."""
    pinned = pool(
        "pinned",
        "198.18.0.0/30",
        service_allocation=ServiceAllocation(service_selectors=(GOLD,)),
    )
    al = Allocator(config(pinned, pool("rest", "203.0.113.0/30")))
    gold = (("tier", "gold"),)
    assert al.assign(svc("a", labels=gold)).ips == ips("198.18.0.0")
    d = al.assign(svc("a", assigned_ips=["198.18.0.0"]), {})
    assert d.ips == ips("198.18.0.0") and _flags(d) == ["notSelectedByPool"]
    assert d.reason == NOT_SELECTED_BY_POOL and "no longer selects" in d.message
    d = al.assign(svc("a", assigned_ips=["198.18.0.0"], labels=gold), {})
    assert not d.flags
    d = al.assign(svc("a", assigned_ips=["198.18.0.0"], migrate=True), {})
    assert d.reason == IP_MIGRATED and d.ips == ips("203.0.113.0")


def test_p9_wrong_family_ip_is_kept_and_flagged() -> None:
    """MetalLB (controller/service.go, serviceFamilyChanged): an IP of another family than
    the Service's is cleared and a new one allocated. exalb keeps and flags wrongFamily."""
    al = Allocator(config(DUAL))
    d = al.assign(svc("a", assigned_ips=["2001:db8:1::2"]))
    assert d.ips == ips("2001:db8:1::2") and _flags(d) == ["wrongFamily"]
    assert d.reason == IP_WRONG_FAMILY and "SingleStack" in d.message


def test_p9_requested_ip_outside_every_pool_keeps_the_current_ip_flagged() -> None:
    """MetalLB (controller/service.go): a changed loadBalancerIP(s) clears the current IP
    first, then fails (AllocationFailed: not allowed in config) and leaves the Service
    without an IP. exalb keeps the current IP, says AllocationFailed, and flags
    requestNotMet until the request can be met or is withdrawn."""
    al = Allocator(config(pool("p", "198.18.0.0/30")))
    al.assign(svc("a"))
    d = al.assign(svc("a", requested_ips=["203.0.113.7"], assigned_ips=["198.18.0.0"]))
    assert d.ips == ips("198.18.0.0") and _flags(d) == ["requestNotMet"]
    assert d.reason == ALLOCATION_FAILED and "not in any IPAddressPool" in d.message
    assert "the current IP 198.18.0.0 is kept" in d.message


def test_p9_flags_become_conditions_status_flags_and_plan_flags() -> None:
    """Every flag is a condition on the Service (which ``kubectl exalb status`` shows as a
    flag), an event, and a plan flag before the config is applied."""
    al = Allocator(config(DUAL))
    d = al.assign(svc("a", assigned_ips=["2001:db8:1::2"]))
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "2001:db8:1::2"}]}},
    }
    patch = service_patches(obj, d, "2026-01-01T00:00:00Z")
    assert patch.status is not None
    written = copy.deepcopy(obj)
    written["status"]["conditions"] = patch.status["status"]["conditions"]
    types = {c["type"]: c for c in written["status"]["conditions"]}
    assert types["exalb.io/WrongFamily"]["status"] == "True"
    assert types["exalb.io/WrongFamily"]["reason"] == IP_WRONG_FAMILY
    assert types["exalb.io/IPAllocated"]["reason"] == "IPAllocated"
    (row,) = report.status_report([written], [])["services"]
    assert row["flags"] == ["wrongFamily"]
    assert [e[0] for e in d.events()] == [IP_WRONG_FAMILY]

    # plan: the same flags, before a config change is applied
    pinned = pool("dual", "198.51.100.0/30", "2001:db8:1::/126",
                  service_allocation=ServiceAllocation(namespaces=("prod",)))  # fmt: skip
    views = [
        service_view(written),
        svc("b", ns="dev", assigned_ips=["198.51.100.1"]),
        svc("c", ns="prod", assigned_ips=["198.51.100.2"], requested_ips=["203.0.113.1"]),
    ]
    rows = {r.service: r for r in plan(config(pinned), views)}
    assert rows["default/a"].flags == ("wrongFamily", "notSelectedByPool")
    assert rows["dev/b"].flags == ("notSelectedByPool",) and rows["dev/b"].action == "keep"
    assert rows["prod/c"].flags == ("requestNotMet",)
    assert rows["prod/c"].planned == ips("198.51.100.2")


def test_adopting_metallbs_assignment_writes_nothing() -> None:
    """A migration: MetalLB assigned the IP and wrote its pool annotation, no exalb condition
    exists. Restoring it must write nothing (one status patch per Service otherwise)."""
    al = Allocator(config(pool("p", "198.51.100.0/30")))
    d = al.assign(svc("a", assigned_ips=["198.51.100.1"]))
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "default",
                     "annotations": {"metallb.io/ip-allocated-from-pool": "p"}},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1", "ipMode": "VIP"}]}},
    }  # fmt: skip
    patch = service_patches(obj, d, "2026-01-01T00:00:00Z")
    assert patch.status is None and patch.metadata is None
    # a flag later is written in full, IPAllocated included
    flagged = Allocator(config(pool("q", "198.51.100.8/30"))).assign(
        svc("a", assigned_ips=["198.51.100.1"])
    )
    patch = service_patches(obj, flagged, "2026-01-01T00:00:00Z")
    assert patch.status is not None
    types = {c["type"] for c in patch.status["status"]["conditions"]}
    assert types == {"exalb.io/IPAllocated", "exalb.io/OutOfPool"}
    # a new IP carries its condition in the same (needed) write
    fresh = Allocator(config(pool("p", "198.51.100.0/30"))).assign(svc("b"))
    bare = {"metadata": {"name": "b", "namespace": "default"}, "spec": {}, "status": {}}
    patch = service_patches(bare, fresh, "2026-01-01T00:00:00Z")
    assert patch.status is not None and "conditions" in patch.status["status"]


def test_p9_plan_cli_shows_the_flags_column(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n"
        "  addresses: [198.18.0.0/28]\n"
        "  serviceAllocation: {namespaceSelectors: [{matchLabels: {team: a}}]}\n"
    )
    dump = tmp_path / "svcs.yaml"
    dump.write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "a", "labels": {"team": "a"}}},
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "a"},
                 "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.1"]},
                 "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.1"}]}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "y", "namespace": "b"},
                 "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.2"]},
                 "status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.2"}]}}},
            ]
        )
    )  # fmt: skip
    out = io.StringIO()
    assert main(["plan", "-f", str(cfg), "--services", str(dump)], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:6] == ["SERVICE", "ACTION", "CURRENT", "PLANNED", "POOL", "FLAGS"]
    row = {ln.split()[0]: ln.split() for ln in lines[1:] if ln.startswith(("a/", "b/"))}
    assert row["a/x"][5] == "-"
    assert row["b/y"][1] == "keep" and row["b/y"][5] == "notSelectedByPool"


# -- 10. no pools configured ----------------------------------------------------------------


def test_p10_no_pools_gives_allocation_failed_where_metallb_is_silent() -> None:
    """MetalLB (controller/service.go, convergeBalancer): with no pools it clears the
    Service and returns without an event. exalb keeps assigned IPs (flagged out-of-pool)
    and gives a waiting Service an AllocationFailed warning naming the cause (a documented
    difference)."""
    al = Allocator(config())
    d = al.assign(svc("new"))
    assert d.pending and d.reason == ALLOCATION_FAILED and d.warning
    assert "no IPAddressPool is configured" in d.message
    kept = al.assign(svc("old", assigned_ips=["198.18.0.1"]))
    assert kept.ips == ips("198.18.0.1") and _flags(kept) == ["outOfPool"]


# -- 11 (values only). BFDProfile ------------------------------------------------------------


def test_p11_bfd_profile_values_are_checked_as_metallb_checks_them() -> None:
    """MetalLB (internal/config/config.go, bfdProfileFromCR): receive/transmit/echo interval
    10..60000, detectMultiplier 2..255, minimumTtl 1..254, each optional; a value MetalLB
    refuses is refused, the others reach the model (the speaker's bfdd runs them)."""
    head = "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: "
    result = parse(head + "{receiveInterval: 300, detectMultiplier: 3, echoMode: true}\n")
    assert result.config is not None
    assert result.config.bfd_profiles == (
        BFDProfile("fast", receive_interval=300, detect_multiplier=3, echo_mode=True),
    )
    assert not result.warnings
    errors = refused(head + "{receiveInterval: 5, minimumTtl: 255, passiveMode: maybe}\n")
    assert any("BFDProfile/fast: spec.receiveInterval: 5 is out of range (10..60000)" in e
               for e in errors)  # fmt: skip
    assert any("spec.minimumTtl: 255 is out of range (1..254)" in e for e in errors)
    assert any("spec.passiveMode: must be true or false" in e for e in errors)
    legacy = refused("bfd-profiles:\n- {name: a, detect-multiplier: 1}\n- {name: a}\n")
    assert any("bfd-profiles[0].detect-multiplier: 1 is out of range (2..255)" in e
               for e in legacy)  # fmt: skip
    assert any("bfd-profiles[1].name: duplicate BFD profile name 'a'" in e for e in legacy)


def test_p11_bfd_profile_reaches_the_peer_in_both_formats() -> None:
    """A BGPPeer's ``bfdProfile`` (legacy ``bfd-profile``) names a profile; the legacy
    ``bfd-profiles`` become BFDProfile objects named as in the ConfigMap."""
    legacy = parse(
        "peers:\n- {my-asn: 64500, peer-asn: 64501, peer-address: 198.18.0.1, "
        "bfd-profile: fast}\n"
        "bfd-profiles:\n- {name: fast, receive-interval: 300, transmit-interval: 300, "
        "detect-multiplier: 3, passive-mode: true}\n"
    )
    assert legacy.config is not None, legacy.problems
    (peer,) = legacy.config.peers
    assert peer.bfd_profile == "fast"
    assert legacy.config.bfd_profile("fast") == BFDProfile(
        "fast", receive_interval=300, transmit_interval=300, detect_multiplier=3,
        passive_mode=True,
    )  # fmt: skip
