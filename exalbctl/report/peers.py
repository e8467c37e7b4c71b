"""``peers``: per node, every configured peer joined with ExaBGP's session to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exalbctl.report.speaker_doc import JSON, SpeakerStatus, node_header


def node_peers(sp: SpeakerStatus) -> JSON:
    """One node: every configured peer joined with ExaBGP's session (``show neighbor``) and
    the number of routes in the adj-rib-out towards it."""
    out, doc = node_header(sp, with_exabgp=True)
    if doc is None:
        return out
    sessions = {str(s.get("address")): s for s in doc.get("sessions") or [] if isinstance(s, dict)}
    bfd = _bfd_sessions(doc)
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
        b = bfd.get(address)
        if b is not None:
            row["bfd"] = {
                "state": b.get("state"),
                "diagnostic": b.get("diagnostic"),
                "multihop": b.get("multihop"),
                "intervals": [b.get("transmitInterval"), b.get("receiveInterval")],
                "detectMultiplier": b.get("detectMultiplier"),
            }
        rows.append(row)
    out["peers"] = rows
    return out


def _bfd_sessions(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The speaker's BFD sessions by peer address (none when BFD is off)."""
    section = doc.get("bfd")
    sessions = section.get("sessions") or [] if isinstance(section, dict) else []
    return {str(s.get("address")): s for s in sessions if isinstance(s, dict)}


def peers_report(speakers: Sequence[SpeakerStatus], *, node: str | None = None) -> JSON:
    chosen = [sp for sp in speakers if node is None or node in (sp.node, sp.name)]
    return {"nodes": [node_peers(sp) for sp in sorted(chosen, key=lambda s: s.node)]}
