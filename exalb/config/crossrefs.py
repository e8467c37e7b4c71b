"""Rules that span several config objects (MetalLB's cross-object validation, and more).

Run after every object parsed on its own, so the messages can name both sides of a
conflict ("overlaps IPAddressPool/b spec.addresses: 198.18.0.0/28").
"""

from __future__ import annotations

from itertools import combinations

from exalb.config.model import BGPAdvertisement, Config, IPNetwork
from exalb.config.problems import Problems


def check_config(config: Config, problems: Problems) -> None:
    _check_overlaps(config, problems)
    _check_aggregation(config, problems)
    _check_bgp_ad_conflicts(config, problems)
    _check_peers(config, problems)
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
                f"IPAddressPool/{name}",
                "spec.addresses",
                f"{cidr} overlaps {reach[4]} ({where}); pools must not overlap",
            )
        if reach is None or reach[0] != version or entry[2] > reach[2]:
            reach = entry


def _check_aggregation(config: Config, problems: Problems) -> None:
    """An aggregate must not cover addresses outside the pool: prefix ≤ aggregation length."""
    for ad in config.bgp_advertisements:
        for pool_name in ad.pools:
            pool = config.pool(pool_name)
            if pool is None:
                continue
            for cidr in pool.cidrs:
                length = ad.aggregation_length if cidr.version == 4 else ad.aggregation_length_v6
                field = "aggregationLength" if cidr.version == 4 else "aggregationLengthV6"
                if cidr.prefixlen > length:
                    problems.error(
                        f"BGPAdvertisement/{ad.name}",
                        f"spec.{field}",
                        f"{length} is shorter than prefix {cidr} of IPAddressPool/{pool.name}: "
                        "the aggregate would cover addresses outside the pool",
                    )


def _same_scope(a: BGPAdvertisement, b: BGPAdvertisement) -> bool:
    return (
        a.aggregation_length == b.aggregation_length
        and a.aggregation_length_v6 == b.aggregation_length_v6
        and set(a.peers) == set(b.peers)
        and set(a.node_selectors) == set(b.node_selectors)
    )


def _check_bgp_ad_conflicts(config: Config, problems: Problems) -> None:
    for a, b in combinations(config.bgp_advertisements, 2):
        shared = set(a.pools) & set(b.pools)
        if not shared or not _same_scope(a, b):
            continue
        if a.local_pref != b.local_pref:
            problems.error(
                f"BGPAdvertisement/{b.name}",
                "spec.localPref",
                f"{b.local_pref} conflicts with localPref {a.local_pref} of "
                f"BGPAdvertisement/{a.name} for pool(s) {', '.join(sorted(shared))}: "
                "same aggregation, peers and nodes",
            )
        elif (
            set(a.pools) == set(b.pools)
            and set(a.communities) == set(b.communities)
            and set(a.large_communities) == set(b.large_communities)
            and set(a.service_selectors) == set(b.service_selectors)
        ):
            problems.error(
                f"BGPAdvertisement/{b.name}",
                "spec",
                f"duplicates BGPAdvertisement/{a.name}",
            )


def _check_peers(config: Config, problems: Problems) -> None:
    for a, b in combinations(config.peers, 2):
        if (
            a.peer_address == b.peer_address
            and a.peer_port == b.peer_port
            and a.source_address == b.source_address
            and set(a.node_selectors) == set(b.node_selectors)
        ):
            problems.error(
                f"BGPPeer/{b.name}",
                "spec.peerAddress",
                f"duplicates BGPPeer/{a.name} ({a.peer_address} port {a.peer_port} on the "
                "same nodes)",
            )
    names = {p.name for p in config.peers}
    for ad in config.bgp_advertisements:
        for i, peer in enumerate(ad.peers):
            if peer not in names:
                problems.warn(
                    f"BGPAdvertisement/{ad.name}",
                    f"spec.peers[{i}]",
                    f"BGPPeer {peer!r} does not exist; nothing is announced to it",
                )


def _check_unadvertised(config: Config, problems: Problems) -> None:
    advertised = {p for ad in config.bgp_advertisements for p in ad.pools}
    advertised |= {p for ad in config.l2_advertisements for p in ad.pools}
    for pool in config.pools:
        if pool.name not in advertised:
            problems.warn(
                f"IPAddressPool/{pool.name}",
                "",
                "no BGPAdvertisement or L2Advertisement selects this pool: its IPs are "
                "assigned but not announced",
            )
