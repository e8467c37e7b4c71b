"""The one immutable config model that both programs decide on.

Both MetalLB formats (the ``metallb.io`` CRDs and the legacy ConfigMap) are parsed into
these frozen dataclasses, so the allocator, the speaker's announcement decisions and the CLI
never care where a setting came from. Everything here is plain data: tuples, ``ipaddress``
types and ints, hashable and safe to share between threads. Cross-references are resolved at
parse time (an advertisement holds the *names* of the pools it selects, never a selector that
would need the pool list again), so a consumer never has to re-run validation logic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]

SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


@dataclass(frozen=True)
class SelectorRequirement:
    """One ``matchExpressions`` entry of a Kubernetes label selector."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; the empty selector matches everything (as upstream)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts) or "<all>"


def any_selector_matches(selectors: tuple[LabelSelector, ...], labels: Mapping[str, str]) -> bool:
    """MetalLB's rule for selector lists: empty list = everything, otherwise OR of entries."""
    return not selectors or any(s.matches(labels) for s in selectors)


@dataclass(frozen=True)
class ServiceAllocation:
    """``IPAddressPool.spec.serviceAllocation``: pins a pool to namespaces or Services."""

    priority: int = 0
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def matches(
        self,
        namespace: str,
        namespace_labels: Mapping[str, str],
        service_labels: Mapping[str, str],
    ) -> bool:
        """Namespace constraint (names OR selectors) AND service constraint, each if given."""
        if self.namespaces or self.namespace_selectors:
            ns_ok = namespace in self.namespaces or any(
                s.matches(namespace_labels) for s in self.namespace_selectors
            )
            if not ns_ok:
                return False
        if self.service_selectors:
            return any(s.matches(service_labels) for s in self.service_selectors)
        return True


@dataclass(frozen=True)
class Pool:
    """An address pool. ``cidrs`` keeps the user's order: allocation walks them in it.

    ``entries`` remembers which CIDRs each ``spec.addresses`` entry became (an ``a-b`` range
    is summarised into several), because MetalLB checks an advertisement's aggregation
    length per entry, not per CIDR (see :mod:`exalb.config.crossrefs`). Empty means "one
    entry per CIDR" (pools built by hand in tests).
    """

    name: str
    cidrs: tuple[IPNetwork, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    service_allocation: ServiceAllocation | None = None
    labels: tuple[tuple[str, str], ...] = ()
    entries: tuple[tuple[IPNetwork, ...], ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        """``ip`` lies in one of the pool's CIDRs (``avoidBuggyIPs`` aside)."""
        return any(ip in c for c in self.cidrs)

    def allows(self, ip: IPAddress) -> bool:
        """``ip`` may be assigned from this pool: in a CIDR and not excluded by
        ``avoidBuggyIPs``. MetalLB's allocator counts an excluded ``.0``/``.255`` as outside
        the pool (``internal/allocator/allocator.go``, ``poolFor``)."""
        return self.contains(ip) and not self.is_buggy(ip)

    def address_entries(self) -> tuple[tuple[IPNetwork, ...], ...]:
        return self.entries or tuple((c,) for c in self.cidrs)

    def cidrs_of(self, family: Family) -> tuple[IPNetwork, ...]:
        return tuple(c for c in self.cidrs if c.version == family)

    def families(self) -> frozenset[Family]:
        return frozenset(4 if c.version == 4 else 6 for c in self.cidrs)

    def is_buggy(self, ip: IPAddress) -> bool:
        """``avoidBuggyIPs``: IPv4 addresses ending in .0 or .255 are skipped."""
        return self.avoid_buggy_ips and ip.version == 4 and int(ip) % 256 in (0, 255)

    def capacity(self, family: Family) -> int:
        """Exact number of allocatable addresses of one family (Python int: no overflow)."""
        total = 0
        for c in self.cidrs_of(family):
            total += c.num_addresses
            if self.avoid_buggy_ips and family == 4:
                total -= _buggy_count(c)
        return total


def _buggy_count(net: IPNetwork) -> int:
    """How many addresses of ``net`` end in .0 or .255."""
    first = int(net.network_address)
    last = int(net.broadcast_address)
    return _count_mod(first, last, 0) + _count_mod(first, last, 255)


def _count_mod(first: int, last: int, residue: int) -> int:
    """Count x in [first, last] with x % 256 == residue."""

    def upto(n: int) -> int:  # numbers in [0, n] with the residue
        return 0 if n < residue else (n - residue) // 256 + 1

    return upto(last) - upto(first - 1)


@dataclass(frozen=True)
class SecretRef:
    """``BGPPeer.spec.passwordSecret``: a basic-auth Secret, key ``password``."""

    name: str
    namespace: str


@dataclass(frozen=True)
class Peer:
    """A BGP peer (BGPPeer v1beta2 or a legacy ``peers`` entry)."""

    name: str
    my_asn: int
    peer_address: IPAddress
    peer_asn: int | None = None
    dynamic_asn: Literal["internal", "external"] | None = None
    peer_port: int = 179
    source_address: IPAddress | None = None
    router_id: ipaddress.IPv4Address | None = None
    # Seconds. ``None`` means "not set": the speaker renders 90 s like native MetalLB.
    hold_time: int | None = None
    keepalive_time: int | None = None
    ebgp_multihop: bool = False
    password: str | None = field(default=None, repr=False)
    password_secret: SecretRef | None = None
    node_selectors: tuple[LabelSelector, ...] = ()
    enable_graceful_restart: bool = False
    # ``localASN``: the AS this session presents instead of ``my_asn`` (ExaBGP ``local-as``).
    local_asn: int | None = None
    # ``bfdProfile``: the name of a :class:`BFDProfile` of the same config (checked at parse).
    bfd_profile: str | None = None

    @property
    def session_local_asn(self) -> int:
        return self.local_asn if self.local_asn is not None else self.my_asn

    @property
    def family(self) -> Family:
        return 4 if self.peer_address.version == 4 else 6

    @property
    def is_ibgp(self) -> bool:
        if self.dynamic_asn is not None:
            return self.dynamic_asn == "internal"
        return self.peer_asn == self.session_local_asn

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.node_selectors, node_labels)


@dataclass(frozen=True)
class BFDProfile:
    """A ``BFDProfile`` (or legacy ``bfd-profiles`` entry): the BFD timers of the sessions
    whose BGPPeer names it. ``None`` = not set; the speaker then uses MetalLB's (and FRR's)
    default, so a profile written for MetalLB's FRR mode means the same here."""

    name: str
    receive_interval: int | None = None  # ms
    transmit_interval: int | None = None  # ms
    detect_multiplier: int | None = None
    echo_interval: int | None = None  # ms
    echo_mode: bool = False
    passive_mode: bool = False
    minimum_ttl: int | None = None


@dataclass(frozen=True)
class BGPAdvertisement:
    """How a pool's IPs are announced over BGP. ``pools`` are resolved pool names."""

    name: str
    pools: tuple[str, ...]
    aggregation_length: int = 32
    aggregation_length_v6: int = 128
    local_pref: int = 0  # 0 = not sent, as in MetalLB
    communities: tuple[str, ...] = ()  # "a:b", already de-aliased
    large_communities: tuple[str, ...] = ()  # "a:b:c", already de-aliased, no "large:" prefix
    peers: tuple[str, ...] = ()  # BGPPeer names; empty = every peer of the node
    node_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()
    # exalb's own (annotation WEIGHTED_ECMP_ANNOTATION): routes of externalTrafficPolicy Local
    # Services carry the BGP link-bandwidth extended community in proportion to the node's
    # ready local endpoints, so routers that honour it weight their ECMP next hops.
    weighted_ecmp: bool = False

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.node_selectors, node_labels)

    def selects_service(self, service_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.service_selectors, service_labels)


@dataclass(frozen=True)
class L2Advertisement:
    """Which pools are answered for on the L2 segment, from which nodes and interfaces."""

    name: str
    pools: tuple[str, ...]
    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()  # empty = all (non-excluded) interfaces
    service_selectors: tuple[LabelSelector, ...] = ()

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.node_selectors, node_labels)

    def selects_service(self, service_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.service_selectors, service_labels)


ConfigSource = Literal["crd", "configmap", "empty"]


@dataclass(frozen=True)
class Config:
    """A complete, validated configuration. Pools and peers are sorted by name."""

    pools: tuple[Pool, ...] = ()
    peers: tuple[Peer, ...] = ()
    bgp_advertisements: tuple[BGPAdvertisement, ...] = ()
    l2_advertisements: tuple[L2Advertisement, ...] = ()
    # Community aliases as defined (name -> "a:b" or "large:a:b:c"), for display/convert.
    community_aliases: tuple[tuple[str, str], ...] = ()
    source: ConfigSource = "empty"
    bfd_profiles: tuple[BFDProfile, ...] = ()  # sorted by name

    def bfd_profile(self, name: str) -> BFDProfile | None:
        for p in self.bfd_profiles:
            if p.name == name:
                return p
        return None

    # Lookups by name are dictionary accesses, built on first use (the instance is frozen, so
    # they never go stale): a consumer asking once per Service or per advertisement must not
    # scan every pool each time.
    @cached_property
    def _pools_by_name(self) -> dict[str, Pool]:
        return {p.name: p for p in reversed(self.pools)}  # the first of a name wins

    @cached_property
    def _peers_by_name(self) -> dict[str, Peer]:
        return {p.name: p for p in reversed(self.peers)}

    @cached_property
    def _bgp_ads_by_pool(self) -> dict[str, tuple[BGPAdvertisement, ...]]:
        return _by_pool(self.bgp_advertisements)

    @cached_property
    def _l2_ads_by_pool(self) -> dict[str, tuple[L2Advertisement, ...]]:
        return _by_pool(self.l2_advertisements)

    def pool(self, name: str) -> Pool | None:
        return self._pools_by_name.get(name)

    def pool_of(self, ip: IPAddress) -> Pool | None:
        """The pool whose CIDRs hold ``ip`` (pools never overlap, so at most one)."""
        for p in self.pools:
            if p.contains(ip):
                return p
        return None

    def allocatable_pool_of(self, ip: IPAddress) -> Pool | None:
        """The pool ``ip`` may be assigned from (:meth:`Pool.allows`), or ``None``."""
        pool = self.pool_of(ip)
        return pool if pool is not None and pool.allows(ip) else None

    def peer(self, name: str) -> Peer | None:
        return self._peers_by_name.get(name)

    def bgp_advertisements_for(self, pool: str) -> tuple[BGPAdvertisement, ...]:
        return self._bgp_ads_by_pool.get(pool, ())

    def l2_advertisements_for(self, pool: str) -> tuple[L2Advertisement, ...]:
        return self._l2_ads_by_pool.get(pool, ())


_Ad = TypeVar("_Ad", BGPAdvertisement, L2Advertisement)


def _by_pool(ads: tuple[_Ad, ...]) -> dict[str, tuple[_Ad, ...]]:
    """Advertisements per pool name, each in the config's order, each once per pool."""
    out: dict[str, list[_Ad]] = {}
    for ad in ads:
        for name in dict.fromkeys(ad.pools):
            out.setdefault(name, []).append(ad)
    return {k: tuple(v) for k, v in out.items()}


EMPTY_CONFIG = Config()
