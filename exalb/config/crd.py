"""Parse MetalLB ``metallb.io`` custom resources into the config model.

Accepts exactly what MetalLB accepts (same kinds, fields and defaults), so a MetalLB user's
YAML works unchanged, and refuses loudly what ExaBGP cannot honour (BFD, VRF, unnumbered
peers, ``connectTime``) instead of dropping it. All objects are read before anything is
decided, and every problem of every object is reported in one pass; cross-object rules live
in :mod:`exalb.config.crossrefs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exalb.config.crossrefs import check_config
from exalb.config.fields import Fields, read_selectors
from exalb.config.model import (
    BGPAdvertisement,
    Config,
    IPNetwork,
    L2Advertisement,
    LabelSelector,
    Peer,
    Pool,
    SecretRef,
    ServiceAllocation,
)
from exalb.config.problems import ObjectRef, Problems, Subject
from exalb.config.result import ParseResult
from exalb.config.values import (
    parse_addresses,
    parse_asn,
    parse_community,
    parse_duration,
    parse_ip,
)

GROUP = "metallb.io"
KINDS: dict[str, tuple[str, ...]] = {
    "IPAddressPool": ("v1beta1",),
    "BGPPeer": ("v1beta2", "v1beta1"),
    "BGPAdvertisement": ("v1beta1",),
    "L2Advertisement": ("v1beta1",),
    "Community": ("v1beta1",),
    "BFDProfile": ("v1beta1",),
}
# Object origin annotation set by the legacy converter, so errors point at the legacy field.
LEGACY_SOURCE_ANNOTATION = "exalb.io/legacy-source"
_META = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def object_label(obj: Mapping[str, Any]) -> ObjectRef:
    """The object's kind and name, plus the legacy origin when the object was converted
    (renders ``Kind/name (from peers[0])``)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    ann = meta.get("annotations")
    legacy = ann.get(LEGACY_SOURCE_ANNOTATION) if isinstance(ann, Mapping) else None
    return ObjectRef(
        kind=str(obj.get("kind", "?")),
        name=str(meta.get("name", "?")),
        namespace=str(meta.get("namespace") or ""),
        legacy=str(legacy) if legacy else None,
    )


def is_metallb_object(obj: Mapping[str, Any]) -> bool:
    api = obj.get("apiVersion")
    return isinstance(api, str) and api.split("/")[0] == GROUP


def parse_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    namespace: str | None = None,
    source: str = "crd",
) -> ParseResult:
    """Parse MetalLB custom resources (JSON/YAML form) into a validated :class:`Config`.

    ``namespace``: MetalLB reads config only from its install namespace; objects elsewhere
    are ignored with a warning. ``None`` accepts any namespace (offline checks).
    """
    problems = Problems()
    by_kind: dict[str, list[Mapping[str, Any]]] = {k: [] for k in KINDS}
    seen: dict[tuple[str, str], ObjectRef] = {}
    for obj in objects:
        label = object_label(obj)
        api = str(obj.get("apiVersion", ""))
        kind = str(obj.get("kind", ""))
        group, _, version = api.partition("/")
        if group != GROUP:
            problems.warn(label, "apiVersion", f"{api!r} is not a {GROUP} object; ignored")
            continue
        if kind not in KINDS:
            problems.error(label, "kind", f"unknown kind {kind!r} in {GROUP}")
            continue
        if version not in KINDS[kind]:
            problems.error(
                label,
                "apiVersion",
                f"{api!r} is not served for {kind}; use {GROUP}/{KINDS[kind][0]}",
            )
            continue
        meta = obj.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if not isinstance(name, str) or not name:
            problems.error(label, "metadata.name", "is required")
            continue
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        if namespace is not None and ns not in (None, namespace):
            problems.warn(
                label,
                "metadata.namespace",
                f"{ns!r} is not the install namespace {namespace!r}; ignored",
            )
            continue
        if (kind, name) in seen:
            problems.error(label, "metadata.name", f"duplicate {kind} name {name!r}")
            continue
        seen[(kind, name)] = label
        for key in obj:
            if key not in _META:
                problems.error(label, str(key), "unknown field")
        by_kind[kind].append(obj)

    for obj in by_kind["BFDProfile"]:
        check_bfd_profile(_spec(obj, problems, frozenset(BFD_FIELDS)))
        problems.warn(
            object_label(obj), "", "BFD is not supported by ExaBGP; this profile is ignored"
        )
    pools = [p for o in by_kind["IPAddressPool"] if (p := _pool(o, problems)) is not None]
    aliases = _aliases(by_kind["Community"], problems)
    peers = [y for o in by_kind["BGPPeer"] if (y := _peer(o, problems)) is not None]
    bgp_ads = [
        a
        for o in by_kind["BGPAdvertisement"]
        if (a := _bgp_ad(o, pools, aliases, problems)) is not None
    ]
    l2_ads = [
        w for o in by_kind["L2Advertisement"] if (w := _l2_ad(o, pools, problems)) is not None
    ]
    config = Config(
        pools=tuple(sorted(pools, key=lambda p: p.name)),
        peers=tuple(sorted(peers, key=lambda p: p.name)),
        bgp_advertisements=tuple(sorted(bgp_ads, key=lambda a: a.name)),
        l2_advertisements=tuple(sorted(l2_ads, key=lambda a: a.name)),
        community_aliases=tuple(sorted(aliases.items())),
        source="configmap" if source == "configmap" else "crd",
    )
    check_config(config, problems)
    return ParseResult.of(config, problems)


# MetalLB's BFDProfile rules (``internal/config/config.go``, ``bfdProfileFromCR``): each
# value is optional; a given one must lie in its range. exalb cannot run BFD, but a profile
# MetalLB would refuse is refused here too, so a config valid here is valid there.
BFD_RANGES: dict[str, tuple[int, int]] = {
    "receiveInterval": (10, 60000),
    "transmitInterval": (10, 60000),
    "echoInterval": (10, 60000),
    "detectMultiplier": (2, 255),
    "minimumTtl": (1, 254),
}
BFD_FLAGS = ("echoMode", "passiveMode")
BFD_FIELDS = (*BFD_RANGES, *BFD_FLAGS)


def check_bfd_profile(spec: Fields, names: Mapping[str, str] | None = None) -> None:
    """Check one BFD profile's values; ``names`` maps the CRD field names to another
    spelling (the legacy ConfigMap's ``receive-interval``, ...)."""
    names = names or {}
    for key, (low, high) in BFD_RANGES.items():
        spec.integer(names.get(key, key), None, low=low, high=high)
    for key in BFD_FLAGS:
        spec.boolean(names.get(key, key), False)


def _spec(obj: Mapping[str, Any], problems: Problems, known: frozenset[str]) -> Fields:
    return Fields(obj.get("spec"), object_label(obj), "spec", problems, known)


def _labels(obj: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return str(meta["name"])


def _namespace(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return str(ns) if ns else None


_POOL_FIELDS = frozenset({"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"})
_ALLOC_FIELDS = frozenset({"priority", "namespaces", "namespaceSelectors", "serviceSelectors"})


def _pool(obj: Mapping[str, Any], problems: Problems) -> Pool | None:
    spec = _spec(obj, problems, _POOL_FIELDS)
    before = len(problems.errors)
    cidrs: list[IPNetwork] = []
    groups: list[tuple[IPNetwork, ...]] = []
    entries = list(spec.items("addresses"))
    if not entries:
        spec.error("addresses", "is required and must not be empty")
    for path, item in entries:
        try:
            group = parse_addresses(item)
        except ValueError as exc:
            problems.error(spec.obj, path, str(exc))
            continue
        cidrs.extend(group)
        groups.append(group)
    allocation: ServiceAllocation | None = None
    if spec.has("serviceAllocation"):
        sa = spec.mapping("serviceAllocation", _ALLOC_FIELDS)
        allocation = ServiceAllocation(
            priority=sa.integer("priority", 0, low=0, high=2**31 - 1) or 0,
            namespaces=sa.strings("namespaces", unique=True),
            namespace_selectors=read_selectors(sa, "namespaceSelectors"),
            service_selectors=read_selectors(sa, "serviceSelectors"),
        )
    pool = Pool(
        name=_name(obj),
        cidrs=tuple(cidrs),
        auto_assign=spec.boolean("autoAssign", True),
        avoid_buggy_ips=spec.boolean("avoidBuggyIPs", False),
        service_allocation=allocation,
        labels=_labels(obj),
        entries=tuple(groups),
    )
    return pool if len(problems.errors) == before else None


_COMMUNITY_FIELDS = frozenset({"communities"})


def _aliases(objs: list[Mapping[str, Any]], problems: Problems) -> dict[str, str]:
    """Community alias name → value (``a:b`` or ``large:a:b:c``), unique across objects."""
    aliases: dict[str, str] = {}
    owner: dict[str, Subject] = {}
    for obj in objs:
        spec = _spec(obj, problems, _COMMUNITY_FIELDS)
        for path, item in spec.items("communities"):
            f = Fields(item, spec.obj, path, problems, frozenset({"name", "value"}))
            name = f.string("name", required=True)
            value = f.string("value", required=True)
            if name is None or value is None:
                continue
            try:
                parse_community(value)
            except ValueError as exc:
                f.error("value", str(exc))
                continue
            if name in aliases:
                f.error("name", f"alias {name!r} is already defined by {owner[name]}")
                continue
            aliases[name] = value
            owner[name] = spec.obj
    return aliases


_PEER_FIELDS = frozenset(
    {
        "myASN",
        "peerASN",
        "dynamicASN",
        "peerAddress",
        "interface",
        "sourceAddress",
        "routerID",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "connectTime",
        "nodeSelectors",
        "password",
        "passwordSecret",
        "bfdProfile",
        "enableGracefulRestart",
        "ebgpMultiHop",
        "vrf",
        "disableMP",
        "dualStackAddressFamily",
        "localASN",
    }
)


def _peer(obj: Mapping[str, Any], problems: Problems) -> Peer | None:
    spec = _spec(obj, problems, _PEER_FIELDS)
    before = len(problems.errors)
    my_asn = _asn(spec, "myASN", required=True)
    peer_asn = _asn(spec, "peerASN", required=False)
    local_asn = _asn(spec, "localASN", required=False)
    dynamic = spec.string("dynamicASN")
    if dynamic is not None and dynamic not in ("internal", "external"):
        spec.error("dynamicASN", f"{dynamic!r} must be internal or external")
    if peer_asn is not None and dynamic is not None:
        spec.error("dynamicASN", "peerASN and dynamicASN are mutually exclusive")
    if peer_asn is None and dynamic is None:
        spec.error("peerASN", "one of peerASN or dynamicASN is required")
    if spec.has("interface"):
        spec.error("interface", "unnumbered BGP peers are not supported by ExaBGP; use peerAddress")
    address = None
    if spec.has("peerAddress"):
        try:
            address = parse_ip(spec.raw("peerAddress"))
        except ValueError as exc:
            spec.error("peerAddress", str(exc))
    elif not spec.has("interface"):
        spec.error("peerAddress", "is required")
    source = _optional_ip(spec, "sourceAddress")
    router_id = _optional_ip(spec, "routerID")
    if router_id is not None and router_id.version != 4:
        spec.error("routerID", f"{router_id} must be an IPv4 address")
        router_id = None
    port = spec.integer("peerPort", 179, low=1, high=16384) or 179
    hold, keepalive = _timers(spec)
    if spec.has("connectTime"):
        spec.error("connectTime", "ExaBGP 5.0 has no connect-retry setting; remove the field")
    if spec.string("bfdProfile"):
        spec.error(
            "bfdProfile",
            "BFD is not supported by ExaBGP (fastest detection is the hold time, 3 s minimum)",
        )
    if spec.string("vrf"):
        spec.error("vrf", "VRFs are not supported; run the speaker inside the VRF instead")
    if spec.boolean("dualStackAddressFamily", False):
        spec.error(
            "dualStackAddressFamily",
            "exalb announces each family over its own session; configure an IPv6 peer instead",
        )
    # the CRD defaults it to false on every object: only a true is worth a word
    if spec.has("disableMP") and spec.boolean("disableMP", False):
        spec.warn("disableMP", "deprecated and without effect: each family has its own session")
    password = spec.string("password")
    secret: SecretRef | None = None
    if spec.has("passwordSecret"):
        ps = spec.mapping("passwordSecret", frozenset({"name", "namespace"}))
        sname = ps.string("name", required=True)
        sns = ps.string("namespace") or _namespace(obj) or ""
        if sname:
            secret = SecretRef(sname, sns)
        if password:
            spec.error("passwordSecret", "password and passwordSecret are mutually exclusive")
    multihop = spec.boolean("ebgpMultiHop", False)
    graceful = spec.boolean("enableGracefulRestart", False)
    selectors = read_selectors(spec, "nodeSelectors")
    if len(problems.errors) != before or my_asn is None or address is None:
        return None
    peer = Peer(
        name=_name(obj),
        my_asn=my_asn,
        peer_address=address,
        peer_asn=peer_asn,
        dynamic_asn=dynamic,  # type: ignore[arg-type]
        peer_port=port,
        source_address=source,
        router_id=router_id,
        hold_time=hold,
        keepalive_time=keepalive,
        ebgp_multihop=multihop,
        password=password or None,
        password_secret=secret,
        node_selectors=selectors,
        enable_graceful_restart=graceful,
        local_asn=local_asn,
    )
    if multihop and peer.is_ibgp:
        spec.error("ebgpMultiHop", "is only valid for eBGP peers (peer AS equals local AS)")
        return None
    if source is not None and source.version != address.version:
        spec.error("sourceAddress", f"{source} is not of the same family as {address}")
        return None
    return peer


def _asn(spec: Fields, key: str, *, required: bool) -> int | None:
    if not spec.has(key):
        if required:
            spec.error(key, "is required")
        return None
    value = spec.raw(key)
    if key == "peerASN" and value == 0:
        return None  # MetalLB's omitempty: 0 means unset
    try:
        return parse_asn(value)
    except ValueError as exc:
        spec.error(key, str(exc))
        return None


def _optional_ip(spec: Fields, key: str) -> Any:
    if not spec.has(key):
        return None
    try:
        return parse_ip(spec.raw(key))
    except ValueError as exc:
        spec.error(key, str(exc))
        return None


def _timers(spec: Fields) -> tuple[int | None, int | None]:
    """holdTime/keepaliveTime: one given derives the other; ExaBGP only has hold time."""
    hold = _seconds(spec, "holdTime")
    keepalive = _seconds(spec, "keepaliveTime")
    if hold is not None and hold != 0 and hold < 3:
        spec.error("holdTime", f"{hold}s is invalid: must be 0 or at least 3s")
        return None, None
    if hold is not None and keepalive is not None and keepalive > hold:
        spec.error("keepaliveTime", f"{keepalive}s must not exceed holdTime {hold}s")
        return None, None
    if keepalive is not None:
        derived_hold = hold if hold is not None else keepalive * 3
        if derived_hold // 3 != keepalive:
            spec.error(
                "keepaliveTime",
                f"ExaBGP always uses holdTime/3 as keepalive ({derived_hold // 3}s); "
                f"set keepaliveTime to that or remove it",
            )
            return None, None
        hold = derived_hold
    return hold, (hold // 3 if hold is not None else None)


def _seconds(spec: Fields, key: str) -> int | None:
    if not spec.has(key):
        return None
    try:
        return round(parse_duration(spec.raw(key)))
    except ValueError as exc:
        spec.error(key, str(exc))
        return None


def _resolve_pools(spec: Fields, pools: list[Pool]) -> tuple[tuple[str, ...], bool]:
    """``ipAddressPools`` + ``ipAddressPoolSelectors`` → pool names; both empty = all pools.

    Returns the names and whether every named pool exists.
    """
    names = spec.strings("ipAddressPools", unique=True)
    selectors = read_selectors(spec, "ipAddressPoolSelectors")
    known = {p.name for p in pools}
    ok = True
    for i, name in enumerate(names):
        if name not in known:
            spec.problems.error(
                spec.obj, f"spec.ipAddressPools[{i}]", f"IPAddressPool {name!r} does not exist"
            )
            ok = False
    if not names and not selectors:
        return tuple(sorted(known)), ok
    chosen = set(names)
    for sel in selectors:
        matched = [p.name for p in pools if sel.matches(dict(p.labels))]
        if not matched:
            spec.warn("ipAddressPoolSelectors", f"selector {sel} matches no IPAddressPool")
        chosen.update(matched)
    return tuple(sorted(chosen)), ok


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


def _bgp_ad(
    obj: Mapping[str, Any], pools: list[Pool], aliases: Mapping[str, str], problems: Problems
) -> BGPAdvertisement | None:
    spec = _spec(obj, problems, _BGP_AD_FIELDS)
    before = len(problems.errors)
    agg = spec.integer("aggregationLength", 32, low=1, high=32)
    agg6 = spec.integer("aggregationLengthV6", 128, low=1, high=128)
    local_pref = spec.integer("localPref", 0, low=0, high=2**32 - 1)
    standard: list[str] = []
    large: list[str] = []
    written: set[str] = set()
    for path, item in spec.items("communities"):
        if not isinstance(item, str) or not item:
            problems.error(spec.obj, path, f"must be a non-empty string, got {item!r}")
            continue
        # MetalLB refuses an entry written twice, but merges two entries that resolve to
        # one value (an alias and its a:b): internal/config/config.go, bgpAdvertisementFromCR.
        if item in written:
            problems.error(spec.obj, path, f"duplicate community {item!r}")
            continue
        written.add(item)
        value = aliases.get(item, item)
        try:
            kind, text = parse_community(value)
        except ValueError as exc:
            problems.error(spec.obj, path, str(exc))
            continue
        target = standard if kind == "standard" else large
        if text not in target:
            target.append(text)
    pool_names, _ = _resolve_pools(spec, pools)
    selectors = read_selectors(spec, "serviceSelectors")
    if selectors and (agg != 32 or agg6 != 128):
        spec.error(
            "serviceSelectors", "can only be used with the default aggregation lengths (32 and 128)"
        )
    ad = BGPAdvertisement(
        name=_name(obj),
        pools=pool_names,
        aggregation_length=agg or 32,
        aggregation_length_v6=agg6 or 128,
        local_pref=local_pref or 0,
        communities=tuple(standard),
        large_communities=tuple(large),
        peers=spec.strings("peers", unique=True),
        node_selectors=read_selectors(spec, "nodeSelectors"),
        service_selectors=selectors,
    )
    return ad if len(problems.errors) == before else None


_L2_AD_FIELDS = frozenset(
    {
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "interfaces",
        "serviceSelectors",
    }
)


def _l2_ad(obj: Mapping[str, Any], pools: list[Pool], problems: Problems) -> L2Advertisement | None:
    spec = _spec(obj, problems, _L2_AD_FIELDS | {"preferredNodeSelectors"})
    before = len(problems.errors)
    if spec.has("preferredNodeSelectors"):
        spec.error(
            "preferredNodeSelectors",
            "is not supported yet (unreleased in MetalLB); "
            "the election ranks nodes by MetalLB's hash only",
        )
    pool_names, _ = _resolve_pools(spec, pools)
    # MetalLB accepts any string here (a name no node has only fails at announce time,
    # event announceFailed), so a name Linux cannot have is a warning, not an error; a name
    # listed twice counts once.
    listed = spec.strings("interfaces")
    for i, name in enumerate(listed):
        if len(name) > 15 or "/" in name or " " in name:
            problems.warn(
                spec.obj,
                f"spec.interfaces[{i}]",
                f"{name!r} cannot be a Linux interface name; no node will answer on it",
            )
    interfaces = tuple(dict.fromkeys(listed))
    ad = L2Advertisement(
        name=_name(obj),
        pools=pool_names,
        node_selectors=read_selectors(spec, "nodeSelectors"),
        interfaces=interfaces,
        service_selectors=read_selectors(spec, "serviceSelectors"),
    )
    return ad if len(problems.errors) == before else None


__all__ = ["LabelSelector", "is_metallb_object", "object_label", "parse_objects"]
