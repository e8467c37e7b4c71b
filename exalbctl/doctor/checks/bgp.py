"""BGP sessions, as each speaker's ExaBGP reports them, with ExaBGP's own reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence, names

CHECK = "bgp-sessions"

# RFC 4271 (and RFC 4486 for Cease) NOTIFICATION codes, in our words.
CODES = {1: "message header error", 2: "OPEN message error", 3: "UPDATE message error",
         4: "hold timer expired", 5: "finite state machine error", 6: "cease"}  # fmt: skip
SUBCODES = {
    (2, 1): "unsupported version", (2, 2): "bad peer AS", (2, 3): "bad BGP identifier",
    (2, 4): "unsupported optional parameter", (2, 6): "unacceptable hold time",
    (2, 7): "unsupported capability", (6, 1): "maximum prefixes reached",
    (6, 2): "administrative shutdown", (6, 3): "peer de-configured",
    (6, 4): "administrative reset", (6, 5): "connection rejected",
    (6, 6): "other configuration change", (6, 7): "connection collision resolution",
    (6, 8): "out of resources",
}  # fmt: skip
NOTIFICATION = re.compile(r"notification (sent|received) \((\d+),(\d+)\)")


def explain(reason: str | None) -> str:
    """ExaBGP's reason, with the NOTIFICATION code spelled out."""
    if not reason:
        return "ExaBGP reported no reason (the session never got past connecting)"
    m = NOTIFICATION.search(reason)
    if not m:
        return f"ExaBGP: {reason}"
    code, sub = int(m.group(2)), int(m.group(3))
    words = CODES.get(code, f"code {code}")
    if (code, sub) in SUBCODES:
        words += f", {SUBCODES[(code, sub)]}"
    who = "the router sent" if m.group(1) == "received" else "ExaBGP sent"
    return f"ExaBGP: {reason} ({who} {words})"


def fix_for(reason: str | None, peer: str) -> str:
    m = NOTIFICATION.search(reason or "")
    key = (m.group(1), int(m.group(2)), int(m.group(3))) if m else None
    if key == ("received", 2, 2):
        return f"the router does not expect this AS from the node: check BGPPeer {peer} spec.myASN"
    if key == ("sent", 2, 2):
        return f"the router answers with another AS: check BGPPeer {peer} spec.peerASN"
    if key is not None and key[1:] == (2, 3):
        return f"two speakers use one router ID: set BGPPeer {peer} spec.routerID per node"
    if key is not None and key[1] == 6 and key[2] in (2, 3, 5):
        return (
            "the router refuses the session: it needs a neighbor for each node's address "
            f"(BGPPeer {peer} spec.sourceAddress, or the node IP) and must not be shut"
        )
    if key is not None and key[1] == 4:
        return "keepalives are lost on the way: check the path and the hold time"
    return (
        f"the router must have a neighbor for each node's address with the AS of BGPPeer "
        f"{peer}, and peerAddress/peerPort must be reachable from the nodes (another BGP "
        "speaker on the node, e.g. MetalLB's, holds the router's one session per address)"
    )


def _sessions(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(s.get("address")): s for s in doc.get("sessions") or []}


def check_sessions(f: Facts) -> list[Finding]:
    down: dict[tuple[str, str], list[str]] = {}  # (peer name, address) -> lines
    reasons: dict[tuple[str, str], str | None] = {}
    no_exabgp = []
    for node, doc in sorted(f.speaker_docs.items()):
        if doc.get("sessions") is None:
            err = (doc.get("exabgp") or {}).get("error") or "no answer"
            no_exabgp.append(f"{node}: {err}")
            continue
        sessions = _sessions(doc)
        for peer in doc.get("peers") or []:
            if not peer.get("configured"):
                continue  # reported by speaker-status (render problems)
            key = (str(peer.get("name")), str(peer.get("address")))
            s = sessions.get(key[1])
            if s is not None and s.get("state") == "established":
                continue
            state = "no session in ExaBGP" if s is None else f"state {s.get('state')}"
            reason = None if s is None else s.get("lastDownReason")
            down.setdefault(key, []).append(f"{node}: {state}; {explain(reason)}")
            reasons.setdefault(key, reason)
    out = [
        Finding(
            CHECK,
            Severity.ERROR,
            f"BGP session to {peer} ({address}) not established on {len(lines)} node(s): "
            f"{names([line.split(':')[0] for line in lines])}",
            evidence(lines),
            fix_for(reasons[(peer, address)], peer),
        )
        for (peer, address), lines in sorted(down.items())
    ]
    if no_exabgp:
        out.append(
            Finding(
                CHECK,
                Severity.ERROR,
                "ExaBGP does not answer the speaker: nothing is announced from these nodes",
                evidence(no_exabgp),
                "kubectl logs POD -c exabgp (and -c speaker) on those nodes",
            )
        )
    return out
