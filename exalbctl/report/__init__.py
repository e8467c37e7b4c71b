"""The answers of ``kubectl exalb status|routes|peers|why``, joined from plain documents (pure).

Why a separate, pure module: the design promises that "every why has an answer" — per
Service, which nodes announce it, over which protocol, to which peers, with which
attributes, as seen on the wire, and for a node that does not, the reason. That answer is a
*join* of two views nobody holds together:

* the controller's, written on the Service object: ``status.loadBalancer.ingress``, the
  ``metallb.io/ip-allocated-from-pool`` annotation, the ``exalb.io/*`` conditions, and its
  events;
* each speaker's ``/status`` document (:mod:`exalb.contracts.speaker_status`): its per-Service
  decision and MetalLB's reason, the routes it wants per peer with their attributes and whether
  ExaBGP's adj-rib-out holds them (``onWire``), the sessions, the adj-rib-out itself, and, when
  the speaker does L2, an ``l2`` section (per IP: owner, candidates, answering; per Service:
  announce, reason, owner).

Here those documents go in as JSON values and one JSON-able dict comes out per command, so
``-o json|yaml`` and the human tables (:mod:`exalbctl.render`) show the same facts, and
every case (unreachable speaker, ExaBGP not answering, a route wanted but missing, a route
on the wire that nobody wants, no API access at all) is a table-driven unit test without a
cluster. Nothing here does I/O or reads the clock.

The pieces: :mod:`~exalbctl.report.speaker_doc` (a speaker's document and the wire states),
:mod:`~exalbctl.report.controller_view` (what the Service object says),
:mod:`~exalbctl.report.routes` and :mod:`~exalbctl.report.peers` (the per-node reports);
``status`` and ``why``, which join both views per Service, are here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exalb.contracts.speaker_status import NOT_OURS
from exalbctl.report.controller_view import (
    allocated_pool,
    controller_view,
    event_rows,
    ingress_ips,
    our_conditions,
    service_key,
)
from exalbctl.report.peers import node_peers, peers_report
from exalbctl.report.routes import node_routes, routes_report
from exalbctl.report.speaker_doc import (
    DIFFERS,
    HELD,
    JSON,
    MISSING,
    NOT_SEEN,
    ROUTE_ATTRIBUTES,
    SENT,
    STATE_HELP,
    UNKNOWN,
    UNWANTED,
    SpeakerStatus,
    entry_of,
    l2_ips,
    node_header,
    route_attrs,
    sessions_by_address,
)

__all__ = [
    "DIFFERS",
    "HELD",
    "JSON",
    "MISSING",
    "NOT_SEEN",
    "ROUTE_ATTRIBUTES",
    "SENT",
    "STATE_HELP",
    "UNKNOWN",
    "UNWANTED",
    "SpeakerStatus",
    "allocated_pool",
    "controller_view",
    "event_rows",
    "ingress_ips",
    "node_decision",
    "node_peers",
    "node_routes",
    "not_announcing_reason",
    "our_conditions",
    "peers_report",
    "routes_report",
    "service_key",
    "status_report",
    "why_report",
]


def node_decision(sp: SpeakerStatus, key: str, ips: Sequence[str] = ()) -> JSON:
    """One node's answer for one Service: BGP (announce, reason, routes with attributes and
    wire state) and, when the speaker reports it, L2 (announce, reason, owner)."""
    out, doc = node_header(sp)
    if doc is None:
        return out
    config = doc.get("config") or {}
    if config.get("stale"):
        out["configStale"] = True
    entry = entry_of(doc, key)
    if entry is None:
        out["bgp"] = {"announce": False, "reason": NOT_SEEN}
        return out
    out["bgp"] = _bgp_answer(doc, entry)
    l2 = _l2_answer(doc, entry, ips)
    if l2 is not None:
        out["l2"] = l2
    return out


def _bgp_answer(doc: Mapping[str, Any], entry: Mapping[str, Any]) -> JSON:
    """The speaker's BGP decision for a Service, each route joined with its session."""
    sessions = sessions_by_address(doc)
    routes = []
    for r in entry.get("routes") or []:
        address = r.get("peerAddress")
        routes.append(
            {
                "prefix": r.get("prefix"),
                "peer": r.get("peer"),
                "peerAddress": address,
                **route_attrs(r),
                "onWire": r.get("onWire", UNKNOWN),
                "session": "unknown" if sessions is None else sessions.get(str(address), "none"),
            }
        )
    bgp: JSON = {"announce": bool(entry.get("announce"))}
    if entry.get("reason"):
        bgp["reason"] = entry["reason"]
    for k in ("pool", "advertisements", "warnings"):
        if entry.get(k):
            bgp[k] = entry[k]
    if routes:
        bgp["routes"] = routes
    return bgp


def _l2_answer(doc: Mapping[str, Any], entry: Mapping[str, Any], ips: Sequence[str]) -> JSON | None:
    """The speaker's L2 decision for a Service with its IPs' owners, or None without L2."""
    l2 = entry.get("l2")
    if not isinstance(l2, dict):
        return None
    l2_out: JSON = {"announce": bool(l2.get("announce"))}
    for k in ("reason", "owner"):
        if l2.get(k):
            l2_out[k] = l2[k]
    svc_ips = l2_ips(doc, ips or None)
    if svc_ips:
        l2_out["ips"] = svc_ips
    return l2_out


def _announces(nd: Mapping[str, Any], protocol: str) -> bool:
    return bool((nd.get(protocol) or {}).get("announce"))


def not_announcing_reason(nd: Mapping[str, Any]) -> str | None:
    """Why a node announces the Service by no protocol (``None`` if it does, or unreachable)."""
    if not nd.get("reachable") or _announces(nd, "bgp") or _announces(nd, "l2"):
        return None
    bgp_reason = str((nd.get("bgp") or {}).get("reason") or "unknown")
    l2 = nd.get("l2")
    if isinstance(l2, dict):
        return f"bgp {bgp_reason}, l2 {l2.get('reason') or 'unknown'}"
    return bgp_reason


# -- status -------------------------------------------------------------------------------


def _speaker_ips(doc: Mapping[str, Any], item: Mapping[str, Any]) -> set[str]:
    """A Service's IPs as far as a speaker shows them (without API access): host routes it
    wants, and the L2 IPs it elects for."""
    ips = set()
    for r in item.get("routes") or []:
        addr, _, length = str(r.get("prefix")).partition("/")
        if length in ("32", "128"):
            ips.add(addr)
    for ip in l2_ips(doc):
        if item.get("service") in (ip.get("services") or []):
            ips.add(str(ip.get("ip")))
    return ips


def _in_scope(key: str, namespace: str | None, name: str | None) -> bool:
    ns, _, n = key.partition("/")
    return (namespace is None or ns == namespace) and (name is None or n == name)


def _speaker_summary(speakers: Sequence[SpeakerStatus]) -> list[JSON]:
    out = []
    for sp in sorted(speakers, key=lambda s: s.node):
        item: JSON = {"node": sp.node, "source": sp.source, "reachable": sp.reachable}
        if sp.doc is None:
            item["error"] = sp.error or "unreachable"
        else:
            config = sp.doc.get("config") or {}
            exabgp = sp.doc.get("exabgp") or {}
            item["configStale"] = bool(config.get("stale"))
            item["exabgpConnected"] = bool(exabgp.get("connected"))
            if exabgp.get("error"):
                item["exabgpError"] = exabgp["error"]
        out.append(item)
    return out


def status_report(
    services: Sequence[Mapping[str, Any]] | None,
    speakers: Sequence[SpeakerStatus],
    *,
    namespace: str | None = None,
    name: str | None = None,
    api_error: str | None = None,
) -> JSON:
    """Per Service: IPs, pool, flags, which nodes announce it by BGP / L2, and why the others
    do not. ``services`` is ``None`` when the API could not be read: the speakers' lists
    are used instead (they hold every Service they decided on)."""
    if services is not None:
        views = _views_from_api(services, namespace, name)
    else:
        views = _views_from_speakers(speakers, namespace, name)
    return {
        "services": [_status_row(key, views[key], speakers) for key in sorted(views)],
        "speakers": _speaker_summary(speakers),
        "apiError": api_error,
    }


def _views_from_api(
    services: Sequence[Mapping[str, Any]], namespace: str | None, name: str | None
) -> dict[str, JSON]:
    views: dict[str, JSON] = {}
    for obj in services:
        key = service_key(obj)
        if (obj.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        if _in_scope(key, namespace, name):
            views[key] = controller_view(obj)
    return views


def _views_from_speakers(
    speakers: Sequence[SpeakerStatus], namespace: str | None, name: str | None
) -> dict[str, JSON]:
    """Without API access: the Services the speakers decided on, IPs and pool as they say."""
    views: dict[str, JSON] = {}
    for sp in speakers:
        for item in (sp.doc or {}).get("services") or []:
            key = str(item.get("service"))
            if item.get("reason") in NOT_OURS or not _in_scope(key, namespace, name):
                continue
            view = views.setdefault(key, {"found": None, "ips": [], "pool": item.get("pool")})
            view["ips"] = sorted(set(view["ips"]) | _speaker_ips(sp.doc or {}, item))
    return views


def _status_row(key: str, view: Mapping[str, Any], speakers: Sequence[SpeakerStatus]) -> JSON:
    nodes = [node_decision(sp, key, view.get("ips") or ()) for sp in speakers]
    nodes.sort(key=lambda n: str(n["node"]))
    not_announcing: dict[str, list[str]] = {}
    for nd in nodes:
        reason = not_announcing_reason(nd)
        if reason is not None:
            not_announcing.setdefault(reason, []).append(str(nd["node"]))
    pool = view.get("pool")
    if pool is None:  # the speakers know the pool too (e.g. no API access)
        pool = next((n["bgp"]["pool"] for n in nodes if (n.get("bgp") or {}).get("pool")), None)
    return {
        "service": key,
        "ips": view.get("ips") or [],
        "pool": pool,
        "flags": view.get("flags") or [],
        "bgp": [n["node"] for n in nodes if _announces(n, "bgp")],
        "l2": [n["node"] for n in nodes if _announces(n, "l2")],
        "notAnnouncing": not_announcing,
        "unreachable": [n["node"] for n in nodes if not n["reachable"]],
    }


# -- why ----------------------------------------------------------------------------------


def why_report(
    key: str,
    service: Mapping[str, Any] | None,
    speakers: Sequence[SpeakerStatus],
    *,
    events: Iterable[Mapping[str, Any]] = (),
    api_error: str | None = None,
    last_events: int = 5,
) -> JSON:
    """Everything about one Service: the controller's view (pool, conditions, last events)
    and, for each node, whether it announces, over which protocol, to which peers with which
    attributes and wire state, and if not, why."""
    controller: JSON
    if service is not None:
        controller = controller_view(service)
        controller["events"] = event_rows(events, last_events)
    else:
        controller = {"found": False if api_error is None else None}
    ips = controller.get("ips") or []
    nodes = sorted((node_decision(sp, key, ips) for sp in speakers), key=lambda n: n["node"])
    summary: JSON = {
        "bgp": [n["node"] for n in nodes if _announces(n, "bgp")],
        "l2": [n["node"] for n in nodes if _announces(n, "l2")],
        "notAnnouncing": {
            n["node"]: r for n in nodes if (r := not_announcing_reason(n)) is not None
        },
        "unreachable": [n["node"] for n in nodes if not n["reachable"]],
    }
    known = service is not None or any(
        (n.get("bgp") or {}).get("reason") != NOT_SEEN for n in nodes if n["reachable"]
    )
    return {
        "service": key,
        "found": known,
        "controller": controller,
        "nodes": nodes,
        "summary": summary,
        "apiError": api_error,
    }
