"""Config no one should write, and config written to hurt: refused with a field-named error,
fast, and the last good config stays in force (issue 12, points 3 and 8).

The costs (seconds, peak memory) of the bombs are printed by ``bench/config_bombs.py``;
here the behaviour is checked: a bomb is refused, not expanded.
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.allocator import Allocator
from exalb.config import documents
from exalb.config.advertisements import PoolIndex
from exalb.config.crossrefs import check_config, local_pref_conflict
from exalb.config.documents import parse_documents, parse_files, split_documents
from exalb.config.limits import MAX_ALIASES, MAX_DEPTH, describe
from exalb.config.model import BGPAdvertisement, Config, LabelSelector, Pool, SelectorRequirement
from exalb.config.problems import Problems
from exalb.config.yamlsafe import load_all
from exalb.views import service_view

NS = "metallb-system"
PEER = "peers:\n- peer-address: 198.51.100.1\n  peer-asn: 64500\n  my-asn: 64512\n"
POOL = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [198.51.100.0/28]\n"


def configmap(text: str) -> tuple[str, dict[str, Any]]:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config", "namespace": NS},
        "data": {"config": text},
    }
    return ("cm", cm)


def errors_of(text: str) -> list[str]:
    result = parse_documents([configmap(text)], namespace=NS)
    assert result.config is None, "accepted"
    return [str(p) for p in result.errors]


def bomb(levels: int = 9, width: int = 9, indent: str = "  ") -> str:
    """``width**levels`` strings from a few hundred bytes of anchors and aliases."""
    lines = [f"{indent}- &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{indent}- &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


# -- YAML: aliases, nesting, numbers, duplicate keys --------------------------------------


def test_an_alias_bomb_in_a_legacy_configmap_is_refused_not_expanded() -> None:
    text = "address-pools:\n- name: p\n  protocol: bgp\n  addresses:\n" + bomb()
    (error,) = errors_of(text)
    assert error.startswith("ConfigMap metallb-system/config: address-pools[0].addresses[")
    assert "holds more than 2,000,000 values" in error


def test_an_alias_bomb_under_labels_in_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "pool.yaml"
    f.write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\n"
        "  labels:\n    x:\n" + bomb(indent="    ") + "spec: {addresses: [198.51.100.0/28]}\n"
    )
    result = parse_files([str(f)])
    assert result.config is None
    (error,) = (str(e) for e in result.errors)
    assert error.startswith(f"{f}: metadata.labels.x[") and "2,000,000 values" in error


def test_aliases_beyond_a_small_bound_are_refused_a_few_are_fine() -> None:
    few = "a: &x 1\n" + "".join(f"b{i}: *x\n" for i in range(5))
    assert load_all(few) == list(yaml.safe_load_all(few))
    many = "a: &x 1\n" + "".join(f"b{i}: *x\n" for i in range(MAX_ALIASES + 1))
    with pytest.raises(ValueError, match=f"more than {MAX_ALIASES} YAML aliases"):
        load_all(many)
    with pytest.raises(ValueError, match="alias \\*x refers to itself"):
        load_all("a: &x [1, *x]\n")


def test_deep_nesting_is_refused_with_the_field_and_no_recursion_error() -> None:
    (error,) = errors_of("address-pools: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "address-pools[0]" in error and f"nested deeper than {MAX_DEPTH} levels" in error
    assert len(error) < 300  # the path is cut, not 5,000 levels long
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_all(ok) == list(yaml.safe_load_all(ok))
    # documents that never were YAML (objects from the API server) are measured too
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    result = parse_documents(
        [("api", {"apiVersion": "metallb.io/v1beta1", "kind": "X", "x": deep})]
    )
    assert result.config is None and "nested deeper" in str(result.errors[0])


def test_absurd_numbers_are_field_named_errors() -> None:
    (error,) = errors_of(PEER + f"  hold-time: {'9' * 400}s\n" + POOL)
    assert error.startswith("BGPPeer/peer1 (from peers[0]): spec.holdTime: '999")
    assert "is out of range (at most about 292 years)" in error
    (error,) = errors_of(PEER.replace("64500", "9" * 5000) + POOL)
    assert error == (
        "ConfigMap metallb-system/config: peers[0].peer-asn: a number of 5,000 characters "
        "(at most 40)"
    )
    assert describe(10**5000).startswith("an integer of about 5000 digits")


def test_duplicate_keys_are_refused_naming_the_key() -> None:
    (error,) = errors_of(POOL + POOL.replace("name: p", "name: q"))
    assert error == (
        "ConfigMap metallb-system/config: address-pools: the key 'address-pools' is given "
        "twice (lines 1 and 5); the second would silently replace the first"
    )
    (error,) = errors_of("address-pools:\n- name: p\n  protocol: bgp\n  name: q\n")
    assert "address-pools[0].name: the key 'name' is given twice (lines 2 and 4)" in error
    docs, problems = split_documents("apiVersion: v1\nkind: A\nkind: B\n", "f.yaml")
    assert docs == [] and str(problems.errors[0]).startswith("f.yaml: kind: the key 'kind'")


def test_the_bounded_loader_reads_what_safe_load_reads() -> None:
    text = (
        "defaults: &d {protocol: bgp, auto-assign: false}\n"
        "address-pools:\n- <<: *d\n  name: p\n  addresses: [198.51.100.0/28]\n"
        "- {<<: [*d, {avoid-buggy-ips: true}], name: q, protocol: layer2}\n"
        "n: [0x10, 0o7, 1_000, 1.5, .inf, ~, yes, No, 2001-12-14, '01', !!str 5]\n"
    )
    assert load_all(text) == list(yaml.safe_load_all(text))
    with pytest.raises(ValueError, match="not supported"):
        load_all("!!python/object/apply:os.system ['true']\n")


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(plain)
@settings(max_examples=200, deadline=None)
def test_any_document_round_trips_as_with_safe_load(doc: Any) -> None:
    for style in (False, True, None):
        text = yaml.safe_dump(doc, default_flow_style=style)
        assert load_all(text) == list(yaml.safe_load_all(text))


# -- every exception is a config error; malformed documents ---------------------------------


def test_any_exception_in_a_parser_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_a: Any, **_k: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(documents, "parse_objects", crash)
    result = parse_documents([configmap(POOL)])
    (error,) = (str(e) for e in result.errors)
    assert result.config is None
    assert error.startswith("config: could not be parsed (RecursionError: 'maximum recursion")


def test_malformed_lists_and_configmaps_are_errors_not_tracebacks() -> None:
    docs, problems = split_documents("apiVersion: v1\nkind: List\nitems: 5\n", "f.yaml")
    assert docs == [] and [str(p) for p in problems.errors] == [
        "f.yaml: items: must be a list, got 5"
    ]
    for doc, want in (
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": "x"}, "metadata: must be a mapping"),
        ({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": [1]}, "data: must be a mapping"),
        ({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": [1]},
         "metadata.name: is required"),
        ({"apiVersion": ["x"], "kind": "IPAddressPool"}, None),
        ({"apiVersion": "metallb.io/v1beta1", "kind": {"a": 1}, "metadata": {"name": "n"}},
         "kind: unknown kind a mapping of 1 entries"),
    ):  # fmt: skip
        result = parse_documents([("f", doc)])
        messages = [str(p) for p in result.problems]
        if want is not None:
            assert result.config is None and any(want in m for m in messages), messages


def test_huge_labels_and_annotations_from_the_api_server_cost_little() -> None:
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {
            "name": "p",
            "labels": {f"k{i}": "v" for i in range(20_000)},
            "annotations": {"big": "x" * 250_000},
        },
        "spec": {"addresses": ["198.51.100.0/28"]},
    }
    ad = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": "l"},
        "spec": {"ipAddressPoolSelectors": [{"matchLabels": {"k19999": "v"}}]},
    }
    result = parse_documents([("api", pool), ("api", ad)])
    assert result.config is not None and result.config.l2_advertisements[0].pools == ("p",)
    bad = {**pool, "metadata": {"name": "p", "labels": {"x": [[1, 2], [3]]}}}
    (error,) = (str(e) for e in parse_documents([("f", bad)]).errors)
    assert error == "IPAddressPool/p: metadata.labels.x: must be a string, got a list of 2 entries"


def test_problems_are_capped_but_the_config_stays_refused() -> None:
    pools = "".join(f"- {{name: p{i}, protocol: bgp, addresses: [bad]}}\n" for i in range(2000))
    result = parse_documents([configmap("address-pools:\n" + pools)])
    assert result.config is None
    assert len(result.problems) == 501
    assert str(result.problems[-1]) == "config: and 3500 more problems (3500 errors) not shown"


# -- timers: what BGP allows ---------------------------------------------------------------


def peer_doc(**spec: Any) -> tuple[str, dict[str, Any]]:
    base = {"myASN": 64512, "peerASN": 64500, "peerAddress": "198.51.100.1", **spec}
    return ("f", {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                  "metadata": {"name": "p"}, "spec": base})  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"holdTime": "1000000s"}, "spec.holdTime: 1000000s is out of range: BGP allows 0 or "
         "3..65535 seconds (RFC 4271)"),
        ({"holdTime": "65536s"}, "spec.holdTime: 65536s is out of range"),
        ({"holdTime": "2s"}, "spec.holdTime: 2s is out of range"),
        ({"keepaliveTime": "21846s"}, "spec.keepaliveTime: 21846s makes a hold time of 65538s"),
        ({"holdTime": "9" * 400 + "s"}, "is out of range (at most about 292 years)"),
        ({"holdTime": "2562048h"}, "is out of range (at most about 292 years)"),
        ({"holdTime": "65535s"}, None),
        ({"holdTime": "0s"}, None),
        ({"keepaliveTime": "21845s"}, None),
        ({"holdTime": "18h12m15s"}, None),
    ],
)  # fmt: skip
def test_hold_and_keepalive_are_bounded_by_bgp(spec: dict[str, Any], error: str | None) -> None:
    result = parse_documents([peer_doc(**spec)])
    if error is None:
        assert result.config is not None, result.problems
        assert result.config.peers[0].hold_time is not None
        assert result.config.peers[0].hold_time <= 65535
    else:
        assert result.config is None
        assert any(error in str(e) for e in result.errors), result.errors


def test_disable_mp_warns_only_when_true() -> None:
    """The CRD defaults ``disableMP`` to false, so every BGPPeer carries it."""
    assert parse_documents([peer_doc(disableMP=False)]).problems == ()
    (warning,) = parse_documents([peer_doc(disableMP=True)]).warnings
    assert str(warning) == (
        "warning: BGPPeer/p: spec.disableMP: deprecated and without effect: each family has "
        "its own session"
    )


# -- zones: one address, one key --------------------------------------------------------------


def lb(name: str, annotation: str | None = None, spec_ip: str | None = None) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "annotations": {}},
        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"], "clusterIPs": ["fd00::1"]},
    }
    if annotation is not None:
        svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] = annotation
    if spec_ip is not None:
        svc["spec"]["loadBalancerIP"] = spec_ip
    return svc


def test_a_zone_suffixed_address_is_refused_so_no_ip_is_held_twice() -> None:
    """``2001:db8::5%x`` is another Python address than ``2001:db8::5``: the allocator held
    one IP for two Services (or raised on its free-space index)."""
    config = Config(pools=(Pool("v6", (ipaddress.ip_network("2001:db8::/64"),)),), source="crd")
    al = Allocator(config)
    assert al.assign(service_view(lb("a", "2001:db8::5"))).ips == (
        ipaddress.ip_address("2001:db8::5"),
    )
    for name, annotation, spec_ip in (
        ("b", "2001:db8::5%x", None),
        ("c", None, "2001:db8::5%eth0"),
        ("d", "198.51.100.1,2001:db8::5%0", None),
    ):
        view = service_view(lb(name, annotation, spec_ip))
        assert any("has a zone" in e for e in view.errors), view.errors
        decision = al.assign(view)
        assert decision.ips == () and decision.pending
    status = service_view(
        {**lb("e"), "status": {"loadBalancer": {"ingress": [{"ip": "2001:db8::5%x"}]}}}
    )
    assert status.assigned_ips == () and status.errors
    result = parse_documents([peer_doc(peerAddress="fe80::1%eth0")])
    assert "zones are not allowed" in str(result.errors[0])
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "z"},
        "spec": {"addresses": ["2001:db8::%x/64", "2001:db8:1::1%x-2001:db8:1::9"]},
    }
    assert len(parse_documents([("f", pool)]).errors) == 2


# -- linear resolution: same answers as the quadratic way ------------------------------------


labels = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=3)
selectors = st.builds(
    LabelSelector,
    st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=2).map(
        lambda d: tuple(sorted(d.items()))
    ),
    st.lists(
        st.builds(
            SelectorRequirement,
            st.sampled_from("abc"),
            st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
            st.lists(st.sampled_from("xyz"), max_size=2, unique=True).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
)


@given(st.lists(labels, max_size=12), selectors)
def test_the_pool_index_matches_what_scanning_every_pool_matches(
    pool_labels: list[dict[str, str]], selector: LabelSelector
) -> None:
    pools = [
        Pool(f"p{i}", (ipaddress.ip_network(f"10.0.{i}.0/24"),), labels=tuple(sorted(lb.items())))
        for i, lb in enumerate(pool_labels)
    ]
    want = [p.name for p in pools if selector.matches(dict(p.labels))]
    assert sorted(PoolIndex(pools).matching(selector)) == sorted(want)


ads = st.builds(
    lambda i, pools, lp, agg, agg6, peers, nodes: BGPAdvertisement(
        f"ad{i:02d}",
        pools,
        agg,
        agg6,
        lp,
        peers=peers,
        node_selectors=(LabelSelector((("n", nodes),)),) if nodes else (),
    ),
    st.integers(0, 99),
    st.lists(st.sampled_from(["v4", "v6", "dual"]), min_size=1, max_size=2, unique=True).map(
        lambda x: tuple(sorted(x))
    ),
    st.sampled_from([0, 100, 200]),
    st.sampled_from([24, 32]),
    st.sampled_from([64, 128]),
    st.lists(st.sampled_from(["r1", "r2"]), max_size=2, unique=True).map(tuple),
    st.sampled_from(["", "x"]),
)


@given(st.lists(ads, max_size=8, unique_by=lambda a: a.name))
@settings(deadline=None)
def test_conflict_check_reports_what_the_pairwise_check_reports(
    found: list[BGPAdvertisement],
) -> None:
    pools = (
        Pool("dual", (ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("2001:db8::/64"))),
        Pool("v4", (ipaddress.ip_network("10.0.0.0/24"),)),
        Pool("v6", (ipaddress.ip_network("2001:db8:1::/64"),)),
    )
    config = Config(pools=pools, bgp_advertisements=tuple(sorted(found, key=lambda a: a.name)))
    problems = Problems()
    check_config(config, problems)
    got = {
        (p.message.split("BGPAdvertisement/")[1].split()[0], p.obj.name)  # type: ignore[union-attr]
        for p in problems.items
        if p.path == "spec.localPref"
    }
    want = set()
    for a, b in itertools.combinations(config.bgp_advertisements, 2):
        same_nodes = set(a.node_selectors) == set(b.node_selectors)
        for name in sorted(set(a.pools) & set(b.pools)):
            pool = config.pool(name)
            assert pool is not None
            if local_pref_conflict(a, b, pool, shared_nodes=same_nodes):
                want.add((a.name, b.name))
                break
    assert got == want
