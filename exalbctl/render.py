"""Human tables for the reports of :mod:`exalbctl.report` (pure: strings in, strings out).

Why apart from the report builders: the JSON a script reads and the table a human reads are
the same dict, so nothing is shown that ``-o json`` lacks, and the layout can change without
touching what is computed. The clock is a parameter (``now``) so ages are testable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exalbctl.report import SENT, STATE_HELP


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart, like ``kubectl get``."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in cells
    )


def join(values: Sequence[object] | None) -> str:
    return ",".join(map(str, values or [])) or "-"


def duration(seconds: object) -> str:
    """``3725`` → ``1h2m5s`` (``-`` when unknown)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (s, "s")]
    text = "".join(f"{v}{u}" for v, u in parts if v)
    return text or "0s"


def age(timestamp: object, now: datetime | None) -> str:
    """RFC 3339 ``timestamp`` as an age relative to ``now`` (or verbatim without ``now``)."""
    if not timestamp:
        return "-"
    text = str(timestamp)
    if now is None:
        return text
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = (now - t).total_seconds()
    return f"{duration(max(delta, 0))} ago"


def _unreachable_lines(speakers: Sequence[Mapping[str, Any]]) -> str:
    lines = ""
    for sp in speakers:
        if not sp.get("reachable"):
            lines += f"speaker {sp['node']} ({sp['source']}): unreachable: {sp.get('error')}\n"
        elif sp.get("configStale"):
            lines += f"speaker {sp['node']}: config is stale (last good config in force)\n"
        elif not sp.get("exabgpConnected", True):
            lines += f"speaker {sp['node']}: ExaBGP not connected: {sp.get('exabgpError')}\n"
    return lines


def _api_line(report: Mapping[str, Any]) -> str:
    err = report.get("apiError")
    return f"cluster API not read ({err}); showing the speakers' view only\n" if err else ""


# -- status -------------------------------------------------------------------------------


def render_status(report: Mapping[str, Any]) -> str:
    rows = []
    for s in report["services"]:
        not_ann = "; ".join(
            f"{reason}: {join(nodes)}" for reason, nodes in s["notAnnouncing"].items()
        )
        if s["unreachable"]:
            not_ann = "; ".join(filter(None, [not_ann, f"unreachable: {join(s['unreachable'])}"]))
        rows.append(
            [
                s["service"],
                join(s["ips"]),
                s["pool"] or "-",
                join(s["bgp"]),
                join(s["l2"]),
                not_ann or "-",
                join(s["flags"]),
            ]
        )
    out = _api_line(report)
    if rows:
        out += table(["SERVICE", "IPS", "POOL", "BGP", "L2", "NOT ANNOUNCING", "FLAGS"], rows)
    else:
        out += "no LoadBalancer Services found\n"
    return out + _unreachable_lines(report["speakers"])


# -- routes -------------------------------------------------------------------------------


def _communities(r: Mapping[str, Any]) -> str:
    return join([*(r.get("communities") or []), *(r.get("largeCommunities") or []),
                 *(r.get("extendedCommunities") or [])])  # fmt: skip


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def _speaker_note(n: Mapping[str, Any]) -> str:
    """A line for a node whose speaker or ExaBGP cannot be read ("" when both answer)."""
    if not n["reachable"]:
        return f"speaker {n['node']} ({n['source']}): unreachable: {n.get('error')}\n"
    exabgp = n.get("exabgp") or {}
    if not exabgp.get("connected"):
        return f"speaker {n['node']}: ExaBGP not connected: {exabgp.get('error')}\n"
    return ""


ROUTE_HEADER = (
    "NODE",
    "PEER",
    "SESSION",
    "PREFIX",
    "NEXT-HOP",
    "LOCAL-PREF",
    "MED",
    "COMMUNITIES",
    "STATE",
    "SERVICES",
)


def render_routes(report: Mapping[str, Any]) -> str:
    rows: list[list[Any]] = []
    notes = ""
    states: set[str] = set()
    for n in report["nodes"]:
        notes += _speaker_note(n)
        if not n["reachable"]:
            continue
        for p in n["peers"]:
            rows += _peer_route_rows(n["node"], p)
            states.update(r["state"] for r in p["routes"])
        for ip in n.get("l2") or []:
            notes += _l2_line(n["node"], ip)
    out = ""
    if rows:
        out = table(ROUTE_HEADER, rows)
    elif not notes:
        out = "no routes\n"
    for state in sorted(states - {SENT}):
        out += f"{state.upper()}: {STATE_HELP.get(state, state)}\n"
    return out + notes


def _peer_route_rows(node: str, p: Mapping[str, Any]) -> list[list[Any]]:
    peer = f"{p['peer'] or '-'} ({p['address']})"
    if not p["routes"]:
        return [[node, peer, p["session"], "-", "", "", "", "", "", ""]]
    rows = []
    for r in p["routes"]:
        state = r["state"] if r["state"] == SENT else r["state"].upper()
        if r.get("wanted"):
            want = r["wanted"]
            state += f" (want lp={_opt(want.get('localPref'))} comm={_communities(want)})"
        rows.append(
            [
                node,
                peer,
                p["session"],
                r["prefix"],
                _opt(r.get("nextHop")),
                _opt(r.get("localPref")),
                _opt(r.get("med")),
                _communities(r),
                state,
                join(r.get("services")),
            ]
        )
    return rows


def _l2_line(node: str, ip: Mapping[str, Any]) -> str:
    answering = "answering" if ip.get("answering") else "not answering"
    reason = f" ({ip['reason']})" if ip.get("reason") else ""
    return (
        f"l2 {node}: {ip.get('ip')} owner={ip.get('owner') or '-'} {answering}{reason} "
        f"services={join(ip.get('services'))}\n"
    )


# -- peers --------------------------------------------------------------------------------


def _bfd(b: Any) -> str:
    """``up 300/300x3`` (state, transmit/receive ms x multiplier); ``-`` without BFD."""
    if not isinstance(b, Mapping):
        return "-"
    tx, rx = (b.get("intervals") or [None, None])[:2]
    state = str(b.get("state") or "?")
    if b.get("diagnostic") not in (None, "", "ok") and state != "up":
        state += f" ({b['diagnostic']})"
    return f"{state} {_opt(tx)}/{_opt(rx)}x{_opt(b.get('detectMultiplier'))}"


def render_peers(report: Mapping[str, Any]) -> str:
    rows = []
    notes = ""
    for n in report["nodes"]:
        notes += _speaker_note(n)
        if not n["reachable"]:
            continue
        for p in n["peers"]:
            gr = p.get("gracefulRestart")
            rows.append(
                [
                    n["node"],
                    p["peer"] or "-",
                    p["address"],
                    f"{_opt(p.get('myASN'))}->{_opt(p.get('peerASN'))}",
                    p.get("state") or "-",
                    duration(p.get("upSeconds")),
                    _opt(p.get("holdTime")),
                    "-" if gr is None else ("yes" if gr else "no"),
                    join(p.get("families")),
                    _opt(p.get("routesOut")),
                    _bfd(p.get("bfd")),
                ]
            )
    out = ""
    if rows:
        out = table(
            ["NODE", "PEER", "ADDRESS", "ASN", "STATE", "UP", "HOLD", "GR", "FAMILIES", "ROUTES",
             "BFD"],
            rows,
        )  # fmt: skip
    elif not notes:
        out = "no peers\n"
    return out + notes


# -- why ----------------------------------------------------------------------------------


def render_why(report: Mapping[str, Any], now: datetime | None = None) -> str:
    out = _api_line(report)
    out += f"Service {report['service']}\n"
    out += _why_controller(report["controller"], now)
    rows = [row for n in report["nodes"] for row in _why_node_rows(n)]
    if rows:
        out += "\n" + table(
            ["NODE", "PROTO", "ANNOUNCES", "PEER / REASON", "PREFIX", "ATTRIBUTES", "WIRE"],
            rows,
        )
    else:
        out += "\nno speakers\n"
    s = report["summary"]
    out += (
        f"\nannounced by BGP from: {join(s['bgp'])}; L2 from: {join(s['l2'])}"
        + (f"; unreachable: {join(s['unreachable'])}" if s["unreachable"] else "")
        + "\n"
    )
    return out


def _why_controller(c: Mapping[str, Any], now: datetime | None) -> str:
    """What the controller says: type, IPs, pool, flags, conditions, last events."""
    if c.get("found") is False:
        return "  not found in the cluster\n"
    if not c.get("found"):
        return ""
    out = f"  type:        {c.get('type')}"
    if c.get("loadBalancerClass"):
        out += f" (class {c['loadBalancerClass']})"
    out += f", externalTrafficPolicy {c.get('externalTrafficPolicy') or 'Cluster'}\n"
    out += f"  IPs:         {join(c.get('ips'))}\n"
    out += f"  pool:        {c.get('pool') or '-'}\n"
    if c.get("flags"):
        out += f"  flags:       {join(c['flags'])}\n"
    for i, cond in enumerate(c.get("conditions") or []):
        label = "conditions:" if i == 0 else ""
        out += (
            f"  {label:<12} {cond['type']}={cond['status']} {cond.get('reason') or ''}: "
            f"{cond.get('message') or ''}\n"
        )
    events = c.get("events") or []
    if events:
        out += "  events:\n"
        for e in events:
            count = f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""
            out += (
                f"    {age(e.get('time'), now):<10} {e.get('type') or '-':<8} "
                f"{e.get('reason')}{count}: {e.get('message')}\n"
            )
    return out


def _why_node_rows(n: Mapping[str, Any]) -> list[list[Any]]:
    node = n["node"]
    if not n["reachable"]:
        return [[node, "-", "?", f"unreachable: {n.get('error')}", "", "", ""]]
    stale = " (config stale)" if n.get("configStale") else ""
    rows: list[list[Any]] = []
    bgp = n.get("bgp") or {}
    if bgp.get("announce"):
        for r in bgp.get("routes") or []:
            rows.append(
                [
                    node,
                    "BGP",
                    "yes",
                    f"{r.get('peer')} ({r.get('peerAddress')}) {r.get('session')}{stale}",
                    r.get("prefix"),
                    _attr_text(r),
                    r.get("onWire"),
                ]
            )
    else:
        reason = str(bgp.get("reason") or "unknown") + stale
        rows.append([node, "BGP", "no", reason, "", "", ""])
    l2 = n.get("l2")
    if isinstance(l2, dict):
        rows += _why_l2_rows(node, l2)
    return rows


def _why_l2_rows(node: str, l2: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for ip in l2.get("ips") or [{}]:
        answering = ip.get("answering")
        wire = "-" if answering is None else ("answering" if answering else "silent")
        detail = f"owner {l2.get('owner') or ip.get('owner') or '-'}"
        if not l2.get("announce"):
            detail = f"{l2.get('reason') or ip.get('reason') or 'unknown'}, {detail}"
        rows.append(
            [
                node,
                "L2",
                "yes" if l2.get("announce") else "no",
                detail,
                ip.get("ip") or "",
                f"candidates={join(ip.get('candidates'))}" if ip.get("candidates") else "",
                wire,
            ]
        )
    return rows


def _attr_text(r: Mapping[str, Any]) -> str:
    parts = [f"nh={_opt(r.get('nextHop'))}"]
    if r.get("localPref") is not None:
        parts.append(f"lp={r['localPref']}")
    if r.get("med") is not None:
        parts.append(f"med={r['med']}")
    if r.get("communities"):
        parts.append(f"comm={join(r['communities'])}")
    if r.get("largeCommunities"):
        parts.append(f"large={join(r['largeCommunities'])}")
    if r.get("extendedCommunities"):
        parts.append(f"ext={join(r['extendedCommunities'])}")
    return " ".join(parts)
