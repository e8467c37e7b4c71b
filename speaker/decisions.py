"""This node's BGP announcements: a pure function of config, node, Services and endpoints.

MetalLB's rules (speaker ``ShouldAnnounce`` and its pre-checks, docs/metallb.md, "Announcing rules")
are kept, including the order of the withdraw reasons, so a user reading "why is my Service not
announced from node X" gets MetalLB's vocabulary. exalb adds a reason to every "no", and
returns the routes themselves (prefix, peer, attributes) so the driver can diff them against
ExaBGP's adj-rib-out and the status can say what each node sends.

Decisions made here (documented because MetalLB leaves them implicit):

* **IP outside every pool.** The controller never re-IPs a Service whose IP left every pool
  (docs/contracts.md); it keeps the IP and flags it. The speaker keeps announcing such an IP
  **only if it can still find the pool**: the pool named by the Service's
  ``ip-allocated-from-pool`` annotation, if that pool still exists. Its advertisements then
  say to which peers and with which attributes, and the decision carries a warning. If the
  pool itself is gone there is no advertisement to follow: inventing peers or attributes
  would be worse than withdrawing, so the reason is ``ipNotAllowed`` (as MetalLB).
* **Conflicting advertisements.** MetalLB's rule, the one the config check uses
  (:func:`exalb.config.crossrefs.local_pref_conflict`): among the advertisements that match
  this node and the Service, two with different LOCAL_PREF conflict when their aggregation
  is the same for the pool's families and they share a peer (an empty list is every peer).
  The config check leaves out advertisements with ``serviceSelectors`` (and ones whose
  node selectors differ), so this is where those conflicts are caught, per Service, as in
  MetalLB's ``checkBGPAdvConflicts`` (``speaker/bgp_controller.go``).
* **Same prefix, same peer, different communities** (two advertisements, or two Services
  aggregated into one prefix): one BGP route can only carry one attribute set, so the
  communities are merged (union), as MetalLB's FRR mode does.
* **Families.** An IPv4 prefix goes to IPv4 peers only and an IPv6 prefix to IPv6 peers
  only (``next-hop self`` resolves to the session's family; docs/exabgp.md, "Limitations").
* **Weighted ECMP** (exalb ADD, opt-in per advertisement): routes of a Local Service carry
  the link bandwidth of the node's ready local endpoints (:mod:`speaker.linkbw`).
* ``noPeers`` (exalb ADD): every rule says "announce" but no peer of the IP's family is
  selected for this node, so nothing is sent. MetalLB would report success here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from exalb.config.crossrefs import local_pref_conflict
from exalb.config.model import BGPAdvertisement, Config, IPAddress, IPNetwork, Peer, Pool
from exalb.contracts.speaker_status import Reason
from exalb.views import EXCLUDE_LB_LABEL, EndpointsView, NodeView, ServiceView
from speaker import linkbw


@dataclass(frozen=True)
class Route:
    """One prefix to one peer with its attributes; ``next_hop`` is always ``self`` today."""

    prefix: IPNetwork
    peer_name: str
    next_hop: str = "self"
    local_pref: int | None = None  # None = attribute not sent
    communities: tuple[str, ...] = ()  # sorted, unique, "a:b"
    large_communities: tuple[str, ...] = ()  # sorted, unique, "a:b:c"
    med: int | None = None
    # sorted, unique, ExaBGP's spelling; today only the link bandwidth (speaker.linkbw)
    extended_communities: tuple[str, ...] = ()

    @property
    def family(self) -> Literal[4, 6]:
        return 4 if self.prefix.version == 4 else 6

    @property
    def key(self) -> tuple[str, IPNetwork]:
        """Identity in a BGP RIB without add-path: one route per (peer, prefix)."""
        return (self.peer_name, self.prefix)

    def sort_key(self) -> tuple[str, int, int, int]:
        return (self.peer_name, self.prefix.version, int(self.prefix.network_address),
                self.prefix.prefixlen)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """Speaker flags that change decisions."""

    ignore_exclude_lb: bool = False
    # MetalLB ``--lb-class``: None = only class-less Services, else exactly this class.
    load_balancer_class: str | None = None


@dataclass(frozen=True)
class ServiceDecision:
    """Why this node does (not) announce one Service, and what it sends for it."""

    service: str  # namespace/name
    announce: bool
    reason: Reason | None = None  # set exactly when ``announce`` is False
    pool: str | None = None
    advertisements: tuple[str, ...] = ()  # names of the advertisements that applied
    routes: frozenset[Route] = frozenset()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Announcements:
    """This node's whole desired BGP state plus the per-Service explanation."""

    routes: frozenset[Route] = frozenset()
    decisions: tuple[ServiceDecision, ...] = ()
    peers: tuple[Peer, ...] = ()  # the peers that apply to this node
    warnings: tuple[str, ...] = field(default=())

    def routes_for(self, peer_name: str) -> frozenset[Route]:
        return frozenset(r for r in self.routes if r.peer_name == peer_name)


def cluster_warnings(nodes: tuple[NodeView, ...], options: Options) -> tuple[str, ...]:
    """Cluster-wide surprises worth saying out loud (MetalLB stays silent about them).

    The ``exclude-from-external-load-balancers`` label on *every* node silently stops all
    announcements (MetalLB #2274, #2285: single-node and control-plane-only clusters)."""
    if options.ignore_exclude_lb or not nodes:
        return ()
    if all(n.excluded_from_lb for n in nodes):
        return (
            f"every node ({len(nodes)}) carries the label {EXCLUDE_LB_LABEL}: no node "
            "announces any Service; remove the label or run the speaker with "
            "--ignore-exclude-lb",
        )
    return ()


def peers_for_node(config: Config, node: NodeView) -> tuple[Peer, ...]:
    """The peers this node opens sessions to: those whose ``nodeSelectors`` match it."""
    labels = node.label_map
    return tuple(p for p in config.peers if p.selects_node(labels))


def resolve_pool(config: Config, service: ServiceView) -> tuple[Pool | None, tuple[str, ...]]:
    """The one pool holding all of the Service's IPs, or the allocated pool (see module doc).

    Returns the pool (None = ``ipNotAllowed``) and warnings.
    """
    pools = {config.pool_of(ip) for ip in service.assigned_ips}
    if len(pools) == 1 and None not in pools:
        return pools.pop(), ()
    named = config.pool(service.allocated_pool) if service.allocated_pool else None
    if named is not None and all((p is None or p.name == named.name) for p in pools):
        outside = [str(ip) for ip in service.assigned_ips if not named.contains(ip)]
        return named, (
            f"IP(s) {', '.join(outside)} outside every pool; still announced with the "
            f"advertisements of pool {named.name!r} it was allocated from",
        )
    return None, ()


def _prefix(ip: IPAddress, ad: BGPAdvertisement) -> IPNetwork:
    length = ad.aggregation_length if ip.version == 4 else ad.aggregation_length_v6
    return ipaddress.ip_network(f"{ip}/{length}", strict=False)


def _ad_peers(ad: BGPAdvertisement, node_peers: Iterable[Peer], family: int) -> list[Peer]:
    return [p for p in node_peers if p.family == family and (not ad.peers or p.name in ad.peers)]


def _conflicting(ads: tuple[BGPAdvertisement, ...], pool: Pool) -> tuple[str, str] | None:
    """Two of this node's matching ads with conflicting LOCAL_PREF, if any (both select
    this node, so they share it)."""
    for i, a in enumerate(ads):
        for b in ads[i + 1 :]:
            if local_pref_conflict(a, b, pool, shared_nodes=True):
                return a.name, b.name
    return None


def _routes(
    ads: tuple[BGPAdvertisement, ...],
    ips: tuple[IPAddress, ...],
    node_peers: tuple[Peer, ...],
    local_endpoints: int | None = None,
) -> frozenset[Route]:
    """``local_endpoints``: set for Local Services; advertisements with weighted ECMP then
    add the link bandwidth (speaker.linkbw)."""
    routes = []
    for ip in ips:
        for ad in ads:
            prefix = _prefix(ip, ad)
            weighted = ad.weighted_ecmp and local_endpoints is not None
            for peer in _ad_peers(ad, node_peers, ip.version):
                ext = (
                    (linkbw.link_bandwidth(peer.session_local_asn, local_endpoints or 0),)
                    if weighted
                    else ()
                )
                routes.append(
                    Route(
                        prefix=prefix,
                        peer_name=peer.name,
                        local_pref=ad.local_pref or None,
                        communities=tuple(sorted(set(ad.communities))),
                        large_communities=tuple(sorted(set(ad.large_communities))),
                        extended_communities=ext,
                    )
                )
    return merge_routes(routes)


def merge_routes(routes: Iterable[Route]) -> frozenset[Route]:
    """One route per (peer, prefix): union of communities, highest LOCAL_PREF and lowest MED
    (and one link bandwidth, the largest).

    Needed because BGP carries one attribute set per prefix per session (no add-path here);
    identical routes simply de-duplicate.
    """
    by_key: dict[tuple[str, IPNetwork], Route] = {}
    for r in routes:
        old = by_key.get(r.key)
        if old is None or old == r:
            by_key[r.key] = r
            continue
        prefs = [x for x in (old.local_pref, r.local_pref) if x is not None]
        meds = [x for x in (old.med, r.med) if x is not None]
        by_key[r.key] = Route(
            prefix=r.prefix,
            peer_name=r.peer_name,
            next_hop=r.next_hop,
            local_pref=max(prefs) if prefs else None,
            communities=tuple(sorted(set(old.communities) | set(r.communities))),
            large_communities=tuple(sorted(set(old.large_communities) | set(r.large_communities))),
            med=min(meds) if meds else None,
            extended_communities=linkbw.merge(old.extended_communities, r.extended_communities),
        )
    return frozenset(by_key.values())


def decide_service(
    config: Config,
    node: NodeView,
    service: ServiceView,
    endpoints: EndpointsView | None,
    *,
    options: Options = Options(),
    node_peers: tuple[Peer, ...] | None = None,
) -> ServiceDecision:
    """MetalLB's checks in MetalLB's order; the first failing one is the reason."""
    key = service.key
    reason = _service_reason(service, options)
    if reason is not None:
        return _no(key, reason)
    pool, warnings = resolve_pool(config, service)
    if pool is None:
        return _no(key, Reason.IP_NOT_ALLOWED)
    matching = _advertisements_for(config, node, service, pool)
    if isinstance(matching, Reason):
        return _no(key, matching, pool=pool.name, warnings=warnings)
    names = tuple(a.name for a in matching)
    refused = _node_refusal(key, node, options, pool, matching, warnings)
    if refused is not None:
        return refused
    reason = _endpoints_reason(service, endpoints, node)
    routes: frozenset[Route] = frozenset()
    if reason is None:
        if node_peers is None:
            node_peers = peers_for_node(config, node)
        routes = _routes(
            matching, service.assigned_ips, node_peers, _local_count(service, endpoints, node)
        )
        reason = None if routes else Reason.NO_PEERS
    if reason is not None:
        return _no(key, reason, pool=pool.name, advertisements=names, warnings=warnings)
    return ServiceDecision(
        service=key,
        announce=True,
        pool=pool.name,
        advertisements=names,
        routes=routes,
        warnings=warnings,
    )


def _no(
    key: str,
    reason: Reason,
    *,
    pool: str | None = None,
    advertisements: tuple[str, ...] = (),
    warnings: tuple[str, ...] = (),
) -> ServiceDecision:
    return ServiceDecision(
        service=key,
        announce=False,
        reason=reason,
        pool=pool,
        advertisements=advertisements,
        warnings=warnings,
    )


def _service_reason(service: ServiceView, options: Options) -> Reason | None:
    """Why no node announces the Service, judged on the Service alone."""
    if not service.is_load_balancer:
        return Reason.NOT_LOAD_BALANCER
    if service.load_balancer_class != options.load_balancer_class:
        return Reason.LOAD_BALANCER_CLASS
    if not service.assigned_ips:
        return Reason.NO_IP_ALLOCATED
    return None


def _advertisements_for(
    config: Config, node: NodeView, service: ServiceView, pool: Pool
) -> tuple[BGPAdvertisement, ...] | Reason:
    """The pool's advertisements that select this node and the Service, or why none does."""
    labels = node.label_map
    ads = config.bgp_advertisements_for(pool.name)
    node_ads = tuple(a for a in ads if a.selects_node(labels))
    if not node_ads:
        return Reason.NOT_OWNER
    svc_labels = service.label_map
    matching = tuple(a for a in node_ads if a.selects_service(svc_labels))
    return matching or Reason.NO_MATCHING_ADVERTISEMENT


def _node_refusal(
    key: str,
    node: NodeView,
    options: Options,
    pool: Pool,
    matching: tuple[BGPAdvertisement, ...],
    warnings: tuple[str, ...],
) -> ServiceDecision | None:
    """Conflicting advertisements, or a node that must not announce at all."""
    names = tuple(a.name for a in matching)
    conflict = _conflicting(matching, pool)
    if conflict is not None:
        return _no(
            key,
            Reason.CONFLICTING_ADVERTISEMENTS,
            pool=pool.name,
            advertisements=names,
            warnings=(
                *warnings,
                f"advertisements {conflict[0]!r} and {conflict[1]!r} have different "
                "localPref for the same aggregation and a shared peer",
            ),
        )
    if node.network_unavailable:
        return _no(key, Reason.NODE_NETWORK_UNAVAILABLE, pool=pool.name, advertisements=names)
    if node.excluded_from_lb and not options.ignore_exclude_lb:
        return _no(key, Reason.NODE_EXCLUDED, pool=pool.name, advertisements=names)
    return None


def _local_count(
    service: ServiceView, endpoints: EndpointsView | None, node: NodeView
) -> int | None:
    """Ready endpoints on this node for a Local Service (weighted ECMP); None for Cluster."""
    if service.traffic_policy != "Local" or endpoints is None:
        return None
    return endpoints.ready_count_on(node.name)


def _endpoints_reason(
    service: ServiceView, endpoints: EndpointsView | None, node: NodeView
) -> Reason | None:
    """No serving endpoint (on this node, for externalTrafficPolicy Local)."""
    eps = endpoints or EndpointsView(service.namespace, service.name)
    if service.traffic_policy == "Local" and not eps.has_serving_on(node.name):
        return Reason.NO_LOCAL_ENDPOINTS
    if not eps.has_serving():
        return Reason.NO_ENDPOINTS
    return None


def decide(
    config: Config,
    node: NodeView,
    services: Iterable[ServiceView],
    endpoints: Mapping[str, EndpointsView],
    options: Options = Options(),
) -> Announcements:
    """All of this node's routes (merged and de-duplicated) and one decision per Service.

    ``endpoints`` is keyed by ``namespace/name`` (``ServiceView.key``); a missing entry means
    the Service has no endpoints.
    """
    node_peers = peers_for_node(config, node)
    decisions = tuple(
        decide_service(
            config, node, s, endpoints.get(s.key), options=options, node_peers=node_peers
        )
        for s in sorted(services, key=lambda s: s.key)
    )
    routes = merge_routes(r for d in decisions for r in d.routes)
    warnings: list[str] = []
    if node.excluded_from_lb and not options.ignore_exclude_lb:
        warnings.append(
            f"node {node.name} carries the label "
            "node.kubernetes.io/exclude-from-external-load-balancers: it announces nothing"
        )
    return Announcements(
        routes=routes, decisions=decisions, peers=node_peers, warnings=tuple(warnings)
    )
