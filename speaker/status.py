"""The speaker's ``/status`` document: a pure function of what it decided and what ExaBGP says.

Why: "every why has an answer" (docs/contracts.md). For each Service the document says whether this
node announces it and, if not, MetalLB's reason; which routes it wants to send to which peer
with which attributes; and whether ExaBGP's adj-rib-out really holds each of them (the wire
truth, docs/exabgp.md, "What done means": an ack is not proof). Sessions come from
``show neighbor``, so a route that is "in the adj-rib-out" but whose session is down is
visibly not on the wire.

L2 (``l2`` section and each Service's ``l2`` entry): per Service IP, the elected owner, this
node's rank among the candidates, the reason when it does not own, and whether this node's
garp sidecar answers for the IP *right now* (its ``<state>.status`` file, which differs from
the election after a data-path takeover).

The document's shape is the contract :mod:`exalb.contracts.speaker_status` (TypedDicts that
``exalbctl`` reads too). It is plain JSON types only (no dataclasses), stable in key order,
and built from values the caller already has, so it is unit-testable and cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exalb.config.model import IPNetwork, Peer
from exalb.contracts import speaker_status as doc
from exalb.contracts.l2_state import Status as SidecarStatus
from exalb.contracts.speaker_status import OnWire
from speaker.bfd.render import BfdPlan, BfdSession
from speaker.decisions import Announcements, Route, ServiceDecision
from speaker.exabgp.render import Rendered
from speaker.exabgp.show import AdjRibEntry, NeighborStatus
from speaker.l2.election import IPElection


@dataclass(frozen=True)
class ConfigState:
    """Which config is in force and whether it is the latest the cluster holds."""

    loaded: bool = False  # a good config was seen at least once
    stale: bool = False  # the latest config is invalid; the last good one is in force
    source: str = "empty"
    problems: tuple[str, ...] = ()  # of the latest parse (errors make it stale)


@dataclass(frozen=True)
class WireView:
    """ExaBGP's answers, or why they are missing (e.g. not connected)."""

    neighbors: Sequence[NeighborStatus] | None = None
    adj_rib_out: Mapping[str, Mapping[IPNetwork, AdjRibEntry]] | None = None
    error: str | None = None
    connected: bool = False
    # peer address -> ExaBGP's reason the last time that session went down
    last_down: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class L2View:
    """This node's L2 inputs to the document (``state_file`` None = L2 off)."""

    state_file: str | None = None
    generation: int | None = None
    elections: tuple[IPElection, ...] = ()
    sidecar: SidecarStatus | None = None


def l2_ip_json(e: IPElection, node: str, l2: L2View) -> doc.L2IP:
    sidecar = l2.sidecar if l2.state_file is not None else None
    return {
        "ip": str(e.ip),
        "services": list(e.services),
        "owner": e.owner,
        "rank": e.rank(node),
        "candidates": list(e.candidates),
        "answering": None if sidecar is None else e.ip in sidecar.answering,
        "reason": e.reason(node),
    }


def l2_service_json(
    elections: Sequence[IPElection], node: str, service: str | None = None
) -> doc.ServiceL2:
    """One Service's L2 decision from its IPs' elections (all share one ranking, keyed on
    the Service's first IP; the first IP's election speaks when a shared IP differs). A
    Service the election refused (``IPElection.refused``) is not announced by the owner of
    the IP it shares."""

    def reason(e: IPElection) -> str | None:
        return e.reason(node) if service is None else e.reason_for(node, service)

    owned = any(reason(e) is None for e in elections)
    first = elections[0]
    return {
        "announce": owned,
        "reason": None if owned else reason(first),
        "owner": first.owner,
    }


def l2_section(node: str, l2: L2View, service: str | None = None) -> doc.L2Section:
    elections = [e for e in l2.elections if service is None or service in e.services]
    sidecar = l2.sidecar if l2.state_file is not None else None
    return {
        "stateFile": l2.state_file,
        "generation": l2.generation,
        "sidecar": None if sidecar is None else sidecar_json(sidecar),
        "ips": [l2_ip_json(e, node, l2) for e in elections],
    }


def sidecar_json(sidecar: SidecarStatus) -> doc.SidecarReport:
    out: doc.SidecarReport = {"generation": sidecar.generation, "peers": dict(sidecar.peers)}
    if sidecar.interfaces is not None:
        out["interfaces"] = list(sidecar.interfaces)
    return out


def established(n: NeighborStatus) -> bool:
    """Session truth is the FSM: ExaBGP 5.0.15's ``state`` says "down" during the first second
    of an established session (it is ``duration != 0`` with ``duration`` truncated to whole
    seconds, ``exabgp/bgp/neighbor.py`` ``as_dict``)."""
    return n.fsm.upper() == "ESTABLISHED"


def _add_attributes(out: doc.RouteAttributes, r: Route | AdjRibEntry) -> None:
    """The path attributes both a wanted route and an adj-rib-out entry carry (set ones)."""
    if r.local_pref is not None:
        out["localPref"] = r.local_pref
    if r.med is not None:
        out["med"] = r.med
    if r.communities:
        out["communities"] = list(r.communities)
    if r.large_communities:
        out["largeCommunities"] = list(r.large_communities)
    if r.extended_communities:
        out["extendedCommunities"] = list(r.extended_communities)


def route_json(route: Route, peer_address: str | None, on_wire: OnWire) -> doc.WantedRoute:
    out: doc.WantedRoute = {
        "prefix": str(route.prefix),
        "peer": route.peer_name,
        "peerAddress": peer_address,
        "nextHop": route.next_hop,
        "onWire": on_wire,
    }
    _add_attributes(out, route)
    return out


def adj_rib_entry_json(entry: AdjRibEntry) -> doc.AdjRibEntry:
    out: doc.AdjRibEntry = {"prefix": str(entry.prefix), "nextHop": entry.next_hop}
    _add_attributes(out, entry)
    return out


def neighbor_json(
    n: NeighborStatus, peer_names: Mapping[str, str], last_down: Mapping[str, str]
) -> doc.SessionEntry:
    out: doc.SessionEntry = {
        "peer": peer_names.get(str(n.peer)),
        "address": str(n.peer),
        "state": "established" if established(n) else n.fsm.lower() or n.state,
        "fsm": n.fsm,
        "upSeconds": n.duration,
        "localAddress": str(n.local_address) if n.local_address else None,
        "peerASN": n.peer_asn,
        "holdTime": n.hold_time,
        "families": list(n.families),
        "gracefulRestart": n.graceful_restart,
    }
    reason = last_down.get(str(n.peer))
    if reason is not None:
        out["lastDownReason"] = reason
    return out


def _on_wire(
    route: Route,
    address: str | None,
    wire: WireView,
    up: set[str],
) -> OnWire:
    """Where ``route`` stands in ExaBGP's adj-rib-out (see :class:`OnWire`)."""
    if wire.adj_rib_out is None or address is None:
        return OnWire.UNKNOWN
    entry = wire.adj_rib_out.get(address, {}).get(route.prefix)
    if entry is None:
        return OnWire.MISSING
    if not entry.matches(route):
        return OnWire.DIFFERS
    if wire.neighbors is not None and address not in up:
        return OnWire.HELD
    return OnWire.SENT


def decision_json(
    d: ServiceDecision,
    addresses: Mapping[str, str],
    wire: WireView,
    up: set[str],
) -> doc.ServiceEntry:
    out: doc.ServiceEntry = {"service": d.service, "announce": d.announce}
    if d.reason is not None:
        out["reason"] = d.reason
    if d.pool is not None:
        out["pool"] = d.pool
    if d.advertisements:
        out["advertisements"] = list(d.advertisements)
    if d.routes:
        out["routes"] = [
            route_json(
                r, addresses.get(r.peer_name), _on_wire(r, addresses.get(r.peer_name), wire, up)
            )
            for r in sorted(d.routes, key=Route.sort_key)
        ]
    if d.warnings:
        out["warnings"] = list(d.warnings)
    return out


def status_document(
    *,
    node: str,
    config: ConfigState,
    announcements: Announcements | None,
    rendered: Rendered | None,
    wire: WireView,
    service: str | None = None,
    l2: L2View | None = None,
    wire_age: float | None = None,
) -> doc.StatusDocument:
    """The whole ``/status`` (``service`` = ``namespace/name`` narrows the Service list;
    ``wire_age``: seconds since ``wire`` was read from ExaBGP)."""
    l2 = l2 or L2View()
    l2_by_service: dict[str, list[IPElection]] = {}
    for e in l2.elections:
        for key in e.services:
            l2_by_service.setdefault(key, []).append(e)
    peers: tuple[Peer, ...] = announcements.peers if announcements else ()
    addresses = {p.name: str(p.peer_address) for p in peers}
    names = {v: k for k, v in addresses.items()}
    up = {str(n.peer) for n in wire.neighbors or () if established(n)}
    decisions = announcements.decisions if announcements else ()
    if service is not None:
        decisions = tuple(d for d in decisions if d.service == service)
    announced = sum(1 for d in decisions if d.announce)
    return {
        "node": node,
        "config": {
            "loaded": config.loaded,
            "stale": config.stale,
            "source": config.source,
            "problems": list(config.problems),
        },
        "exabgp": {
            "connected": wire.connected,
            "error": wire.error,
            "wireAgeSeconds": None if wire_age is None else round(wire_age, 3),
        },
        "peers": [peer_json(p, rendered) for p in peers],
        "renderProblems": [str(p) for p in rendered.problems] if rendered else [],
        "sessions": (
            [neighbor_json(n, names, wire.last_down) for n in wire.neighbors]
            if wire.neighbors is not None
            else None
        ),
        "adjRibOut": adj_rib_out_json(wire),
        "summary": {
            "services": len(decisions),
            "announced": announced,
            "routes": len(announcements.routes) if announcements else 0,
        },
        "warnings": list(announcements.warnings) if announcements else [],
        "services": [
            _with_l2(decision_json(d, addresses, wire, up), l2_by_service.get(d.service), node)
            for d in decisions
        ],
        "l2": l2_section(node, l2, service),
    }


def peer_json(p: Peer, rendered: Rendered | None) -> doc.PeerEntry:
    return {
        "name": p.name,
        "address": str(p.peer_address),
        "myASN": p.session_local_asn,
        "peerASN": p.peer_asn,
        "configured": rendered is not None
        and any(n.peer_name == p.name for n in rendered.neighbors),
    }


def adj_rib_out_json(wire: WireView) -> dict[str, list[doc.AdjRibEntry]] | None:
    if wire.adj_rib_out is None:
        return None
    return {
        addr: [adj_rib_entry_json(e) for _, e in sorted(rib.items(), key=_prefix_key)]
        for addr, rib in sorted(wire.adj_rib_out.items())
    }


def _with_l2(
    item: doc.ServiceEntry, elections: Sequence[IPElection] | None, node: str
) -> doc.ServiceEntry:
    if elections:
        item["l2"] = l2_service_json(elections, node, item["service"])
    return item


def _prefix_key(item: tuple[IPNetwork, AdjRibEntry]) -> tuple[int, int, int]:
    p = item[0]
    return (p.version, int(p.network_address), p.prefixlen)


def bfd_section(
    sessions: Sequence[BfdSession], error: str | None, plan: BfdPlan | None
) -> doc.BfdSection:
    """The node's bfdd as last polled (``kubectl exalb peers`` shows it per peer)."""
    return {
        "sessions": [
            {
                "address": s.peer,
                "localAddress": s.local,
                "multihop": s.multihop,
                "state": s.status,
                "diagnostic": s.diagnostic,
                "upSeconds": s.uptime if s.up else None,
                "downSeconds": s.downtime if not s.up else None,
                "receiveInterval": s.receive_interval,
                "transmitInterval": s.transmit_interval,
                "detectMultiplier": s.detect_multiplier,
                "remoteReceiveInterval": s.remote_receive_interval,
                "remoteTransmitInterval": s.remote_transmit_interval,
                "remoteDetectMultiplier": s.remote_detect_multiplier,
            }
            for s in sorted(sessions, key=lambda s: s.peer)
        ],
        "error": error,
        "problems": list(plan.problems) if plan else [],
    }
