"""L2 ownership: which node answers ARP/NDP for a Service IP, and why the others do not.

Pure (no I/O, no clock, no ``kubernetes``): inputs are the config model and the frozen views
of Services, their endpoints and Nodes; the output is, per L2 Service IP, the *ordered*
candidate list. Every speaker runs the same function on the same inputs and therefore agrees
on the owner without talking to anyone; this is MetalLB's scheme and we keep its exact hash
(``sha256(nodeName + "#" + ip)``, ascending bytewise, keyed on the *first* IP of the Service
for dual stack) so a fleet mixing MetalLB and exalb speakers elects the same node.

Why a full ranking and not just the winner: the garp sidecar uses the ranks for data-path
failover (see :mod:`garp.failover`). The next-ranked node is the standby that watches
the owner; Kubernetes state stays the authority on *who may* answer, the data path only
decides *who answers right now* among those.

A Service-level refusal comes first (every node gets it as its reason):

* ``sharedIPWithServiceSelector`` - the Service carries ``allow-shared-ip`` and one of the
  L2Advertisements that match it has ``serviceSelectors``: MetalLB does not announce such a
  Service in L2 at all (``speaker/layer2_controller.go``, ``ShouldAnnounce``), and neither
  does exalb. If another Service sharing the IP is not refused, the IP is still answered
  for that one; the refused Service is listed in :attr:`IPElection.refused`.

Eligibility of a node for an IP (first failing check is the reason reported for that node):

* ``nodeNotSelected`` - no L2Advertisement of the IP's pool selects the node;
* ``noMatchingAdvertisement`` - advertisements select the node but not the Service
  (``serviceSelectors``);
* ``nodeNetworkUnavailable`` - Node condition ``NetworkUnavailable=True``;
* ``nodeLabeledExcludeBalancers`` - label ``node.kubernetes.io/exclude-from-external-load-
  balancers`` (any value), unless the speaker runs with ``ignore_exclude_lb``;
* ``noSpeaker`` - the caller said which nodes run a speaker and this one does not;
* ``noLocalEndpoints`` - ``externalTrafficPolicy: Local`` and no serving endpoint here;
* ``noEndpoints`` - no serving endpoint anywhere (Service level: every node gets it);
* ``notOwner`` - eligible, but another node ranks first.

MetalLB's per-node liveness (memberlist) is deliberately *not* an input: liveness is decided
on the data path by the sidecars, which is faster and sees exactly the segment that matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exalb.config.model import Config, IPAddress, L2Advertisement
from exalb.contracts.speaker_status import Reason
from exalb.views import EndpointsView, NodeView, ServiceView

NOT_OWNER = Reason.NOT_OWNER
NODE_NOT_SELECTED = Reason.NODE_NOT_SELECTED
NO_MATCHING_ADVERTISEMENT = Reason.NO_MATCHING_ADVERTISEMENT
NODE_NETWORK_UNAVAILABLE = Reason.NODE_NETWORK_UNAVAILABLE
NODE_EXCLUDED = Reason.NODE_EXCLUDED
NO_SPEAKER = Reason.NO_SPEAKER
NO_LOCAL_ENDPOINTS = Reason.NO_LOCAL_ENDPOINTS
NO_ENDPOINTS = Reason.NO_ENDPOINTS
NOT_A_CANDIDATE = Reason.NOT_A_CANDIDATE  # node unknown to this election (not in the Nodes)
SHARED_IP_WITH_SERVICE_SELECTOR = Reason.SHARED_IP_WITH_SERVICE_SELECTOR


def election_key(node: str, ip: IPAddress) -> bytes:
    """MetalLB's ranking key. ``str(ip)`` matches Go's ``net.IP.String()`` for v4 and v6."""
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


def rank_nodes(nodes: Iterable[str], key_ip: IPAddress) -> tuple[str, ...]:
    """Order nodes by the election key, best first (ties impossible for distinct names)."""
    return tuple(sorted(set(nodes), key=lambda n: election_key(n, key_ip)))


@dataclass(frozen=True)
class IPElection:
    """The election result for one L2 Service IP, shared by every node."""

    ip: IPAddress
    services: tuple[str, ...]  # "namespace/name"; several when the IP is shared
    candidates: tuple[str, ...]  # ranked, best first; empty = nobody answers
    excluded: tuple[tuple[str, str], ...] = ()  # (node, reason) for non-candidates
    # Interfaces per candidate node (from its matching advertisements; () = all allowed).
    interfaces: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Services of ``services`` that are not announced at all, with the reason (MetalLB's
    # sharedIPWithServiceSelector); the candidates answer for the others only.
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def owner(self) -> str | None:
        return self.candidates[0] if self.candidates else None

    def rank(self, node: str) -> int | None:
        """0 for the owner, 1 for the standby, …; None when not a candidate."""
        try:
            return self.candidates.index(node)
        except ValueError:
            return None

    def reason(self, node: str) -> str | None:
        """Why ``node`` does not answer for this IP; None when it owns it."""
        rank = self.rank(node)
        if rank == 0:
            return None
        if rank is not None:
            return NOT_OWNER
        return dict(self.excluded).get(node, NOT_A_CANDIDATE)

    def interfaces_of(self, node: str) -> tuple[str, ...]:
        return dict(self.interfaces).get(node, ())

    def reason_for(self, node: str, service: str) -> str | None:
        """Why ``node`` does not announce ``service`` on this IP; None when it does."""
        refused = dict(self.refused).get(service)
        return refused if refused is not None else self.reason(node)


@dataclass(frozen=True)
class NodeL2Entry:
    """One IP from one node's point of view."""

    ip: IPAddress
    services: tuple[str, ...]
    rank: int | None
    candidates: tuple[str, ...]
    reason: str | None  # None = owns it
    interfaces: tuple[str, ...]


@dataclass(frozen=True)
class NodeL2View:
    """What one node owns now and where it stands for the others."""

    node: str
    entries: tuple[NodeL2Entry, ...]

    @property
    def owned(self) -> tuple[IPAddress, ...]:
        return tuple(e.ip for e in self.entries if e.reason is None)


def _node_reason(
    config: Config,
    *,
    pool: str,
    svc: ServiceView,
    eps: EndpointsView,
    node: NodeView,
    speaker_nodes: frozenset[str] | None,
    ignore_exclude_lb: bool,
) -> tuple[str | None, tuple[str, ...]]:
    """(reason or None if eligible, interfaces of the matching advertisements)."""
    ads = _matching_advertisements(config, pool, svc, node)
    if isinstance(ads, Reason):
        return ads, ()
    reason = _node_unfit(node, svc, eps, speaker_nodes, ignore_exclude_lb)
    if reason is not None:
        return reason, ()
    # Any advertisement without an interface list means "all interfaces".
    if any(not a.interfaces for a in ads):
        return None, ()
    return None, tuple(sorted({i for a in ads for i in a.interfaces}))


def _matching_advertisements(
    config: Config, pool: str, svc: ServiceView, node: NodeView
) -> list[L2Advertisement] | Reason:
    """The pool's L2Advertisements that select the node and the Service, or why none does."""
    labels = node.label_map
    ads = [a for a in config.l2_advertisements_for(pool) if a.selects_node(labels)]
    if not ads:
        return NODE_NOT_SELECTED
    ads = [a for a in ads if a.selects_service(svc.label_map)]
    return ads or NO_MATCHING_ADVERTISEMENT


def _node_unfit(
    node: NodeView,
    svc: ServiceView,
    eps: EndpointsView,
    speaker_nodes: frozenset[str] | None,
    ignore_exclude_lb: bool,
) -> Reason | None:
    """Why the node may not answer for the Service although an advertisement selects it."""
    if node.network_unavailable:
        return NODE_NETWORK_UNAVAILABLE
    if node.excluded_from_lb and not ignore_exclude_lb:
        return NODE_EXCLUDED
    if speaker_nodes is not None and node.name not in speaker_nodes:
        return NO_SPEAKER
    if svc.traffic_policy == "Local" and not eps.has_serving_on(node.name):
        return NO_LOCAL_ENDPOINTS
    return None


def _elect_service(
    config: Config,
    *,
    svc: ServiceView,
    eps: EndpointsView,
    nodes: Sequence[NodeView],
    speaker_nodes: frozenset[str] | None,
    ignore_exclude_lb: bool,
) -> list[IPElection]:
    if not svc.is_load_balancer or not svc.assigned_ips:
        return []
    key_ip = svc.assigned_ips[0]
    out: list[IPElection] = []
    for ip in svc.assigned_ips:
        pool = config.pool_of(ip)
        if pool is None or not config.l2_advertisements_for(pool.name):
            continue  # not an L2 IP (BGP-only or outside every pool): not our business
        if _shared_with_selector(config, pool.name, svc):
            out.append(_refused_shared(ip, svc, nodes))
            continue
        eligible: list[str] = []
        excluded: list[tuple[str, str]] = []
        ifaces: list[tuple[str, tuple[str, ...]]] = []
        any_endpoint = eps.has_serving()
        for node in nodes:
            reason, node_ifaces = _node_reason(
                config,
                pool=pool.name,
                svc=svc,
                eps=eps,
                node=node,
                speaker_nodes=speaker_nodes,
                ignore_exclude_lb=ignore_exclude_lb,
            )
            if reason is None and not any_endpoint:
                reason = NO_ENDPOINTS
            if reason is None:
                eligible.append(node.name)
                ifaces.append((node.name, node_ifaces))
            else:
                excluded.append((node.name, reason))
        out.append(
            IPElection(
                ip=ip,
                services=(svc.key,),
                candidates=rank_nodes(eligible, key_ip),
                excluded=tuple(sorted(excluded)),
                interfaces=tuple(sorted(ifaces)),
            )
        )
    return out


def _refused_shared(ip: IPAddress, svc: ServiceView, nodes: Sequence[NodeView]) -> IPElection:
    """No node answers for an IP shared with ``allow-shared-ip`` under a service selector."""
    return IPElection(
        ip=ip,
        services=(svc.key,),
        candidates=(),
        excluded=tuple(sorted((n.name, SHARED_IP_WITH_SERVICE_SELECTOR) for n in nodes)),
        refused=((svc.key, SHARED_IP_WITH_SERVICE_SELECTOR),),
    )


def _shared_with_selector(config: Config, pool: str, svc: ServiceView) -> bool:
    """MetalLB's rule: ``allow-shared-ip`` and an L2Advertisement with ``serviceSelectors``
    among those that match the Service do not go together."""
    if not svc.has_allow_shared_ip:
        return False
    labels = svc.label_map
    return any(
        a.service_selectors and a.selects_service(labels)
        for a in config.l2_advertisements_for(pool)
    )


def _merge(shared: Sequence[IPElection], key_ips: Mapping[str, IPAddress]) -> IPElection:
    """One result for an IP shared by several Services (``allow-shared-ip``).

    MetalLB evaluates each Service alone, keyed on each one's first IP, so sharing
    Services whose first IPs differ (or whose Local endpoints differ for a moment) can make
    two nodes answer. Here the IP gets one ranking: the union of the eligible nodes, keyed
    on the first IP of the alphabetically first announced Service, so the answer is
    unique. The union never holds a node that a sharing Service's own advertisements
    exclude: the IP is in one pool, so every sharer matches the same advertisements, except
    through ``serviceSelectors``, and a sharer matched by an advertisement with
    ``serviceSelectors`` is refused outright (:func:`_shared_with_selector`), not merged.
    """
    first = shared[0]
    if len(shared) == 1:
        return first
    refused = tuple(sorted(r for e in shared for r in e.refused))
    announced = [e for e in shared if not e.refused] or list(shared)
    services = tuple(sorted(s for e in shared for s in e.services))
    key_service = sorted(s for e in announced for s in e.services)[0]
    eligible = {n for e in announced for n in e.candidates}
    excluded: dict[str, str] = {}
    for e in announced:
        for node, reason in e.excluded:
            if node not in eligible:
                excluded.setdefault(node, reason)
    ifaces: dict[str, set[str]] = {}
    everything: set[str] = set()
    for e in announced:
        for node, names in e.interfaces:
            if not names:
                everything.add(node)
            ifaces.setdefault(node, set()).update(names)
    return IPElection(
        ip=first.ip,
        services=services,
        candidates=rank_nodes(eligible, key_ips[key_service]),
        excluded=tuple(sorted(excluded.items())),
        interfaces=tuple(
            sorted((n, () if n in everything else tuple(sorted(v))) for n, v in ifaces.items())
        ),
        refused=refused,
    )


def elect(
    config: Config,
    services: Iterable[tuple[ServiceView, EndpointsView]],
    nodes: Sequence[NodeView],
    *,
    speaker_nodes: frozenset[str] | None = None,
    ignore_exclude_lb: bool = False,
) -> tuple[IPElection, ...]:
    """Elect every L2 Service IP. Same inputs on every node give the same output.

    ``services`` should already be filtered to this speaker's ``loadBalancerClass``.
    ``speaker_nodes`` optionally restricts candidates to nodes running a speaker (None: all).
    """
    by_ip: dict[IPAddress, list[IPElection]] = {}
    key_ips: dict[str, IPAddress] = {}
    for svc, eps in sorted(services, key=lambda p: p[0].key):
        for e in _elect_service(
            config,
            svc=svc,
            eps=eps,
            nodes=nodes,
            speaker_nodes=speaker_nodes,
            ignore_exclude_lb=ignore_exclude_lb,
        ):
            by_ip.setdefault(e.ip, []).append(e)
            key_ips[svc.key] = svc.assigned_ips[0]
    return tuple(
        _merge(by_ip[ip], key_ips) for ip in sorted(by_ip, key=lambda a: (a.version, int(a)))
    )


def for_node(elections: Iterable[IPElection], node: str) -> NodeL2View:
    """One node's view: what it owns, its rank for the rest, and the reason when not owner."""
    return NodeL2View(
        node=node,
        entries=tuple(
            NodeL2Entry(
                ip=e.ip,
                services=e.services,
                rank=e.rank(node),
                candidates=e.candidates,
                reason=e.reason(node),
                interfaces=e.interfaces_of(node),
            )
            for e in elections
        ),
    )
