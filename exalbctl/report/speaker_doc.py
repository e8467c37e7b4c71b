"""One speaker's ``/status`` document as the reports read it, and the states they show.

The document's shape is the speaker's contract (:mod:`exalb.contracts.speaker_status`); here
are the few readers every report shares (its entry for a Service, sessions by peer address,
route attributes, the L2 section) and :class:`SpeakerStatus`, a document or why there is none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exalb.contracts.speaker_status import OnWire

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


def entry_of(doc: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    for item in doc.get("services") or []:
        if isinstance(item, dict) and item.get("service") == key:
            return item
    return None


def sessions_by_address(doc: Mapping[str, Any]) -> dict[str, str] | None:
    sessions = doc.get("sessions")
    if sessions is None:
        return None
    return {str(s.get("address")): str(s.get("state")) for s in sessions if isinstance(s, dict)}


def route_attrs(route: Mapping[str, Any]) -> JSON:
    return {k: route[k] for k in ROUTE_ATTRIBUTES if route.get(k) not in (None, [])}


def l2_ips(doc: Mapping[str, Any], ips: Iterable[str] | None = None) -> list[JSON]:
    section = doc.get("l2")
    if not isinstance(section, dict):
        return []
    wanted = set(ips) if ips is not None else None
    return [
        dict(item)
        for item in section.get("ips") or []
        if isinstance(item, dict) and (wanted is None or str(item.get("ip")) in wanted)
    ]


def node_header(
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
