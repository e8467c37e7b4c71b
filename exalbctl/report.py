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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exalb.contracts.service_status import (
    CONDITION_PREFIX,
    FLAG_CONDITIONS,
    POOL_ANNOTATION,
    Condition,
)
from exalb.contracts.speaker_status import NOT_OURS, OnWire

JSON = dict[str, Any]


#: ``onWire`` states of a wanted route (the speaker's contract) plus one only a join can see.
SENT, HELD, MISSING, DIFFERS, UNKNOWN = (
    OnWire.SENT,
    OnWire.HELD,
    OnWire.MISSING,
    OnWire.DIFFERS,
    OnWire.UNKNOWN,
)
UNWANTED = "unwanted"  # in the adj-rib-out, but no Service of this node wants it
STATE_HELP = {
    SENT: "in ExaBGP's adj-rib-out, session established",
    HELD: "in the adj-rib-out, but the session is not established: not on the wire",
    MISSING: "wanted by a Service, not in the adj-rib-out: not on the wire",
    DIFFERS: "in the adj-rib-out with other attributes than wanted",
    UNKNOWN: "ExaBGP did not answer; the wire state is unknown",
    UNWANTED: "in the adj-rib-out, but no Service wants it (stale, will be withdrawn)",
}
#: A speaker has not (yet) seen the Service: not synced, other namespace, or it is new.
NOT_SEEN = "notSeenBySpeaker"
ROUTE_ATTRIBUTES = ("nextHop", "localPref", "med", "communities", "largeCommunities",
                    "extendedCommunities")  # fmt: skip


@dataclass(frozen=True)
class SpeakerStatus:
    """One speaker's ``/status`` document, or why it could not be read."""

    name: str  # as given (``--speaker NAME=URL``) or the node of the discovered pod
    source: str  # where it was read from: a URL or ``pod NAMESPACE/NAME``
    doc: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def node(self) -> str:
        """The speaker's own word for its node wins over the name it was reached by."""
        if self.doc is not None and self.doc.get("node"):
            return str(self.doc["node"])
        return self.name

    @property
    def reachable(self) -> bool:
        return self.doc is not None


# -- the controller's view (a Service object) ---------------------------------------------


def service_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def ingress_ips(obj: Mapping[str, Any]) -> list[str]:
    lb = (obj.get("status") or {}).get("loadBalancer") or {}
    return [str(i["ip"]) for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


def allocated_pool(obj: Mapping[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(POOL_ANNOTATION)
    return str(value) if value else None


def our_conditions(obj: Mapping[str, Any]) -> list[JSON]:
    """The controller's conditions (``exalb.io/*``), as written."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return [
        {
            "type": str(c.get("type")),
            "status": str(c.get("status")),
            "reason": c.get("reason"),
            "message": c.get("message"),
            "lastTransitionTime": c.get("lastTransitionTime"),
        }
        for c in conds
        if isinstance(c, dict) and str(c.get("type", "")).startswith(CONDITION_PREFIX)
    ]


def _condition_true(conds: Sequence[Mapping[str, Any]], ctype: str) -> bool | None:
    for c in conds:
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return None


def controller_view(obj: Mapping[str, Any]) -> JSON:
    """What the controller says about one Service."""
    spec = obj.get("spec") or {}
    conds = our_conditions(obj)
    allocated = _condition_true(conds, Condition.ALLOCATED)
    # the flag's name where the IP is kept although MetalLB would move it, or a request is
    # not met (README "How exalb differs")
    flags = [str(f) for f, ctype in FLAG_CONDITIONS.items() if _condition_true(conds, ctype)]
    if _condition_true(conds, Condition.CONFLICT):
        flags.append("ipConflict")
    if allocated is False:
        reason = next(
            (c.get("reason") for c in conds if c["type"] == Condition.ALLOCATED), "Pending"
        )
        flags.append(f"pending({reason})")
    return {
        "found": True,
        "type": spec.get("type"),
        "loadBalancerClass": spec.get("loadBalancerClass"),
        "externalTrafficPolicy": spec.get("externalTrafficPolicy"),
        "ips": ingress_ips(obj),
        "pool": allocated_pool(obj),
        "allocated": allocated,
        "outOfPool": bool(_condition_true(conds, Condition.OUT_OF_POOL)),
        "conflict": bool(_condition_true(conds, Condition.CONFLICT)),
        "flags": flags,
        "conditions": conds,
    }


def event_rows(events: Iterable[Mapping[str, Any]], last: int = 5) -> list[JSON]:
    """The ``last`` events, oldest first (as ``kubectl describe`` lists them)."""

    def when(e: Mapping[str, Any]) -> str:
        return str(
            e.get("lastTimestamp")
            or e.get("eventTime")
            or e.get("firstTimestamp")
            or (e.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    rows = [
        {
            "time": when(e) or None,
            "type": e.get("type"),
            "reason": e.get("reason"),
            "message": e.get("message"),
            "count": e.get("count"),
            "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
        }
        for e in events
    ]
    rows.sort(key=lambda r: str(r["time"] or ""))
    return rows[-last:] if last > 0 else rows


# -- one speaker's view of one Service ----------------------------------------------------


def _entry(doc: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    for item in doc.get("services") or []:
        if isinstance(item, dict) and item.get("service") == key:
            return item
    return None


def _sessions_by_address(doc: Mapping[str, Any]) -> dict[str, str] | None:
    sessions = doc.get("sessions")
    if sessions is None:
        return None
    return {str(s.get("address")): str(s.get("state")) for s in sessions if isinstance(s, dict)}


def _attrs(route: Mapping[str, Any]) -> JSON:
    return {k: route[k] for k in ROUTE_ATTRIBUTES if route.get(k) not in (None, [])}


def _l2_ips(doc: Mapping[str, Any], ips: Iterable[str] | None = None) -> list[JSON]:
    section = doc.get("l2")
    if not isinstance(section, dict):
        return []
    wanted = set(ips) if ips is not None else None
    return [
        dict(item)
        for item in section.get("ips") or []
        if isinstance(item, dict) and (wanted is None or str(item.get("ip")) in wanted)
    ]


def _node_header(
    sp: SpeakerStatus, *, with_exabgp: bool = False
) -> tuple[JSON, Mapping[str, Any] | None]:
    """The part every per-node report starts with; ``doc`` is None for an unreachable one."""
    out: JSON = {"node": sp.node, "source": sp.source, "reachable": sp.reachable}
    if sp.doc is None:
        out["error"] = sp.error or "unreachable"
        return out, None
    if with_exabgp:
        exabgp = sp.doc.get("exabgp") or {}
        out["exabgp"] = {"connected": bool(exabgp.get("connected")), "error": exabgp.get("error")}
    return out, sp.doc


def node_decision(sp: SpeakerStatus, key: str, ips: Sequence[str] = ()) -> JSON:
    """One node's answer for one Service: BGP (announce, reason, routes with attributes and
    wire state) and, when the speaker reports it, L2 (announce, reason, owner)."""
    out, doc = _node_header(sp)
    if doc is None:
        return out
    config = doc.get("config") or {}
    if config.get("stale"):
        out["configStale"] = True
    entry = _entry(doc, key)
    if entry is None:
        out["bgp"] = {"announce": False, "reason": NOT_SEEN}
        return out
    sessions = _sessions_by_address(doc)
    routes = []
    for r in entry.get("routes") or []:
        address = r.get("peerAddress")
        routes.append(
            {
                "prefix": r.get("prefix"),
                "peer": r.get("peer"),
                "peerAddress": address,
                **_attrs(r),
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
    out["bgp"] = bgp
    l2 = entry.get("l2")
    if isinstance(l2, dict):
        l2_out: JSON = {"announce": bool(l2.get("announce"))}
        for k in ("reason", "owner"):
            if l2.get(k):
                l2_out[k] = l2[k]
        svc_ips = _l2_ips(doc, ips or None)
        if svc_ips:
            l2_out["ips"] = svc_ips
        out["l2"] = l2_out
    return out


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
    for ip in _l2_ips(doc):
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
    views: dict[str, JSON] = {}
    if services is not None:
        for obj in services:
            key = service_key(obj)
            if (obj.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            if _in_scope(key, namespace, name):
                views[key] = controller_view(obj)
    else:
        for sp in speakers:
            for item in (sp.doc or {}).get("services") or []:
                key = str(item.get("service"))
                if item.get("reason") in NOT_OURS or not _in_scope(key, namespace, name):
                    continue
                view = views.setdefault(key, {"found": None, "ips": [], "pool": item.get("pool")})
                view["ips"] = sorted(set(view["ips"]) | _speaker_ips(sp.doc or {}, item))
    rows = []
    for key in sorted(views):
        view = views[key]
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
        rows.append(
            {
                "service": key,
                "ips": view.get("ips") or [],
                "pool": pool,
                "flags": view.get("flags") or [],
                "bgp": [n["node"] for n in nodes if _announces(n, "bgp")],
                "l2": [n["node"] for n in nodes if _announces(n, "l2")],
                "notAnnouncing": not_announcing,
                "unreachable": [n["node"] for n in nodes if not n["reachable"]],
            }
        )
    return {
        "services": rows,
        "speakers": _speaker_summary(speakers),
        "apiError": api_error,
    }


# -- routes -------------------------------------------------------------------------------


def _wanted_routes(doc: Mapping[str, Any]) -> dict[tuple[str, str], JSON]:
    """(peer address, prefix) → the route Services want there, with the Services named."""
    out: dict[tuple[str, str], JSON] = {}
    for item in doc.get("services") or []:
        for r in item.get("routes") or []:
            k = (str(r.get("peerAddress")), str(r.get("prefix")))
            cur = out.setdefault(
                k,
                {
                    "peer": r.get("peer"),
                    "wanted": _attrs(r),
                    "onWire": r.get("onWire", UNKNOWN),
                    "services": [],
                },
            )
            cur["services"].append(item.get("service"))
    return out


def node_routes(sp: SpeakerStatus, *, prefix: str | None = None) -> JSON:
    """One node: per peer, every adj-rib-out entry (attributes as ExaBGP holds them) and
    every wanted route that is not there, each with a state from :data:`STATE_HELP`."""
    out, doc = _node_header(sp, with_exabgp=True)
    if doc is None:
        return out
    sessions = _sessions_by_address(doc)
    rib: Mapping[str, Any] | None = doc.get("adjRibOut")
    wanted = _wanted_routes(doc)
    names = {str(p.get("address")): p.get("name") for p in doc.get("peers") or []}
    addresses = set(names) | set(rib or {}) | {a for a, _ in wanted}
    peers = []
    for address in sorted(addresses):
        rows: list[JSON] = []
        seen: set[str] = set()
        for entry in (rib or {}).get(address) or []:
            pfx = str(entry.get("prefix"))
            seen.add(pfx)
            want = wanted.get((address, pfx))
            row: JSON = {"prefix": pfx, **_attrs(entry), "onWire": True}
            if want is None:
                row["state"] = UNWANTED
                row["services"] = []
            else:
                # the speaker compared attributes (it knows "self" next hops); "missing"
                # here can only be a race between its two reads, and the entry is there
                state = want["onWire"]
                row["state"] = state if state in (SENT, HELD, DIFFERS) else SENT
                if row["state"] == DIFFERS:
                    row["wanted"] = want["wanted"]
                elif sessions is not None and sessions.get(address) != "established":
                    row["state"] = HELD
                row["services"] = sorted(map(str, want["services"]))
            if row["state"] == HELD:
                row["onWire"] = False
            rows.append(row)
        for (addr, pfx), want in sorted(wanted.items()):
            if addr != address or pfx in seen:
                continue
            state = MISSING if rib is not None else UNKNOWN
            rows.append(
                {
                    "prefix": pfx,
                    **want["wanted"],
                    "onWire": False if rib is not None else None,
                    "state": state,
                    "services": sorted(map(str, want["services"])),
                }
            )
        if prefix is not None:
            rows = [r for r in rows if r["prefix"] == prefix or r["prefix"].split("/")[0] == prefix]
        session = "unknown" if sessions is None else sessions.get(address, "none")
        peers.append(
            {
                "peer": names.get(address)
                or next((w["peer"] for (a, _), w in wanted.items() if a == address), None),
                "address": address,
                "session": session,
                "routes": rows,
            }
        )
    out["peers"] = peers
    section = doc.get("l2")
    if isinstance(section, dict) and (section.get("stateFile") or section.get("ips")):
        out["l2"] = _l2_ips(doc)  # what this node's garp sidecar answers for, per IP
    return out


def routes_report(
    speakers: Sequence[SpeakerStatus], *, node: str | None = None, prefix: str | None = None
) -> JSON:
    chosen = [sp for sp in speakers if node is None or node in (sp.node, sp.name)]
    return {
        "nodes": [node_routes(sp, prefix=prefix) for sp in sorted(chosen, key=lambda s: s.node)],
        "states": STATE_HELP,
    }


# -- peers --------------------------------------------------------------------------------


def node_peers(sp: SpeakerStatus) -> JSON:
    """One node: every configured peer joined with ExaBGP's session (``show neighbor``) and
    the number of routes in the adj-rib-out towards it."""
    out, doc = _node_header(sp, with_exabgp=True)
    if doc is None:
        return out
    sessions = {str(s.get("address")): s for s in doc.get("sessions") or [] if isinstance(s, dict)}
    rib = doc.get("adjRibOut")
    rows = []
    configured = {str(p.get("address")): p for p in doc.get("peers") or [] if isinstance(p, dict)}
    for address in sorted(set(configured) | set(sessions)):
        p = configured.get(address, {})
        s = sessions.get(address)
        row: JSON = {
            "peer": p.get("name") or (s or {}).get("peer"),
            "address": address,
            "myASN": p.get("myASN"),
            "peerASN": p.get("peerASN") or (s or {}).get("peerASN"),
            "configured": p.get("configured", False),
        }
        if s is not None:
            row.update(
                {
                    "state": s.get("state"),
                    "fsm": s.get("fsm"),
                    "upSeconds": s.get("upSeconds"),
                    "holdTime": s.get("holdTime"),
                    "localAddress": s.get("localAddress"),
                    "families": s.get("families") or [],
                    "gracefulRestart": s.get("gracefulRestart"),
                }
            )
        else:
            row["state"] = "unknown" if doc.get("sessions") is None else "none"
        row["routesOut"] = len(rib.get(address) or []) if isinstance(rib, dict) else None
        rows.append(row)
    out["peers"] = rows
    return out


def peers_report(speakers: Sequence[SpeakerStatus], *, node: str | None = None) -> JSON:
    chosen = [sp for sp in speakers if node is None or node in (sp.node, sp.name)]
    return {"nodes": [node_peers(sp) for sp in sorted(chosen, key=lambda s: s.node)]}


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
