"""BGPAdvertisement and L2Advertisement objects, resolved to the pools they select.

An advertisement names pools (``ipAddressPools``), selects them by label
(``ipAddressPoolSelectors``) or, with neither, takes every pool. The model stores the
resolved names, so no consumer ever re-runs a selector. Resolution goes through a
:class:`PoolIndex` built once per parse: looking a name up or finding the pools a
``matchLabels`` selector can match is a dictionary access, so N advertisements over P pools
cost O(N + P) plus the matches themselves (4,000 pools with their advertisements took 8.8 s
when every advertisement scanned every pool; see ``bench/config_scale.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exalb.config.fields import Fields, read_selectors
from exalb.config.limits import describe
from exalb.config.model import BGPAdvertisement, L2Advertisement, LabelSelector, Pool
from exalb.config.objects import (
    WEIGHTED_ECMP_ANNOTATION,
    flag_annotation,
    name_of,
    spec_fields,
)
from exalb.config.problems import Problems
from exalb.config.values import parse_community


class PoolIndex:
    """The parsed pools by name and by label, for resolving advertisements."""

    def __init__(self, pools: Sequence[Pool]) -> None:
        self.names = frozenset(p.name for p in pools)
        self.all = tuple(sorted(self.names))  # shared by every "all pools" advertisement
        self._order = [p.name for p in pools]
        self._labels = {p.name: dict(p.labels) for p in pools}
        self._by_pair: dict[tuple[str, str], list[str]] = {}
        self._by_key: dict[str, list[str]] = {}
        for p in pools:
            for key, value in p.labels:
                self._by_pair.setdefault((key, value), []).append(p.name)
                self._by_key.setdefault(key, []).append(p.name)

    def matching(self, selector: LabelSelector) -> list[str]:
        """Pools ``selector`` matches; only the pools carrying one of its required labels
        are tested (all pools only for a selector that requires no label)."""
        labels = self._labels
        return [n for n in self._candidates(selector) if selector.matches(labels[n])]

    def _candidates(self, selector: LabelSelector) -> list[str]:
        best: list[str] | None = None
        for pair in selector.match_labels:
            found = self._by_pair.get(pair, [])
            if best is None or len(found) < len(best):
                best = found
        for req in selector.match_expressions:
            if req.operator == "Exists":
                found = self._by_key.get(req.key, [])
            elif req.operator == "In":
                found = [n for v in req.values for n in self._by_pair.get((req.key, v), [])]
            else:
                continue
            if best is None or len(found) < len(best):
                best = found
        return self._order if best is None else best


def resolve_pools(spec: Fields, index: PoolIndex) -> tuple[str, ...]:
    """``ipAddressPools`` + ``ipAddressPoolSelectors`` → pool names; both empty = all pools.

    A named pool that does not exist is an error (MetalLB refuses it too)."""
    names = spec.strings("ipAddressPools", unique=True)
    selectors = read_selectors(spec, "ipAddressPoolSelectors")
    for i, name in enumerate(names):
        if name not in index.names:
            spec.problems.error(
                spec.obj, f"spec.ipAddressPools[{i}]", f"IPAddressPool {name!r} does not exist"
            )
    if not names and not selectors:
        return index.all
    chosen = set(names)
    for sel in selectors:
        matched = index.matching(sel)
        if not matched:
            spec.warn("ipAddressPoolSelectors", f"selector {sel} matches no IPAddressPool")
        chosen.update(matched)
    return tuple(sorted(chosen))


_BGP_AD_FIELDS = frozenset(
    {
        "aggregationLength",
        "aggregationLengthV6",
        "localPref",
        "communities",
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "peers",
        "serviceSelectors",
    }
)


def read_bgp_advertisement(
    obj: Mapping[str, Any], index: PoolIndex, aliases: Mapping[str, str], problems: Problems
) -> BGPAdvertisement | None:
    spec = spec_fields(obj, problems, _BGP_AD_FIELDS)
    before = problems.error_count
    agg = spec.integer("aggregationLength", 32, low=1, high=32)
    agg6 = spec.integer("aggregationLengthV6", 128, low=1, high=128)
    local_pref = spec.integer("localPref", 0, low=0, high=2**32 - 1)
    standard, large = _communities(spec, aliases)
    pool_names = resolve_pools(spec, index)
    selectors = read_selectors(spec, "serviceSelectors")
    if selectors and (agg != 32 or agg6 != 128):
        spec.error(
            "serviceSelectors", "can only be used with the default aggregation lengths (32 and 128)"
        )
    ad = BGPAdvertisement(
        name=name_of(obj),
        pools=pool_names,
        aggregation_length=agg or 32,
        aggregation_length_v6=agg6 or 128,
        local_pref=local_pref or 0,
        communities=standard,
        large_communities=large,
        peers=spec.strings("peers", unique=True),
        node_selectors=read_selectors(spec, "nodeSelectors"),
        service_selectors=selectors,
        weighted_ecmp=flag_annotation(obj, WEIGHTED_ECMP_ANNOTATION, problems),
    )
    return ad if problems.error_count == before else None


def _communities(
    spec: Fields, aliases: Mapping[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(standard, large) communities, aliases resolved.

    MetalLB refuses an entry written twice, but merges two entries that resolve to one value
    (an alias and its a:b): internal/config/config.go, bgpAdvertisementFromCR."""
    standard: list[str] = []
    large: list[str] = []
    written: set[str] = set()
    for path, item in spec.items("communities"):
        if not isinstance(item, str) or not item:
            spec.problems.error(spec.obj, path, f"must be a non-empty string, got {describe(item)}")
            continue
        if item in written:
            spec.problems.error(spec.obj, path, f"duplicate community {describe(item)}")
            continue
        written.add(item)
        try:
            kind, text = parse_community(aliases.get(item, item))
        except ValueError as exc:
            spec.problems.error(spec.obj, path, str(exc))
            continue
        target = standard if kind == "standard" else large
        if text not in target:
            target.append(text)
    return tuple(standard), tuple(large)


_L2_AD_FIELDS = frozenset(
    {
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "interfaces",
        "serviceSelectors",
        "preferredNodeSelectors",
    }
)


def read_l2_advertisement(
    obj: Mapping[str, Any], index: PoolIndex, problems: Problems
) -> L2Advertisement | None:
    spec = spec_fields(obj, problems, _L2_AD_FIELDS)
    before = problems.error_count
    if spec.has("preferredNodeSelectors"):
        spec.error(
            "preferredNodeSelectors",
            "is not supported yet (unreleased in MetalLB); "
            "the election ranks nodes by MetalLB's hash only",
        )
    pool_names = resolve_pools(spec, index)
    # MetalLB accepts any string here (a name no node has only fails at announce time,
    # event announceFailed), so a name Linux cannot have is a warning, not an error; a name
    # listed twice counts once.
    listed = spec.strings("interfaces")
    for i, name in enumerate(listed):
        if len(name) > 15 or "/" in name or " " in name:
            spec.problems.warn(
                spec.obj,
                f"spec.interfaces[{i}]",
                f"{describe(name)} cannot be a Linux interface name; no node will answer on it",
            )
    ad = L2Advertisement(
        name=name_of(obj),
        pools=pool_names,
        node_selectors=read_selectors(spec, "nodeSelectors"),
        interfaces=tuple(dict.fromkeys(listed)),
        service_selectors=read_selectors(spec, "serviceSelectors"),
    )
    return ad if problems.error_count == before else None
