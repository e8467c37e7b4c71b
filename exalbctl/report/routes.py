"""``routes``: per node and peer, what ExaBGP's adj-rib-out holds and what is missing.

Each row carries a state from :data:`~exalbctl.report.speaker_doc.STATE_HELP`: sent, held
(session down), differs (other attributes than wanted), missing (wanted, not in the
adj-rib-out), unknown (ExaBGP did not answer) or unwanted (in the adj-rib-out, wanted by no
Service of the node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exalbctl.report.speaker_doc import (
    DIFFERS,
    HELD,
    JSON,
    MISSING,
    SENT,
    STATE_HELP,
    UNKNOWN,
    UNWANTED,
    SpeakerStatus,
    l2_ips,
    node_header,
    route_attrs,
    sessions_by_address,
)

#: (peer address, prefix) → the route wanted there, its wire state and the Services wanting it
Wanted = dict[tuple[str, str], JSON]


def _wanted_routes(doc: Mapping[str, Any]) -> Wanted:
    """(peer address, prefix) → the route Services want there, with the Services named."""
    out: Wanted = {}
    for item in doc.get("services") or []:
        for r in item.get("routes") or []:
            k = (str(r.get("peerAddress")), str(r.get("prefix")))
            cur = out.setdefault(
                k,
                {
                    "peer": r.get("peer"),
                    "wanted": route_attrs(r),
                    "onWire": r.get("onWire", UNKNOWN),
                    "services": [],
                },
            )
            cur["services"].append(item.get("service"))
    return out


def node_routes(sp: SpeakerStatus, *, prefix: str | None = None) -> JSON:
    """One node: per peer, every adj-rib-out entry (attributes as ExaBGP holds them) and
    every wanted route that is not there, each with a state from :data:`STATE_HELP`."""
    out, doc = node_header(sp, with_exabgp=True)
    if doc is None:
        return out
    sessions = sessions_by_address(doc)
    rib: Mapping[str, Any] | None = doc.get("adjRibOut")
    wanted = _wanted_routes(doc)
    names = {str(p.get("address")): p.get("name") for p in doc.get("peers") or []}
    addresses = set(names) | set(rib or {}) | {a for a, _ in wanted}
    peers = []
    for address in sorted(addresses):
        rows = _peer_rows(address, rib, wanted, sessions)
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
        out["l2"] = l2_ips(doc)  # what this node's garp sidecar answers for, per IP
    return out


def _peer_rows(
    address: str,
    rib: Mapping[str, Any] | None,
    wanted: Wanted,
    sessions: Mapping[str, str] | None,
) -> list[JSON]:
    """One peer's routes: what the adj-rib-out holds, then what is wanted but not there."""
    rows: list[JSON] = []
    seen: set[str] = set()
    for entry in (rib or {}).get(address) or []:
        pfx = str(entry.get("prefix"))
        seen.add(pfx)
        rows.append(_rib_row(address, entry, wanted.get((address, pfx)), sessions))
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
    return rows


def _rib_row(
    address: str,
    entry: Mapping[str, Any],
    want: Mapping[str, Any] | None,
    sessions: Mapping[str, str] | None,
) -> JSON:
    """An adj-rib-out entry with its state: unwanted, or what the speaker said of it."""
    pfx = str(entry.get("prefix"))
    row: JSON = {"prefix": pfx, **route_attrs(entry), "onWire": True}
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
    return row


def routes_report(
    speakers: Sequence[SpeakerStatus], *, node: str | None = None, prefix: str | None = None
) -> JSON:
    chosen = [sp for sp in speakers if node is None or node in (sp.node, sp.name)]
    return {
        "nodes": [node_routes(sp, prefix=prefix) for sp in sorted(chosen, key=lambda s: s.node)],
        "states": STATE_HELP,
    }
