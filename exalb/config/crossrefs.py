"""Rules that span several config objects (MetalLB's cross-object validation, and more).

Run after every object parsed on its own, so the messages can name both sides of a
conflict ("overlaps IPAddressPool/b spec.addresses: 198.18.0.0/28").
"""

from __future__ import annotations

from exalb.config.model import BGPAdvertisement, Config, IPNetwork, Pool
from exalb.config.problems import ObjectRef, Problems


def check_config(config: Config, problems: Problems) -> None:
    _check_overlaps(config, problems)
    _check_aggregation(config, problems)
    _check_bgp_ad_conflicts(config, problems)
    _check_peers(config, problems)
    _check_bfd(config, problems)
    _check_unadvertised(config, problems)


def _check_overlaps(config: Config, problems: Problems) -> None:
    """No CIDR may overlap any other CIDR in any pool (sweep over sorted CIDRs)."""
    entries: list[tuple[int, int, int, str, IPNetwork]] = []
    for pool in config.pools:
        for cidr in pool.cidrs:
            first = int(cidr.network_address)
            last = int(cidr.broadcast_address)
            entries.append((cidr.version, first, last, pool.name, cidr))
    entries.sort()
    reach: tuple[int, int, int, str, IPNetwork] | None = None
    for entry in entries:
        version, first, _last, name, cidr = entry
        if reach is not None and reach[0] == version and first <= reach[2]:
            where = "in the same pool" if reach[3] == name else f"IPAddressPool/{reach[3]}"
            problems.error(
                ObjectRef("IPAddressPool", name),
                "spec.addresses",
                f"{cidr} overlaps {reach[4]} ({where}); pools must not overlap",
            )
        if reach is None or reach[0] != version or entry[2] > reach[2]:
            reach = entry


def _check_aggregation(config: Config, problems: Problems) -> None:
    """MetalLB's rule (``internal/config/config.go``, ``validateBGPAdvPerPool``): for each
    ``spec.addresses`` entry of a pool, the aggregation length must not be shorter than the
    entry's widest CIDR. A CIDR entry is one CIDR; an ``a-b`` range is summarised into
    several, and only the widest of them counts, so ``198.18.0.1-198.18.0.6`` (/32, /31, /31,
    /32) accepts ``aggregationLength: 31``."""
    for ad in config.bgp_advertisements:
        for pool_name in ad.pools:
            pool = config.pool(pool_name)
            if pool is None:
                continue
            for entry in pool.address_entries():
                if not entry:
                    continue
                widest = min(entry, key=lambda c: c.prefixlen)
                v4 = widest.version == 4
                length = ad.aggregation_length if v4 else ad.aggregation_length_v6
                field = "aggregationLength" if v4 else "aggregationLengthV6"
                if widest.prefixlen > length:
                    where = f"prefix {widest}"
                    if len(entry) > 1:
                        where = f"{widest}, the widest CIDR of range {entry[0].network_address}-"
                        where += f"{entry[-1].broadcast_address}"
                    problems.error(
                        ObjectRef("BGPAdvertisement", ad.name),
                        f"spec.{field}",
                        f"{length} is shorter than {where} of IPAddressPool/{pool.name}: "
                        "the aggregate would cover addresses outside the pool",
                    )


def _shared_peers(a: BGPAdvertisement, b: BGPAdvertisement) -> bool:
    """An empty ``peers`` list means every peer, so it shares with anything."""
    return not a.peers or not b.peers or bool(set(a.peers) & set(b.peers))


def _aggregation_differs(a: BGPAdvertisement, b: BGPAdvertisement, pool: Pool) -> bool:
    """MetalLB's ``isAggrLengthDifferent``: judged on the families the pool has; a pool with
    both needs both lengths to differ."""
    families = pool.families()
    v4_differs = a.aggregation_length != b.aggregation_length
    v6_differs = a.aggregation_length_v6 != b.aggregation_length_v6
    if not families:
        return True
    if families == {4}:
        return v4_differs
    if families == {6}:
        return v6_differs
    return v4_differs and v6_differs


def local_pref_conflict(
    a: BGPAdvertisement, b: BGPAdvertisement, pool: Pool, *, shared_nodes: bool
) -> bool:
    """MetalLB's rule (``internal/config/config.go``, ``BGPAdvertisementsHaveCompatibleLocal
    Pref`` and ``bgpAdvertisementsOverlap``): two advertisements of one pool conflict when
    their LOCAL_PREF differs and they can send the same update: same aggregation (for the
    pool's families), a shared peer, a shared node. The config check and the speaker both
    use it, so the speaker refuses exactly what validation let through."""
    if a.local_pref == b.local_pref:
        return False
    return shared_nodes and _shared_peers(a, b) and not _aggregation_differs(a, b, pool)


def _check_bgp_ad_conflicts(config: Config, problems: Problems) -> None:
    """LOCAL_PREF conflicts that hold whatever the Services and Node labels are.

    As MetalLB: advertisements with ``serviceSelectors`` are not checked here (which
    Services they match is not known yet); the speaker refuses the Services concerned with
    ``conflictingAdvertisements``. MetalLB resolves ``nodeSelectors`` against the Nodes of
    the moment; exalb's config does not depend on Node labels, so only advertisements with
    the same node selectors are certain to share a node. Others are left to the speaker,
    which refuses the Services on the nodes both select.

    Two advertisements identical but for their names are accepted, as in MetalLB (its
    duplicate check compares whole objects, names included): their routes are the same.

    Each conflicting pair is reported once, on the later advertisement, for the first pool
    (by name) they conflict on; at most :data:`MAX_CONFLICTS_SHOWN` per advertisement.
    Linear: advertisements are indexed by what a conflict needs to share (pool, node
    selectors, aggregation length, peer), so each lookup finds only true conflicts.
    """
    by_pool: dict[str, list[BGPAdvertisement]] = {}
    for ad in config.bgp_advertisements:
        if not ad.service_selectors:
            for name in ad.pools:
                by_pool.setdefault(name, []).append(ad)
    reported: set[tuple[str, str]] = set()
    shown: dict[str, int] = {}
    for name in sorted(by_pool):
        pool = config.pool(name)
        if pool is None or not pool.families():
            continue
        index = _ConflictIndex(pool)
        for b in by_pool[name]:
            for a in index.conflicts(b, MAX_CONFLICTS_SHOWN - shown.get(b.name, 0)):
                if (a.name, b.name) in reported:
                    continue
                reported.add((a.name, b.name))
                shown[b.name] = shown.get(b.name, 0) + 1
                problems.error(
                    ObjectRef("BGPAdvertisement", b.name),
                    "spec.localPref",
                    f"{b.local_pref} conflicts with localPref {a.local_pref} of "
                    f"BGPAdvertisement/{a.name} for IPAddressPool/{name}: same aggregation, "
                    "a shared peer and the same nodes",
                )
            index.add(b)


MAX_CONFLICTS_SHOWN = 10
_EVERY_PEER = object()  # the key of advertisements with an empty ``peers`` list
_ANY_PEER = object()  # every advertisement, whatever its peers


class _ConflictIndex:
    """The advertisements of one pool seen so far, by (node selectors, family, aggregation
    length, peer key) and then LOCAL_PREF, so :meth:`conflicts` lists exactly the earlier
    advertisements :func:`local_pref_conflict` would report, without testing every pair."""

    def __init__(self, pool: Pool) -> None:
        self.families = sorted(pool.families())
        self._index: dict[tuple[object, ...], dict[int, list[BGPAdvertisement]]] = {}

    def _keys(self, ad: BGPAdvertisement, peers: tuple[object, ...]) -> list[tuple[object, ...]]:
        """One key per family whose length must match: a pool of one family conflicts on
        that family's length, a dual-stack pool when either length is the same."""
        nodes = frozenset(ad.node_selectors)
        return [
            (nodes, f, ad.aggregation_length if f == 4 else ad.aggregation_length_v6, p)
            for f in self.families
            for p in peers
        ]

    def add(self, ad: BGPAdvertisement) -> None:
        peers: tuple[object, ...] = (*(ad.peers or (_EVERY_PEER,)), _ANY_PEER)
        for key in self._keys(ad, peers):
            self._index.setdefault(key, {}).setdefault(ad.local_pref, []).append(ad)

    def conflicts(self, b: BGPAdvertisement, limit: int) -> list[BGPAdvertisement]:
        """Earlier advertisements that conflict with ``b`` (at most ``limit``)."""
        lookups: tuple[object, ...] = (_ANY_PEER,) if not b.peers else (*b.peers, _EVERY_PEER)
        found: dict[str, BGPAdvertisement] = {}
        for key in self._keys(b, lookups):
            for local_pref, ads in self._index.get(key, {}).items():
                if local_pref == b.local_pref:
                    continue
                for a in ads:
                    if len(found) >= limit:
                        return sorted(found.values(), key=lambda x: x.name)
                    found.setdefault(a.name, a)
        return sorted(found.values(), key=lambda x: x.name)


def _check_peers(config: Config, problems: Problems) -> None:
    """Two peers with the same address, port and source on the same nodes are one session
    twice; the later (by name) is refused, naming the first."""
    first: dict[tuple[object, ...], str] = {}
    for peer in config.peers:
        key = (
            peer.peer_address,
            peer.peer_port,
            peer.source_address,
            frozenset(peer.node_selectors),
        )
        if key in first:
            problems.error(
                ObjectRef("BGPPeer", peer.name),
                "spec.peerAddress",
                f"duplicates BGPPeer/{first[key]} ({peer.peer_address} port {peer.peer_port} "
                "on the same nodes)",
            )
            continue
        first[key] = peer.name
    names = {p.name for p in config.peers}
    for ad in config.bgp_advertisements:
        for i, peer_name in enumerate(ad.peers):
            if peer_name not in names:
                problems.warn(
                    ObjectRef("BGPAdvertisement", ad.name),
                    f"spec.peers[{i}]",
                    f"BGPPeer {peer_name!r} does not exist; nothing is announced to it",
                )


def _check_unadvertised(config: Config, problems: Problems) -> None:
    advertised = {p for ad in config.bgp_advertisements for p in ad.pools}
    advertised |= {p for ad in config.l2_advertisements for p in ad.pools}
    for pool in config.pools:
        if pool.name not in advertised:
            problems.warn(
                ObjectRef("IPAddressPool", pool.name),
                "",
                "no BGPAdvertisement or L2Advertisement selects this pool: its IPs are "
                "assigned but not announced",
            )


def _check_bfd(config: Config, problems: Problems) -> None:
    """MetalLB's rules (``internal/config/config.go``, ``peersFor``; ``validation.go``,
    ``validateConfig``): a BGPPeer's ``bfdProfile`` must name an existing BFDProfile, and
    a profile with ``echoMode`` must not serve a pool with IPv6 addresses (BFD echo is an
    IPv4 mechanism in FRR's bfdd, which exalb runs as MetalLB's FRR mode does)."""
    profiles = {p.name: p for p in config.bfd_profiles}
    for peer in config.peers:
        if peer.bfd_profile is not None and peer.bfd_profile not in profiles:
            problems.error(
                ObjectRef("BGPPeer", peer.name),
                "spec.bfdProfile",
                f"BFDProfile {peer.bfd_profile!r} does not exist",
            )
    echo = {
        p.name
        for p in config.peers
        if p.bfd_profile in profiles and profiles[p.bfd_profile].echo_mode
    }
    if not echo:
        return
    for ad in config.bgp_advertisements:
        peers = sorted(echo if not ad.peers else echo & set(ad.peers))
        v6 = [n for n in ad.pools if (pool := config.pool(n)) and 6 in pool.families()]
        if peers and v6:
            problems.error(
                ObjectRef("BGPAdvertisement", ad.name),
                "spec.peers" if ad.peers else "",
                f"announces IPv6 IPAddressPool/{v6[0]} to BGPPeer/{peers[0]}, whose BFD "
                "profile has echoMode: BFD echo is not possible with IPv6",
            )
