"""What ExaBGP 5.0 answers to ``show`` commands, parsed: pure functions over its text lines.

``show adj-rib out extensive`` is the wire truth the driver converges from. Its 5.0.15 form
(measured) is::

  neighbor 198.18.0.1 local-ip 198.18.0.2 local-as 64501 peer-as 64500 router-id 198.18.0.2
  family-allowed in-open ipv4 unicast 203.0.113.10/32 next-hop 198.18.0.2 med 5
  local-preference 200 community [ 64500:1 64500:2 ] large-community 64500:1:2
  extended-community 0x4004FBF548B71B00

(one line; a single community is printed without brackets; an extended community is
printed in hex, which :func:`speaker.linkbw.from_wire` turns back into exalb's spelling).
The non-extensive form is ``198.18.0.1 ipv4 unicast 203.0.113.10/32 next-hop 198.18.0.2``.
The ``json`` form of 5.0.15 (show-routes-format v1) carries neither attributes nor next
hop, so it is not used.

``show neighbor summary`` and ``show neighbor json`` give the sessions (:class:`NeighborStatus`).
Everything here is unit-tested against lines captured from a real ExaBGP 5.0.15.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exalb.config.model import IPAddress, IPNetwork
from speaker import linkbw
from speaker.decisions import Route


def ip_or_none(text: Any) -> IPAddress | None:
    """``text`` as an IP address, or None."""
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        return None


# -- show adj-rib out -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdjRibEntry:
    """One route ExaBGP holds for one neighbor (what it sends or will send)."""

    peer: IPAddress
    prefix: IPNetwork
    next_hop: str | None = None
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    extended_communities: tuple[str, ...] = ()

    def matches(self, route: Route) -> bool:
        """Same prefix and attributes (``next-hop self`` matches whatever ExaBGP resolved)."""
        return (
            self.prefix == route.prefix
            and self.local_pref == route.local_pref
            and self.med == route.med
            and self.communities == route.communities
            and self.large_communities == route.large_communities
            and self.extended_communities == route.extended_communities
            and route.next_hop in ("self", self.next_hop)
        )


def _take_list(tokens: list[str], i: int) -> tuple[list[str], int]:
    """Read ``[ a b ]`` or a single value starting at ``tokens[i]``."""
    if tokens[i] == "[":
        end = tokens.index("]", i)
        return tokens[i + 1 : end], end + 1
    if tokens[i].startswith("["):  # defensive: "[a" ... "b]"
        vals = []
        while True:
            tok = tokens[i].strip("[]")
            if tok:
                vals.append(tok)
            if tokens[i].endswith("]"):
                return vals, i + 1
            i += 1
    return [tokens[i]], i + 1


def parse_adj_rib_line(line: str) -> AdjRibEntry | None:
    """Parse one ``show adj-rib out [extensive]`` line; None for anything else (IPv4/v6 unicast)."""
    tokens = line.split()
    start = _route_start(tokens)
    if start is None:
        return None
    peer, prefix, i = start
    fields = _rib_attributes(tokens, i)
    return AdjRibEntry(
        peer=peer,
        prefix=prefix,
        next_hop=fields.get("next-hop"),
        local_pref=int(fields["local-preference"]) if "local-preference" in fields else None,
        med=int(fields["med"]) if "med" in fields else None,
        communities=fields.get("community", ()),
        large_communities=fields.get("large-community", ()),
        extended_communities=fields.get("extended-community", ()),
    )


def _route_start(tokens: list[str]) -> tuple[IPAddress, IPNetwork, int] | None:
    """The peer and the prefix of an IPv4/IPv6 unicast route line, and where its attributes
    start; None for any other line."""
    if len(tokens) < 4:
        return None
    if tokens[0] == "neighbor":
        peer = ip_or_none(tokens[1])
        try:
            i = tokens.index("family-allowed") + 2
        except ValueError:
            return None
    else:
        peer = ip_or_none(tokens[0])
        i = 1
    if peer is None or len(tokens) < i + 3 or tokens[i + 1] != "unicast":
        return None
    if tokens[i] not in ("ipv4", "ipv6"):
        return None
    try:
        prefix = ipaddress.ip_network(tokens[i + 2], strict=False)
    except ValueError:
        return None
    return peer, prefix, i + 3


def _rib_attributes(tokens: list[str], i: int) -> dict[str, Any]:
    """The attributes exalb sends, from ``tokens[i:]`` (``key value`` or ``key [ a b ]``)."""
    fields: dict[str, Any] = {}
    while i < len(tokens):
        key = tokens[i]
        i += 1
        if i >= len(tokens):
            break
        if key in ("community", "large-community"):
            values, i = _take_list(tokens, i)
            fields[key] = tuple(sorted(set(values)))
        elif key == "extended-community":
            values, i = _take_list(tokens, i)
            fields[key] = tuple(sorted({linkbw.from_wire(v) for v in values}))
        elif key in ("next-hop", "local-preference", "med", "origin"):
            fields[key] = tokens[i]
            i += 1
        else:  # an attribute exalb never sends: skip a list or a single value
            _, i = _take_list(tokens, i)
    return fields


def parse_adj_rib_out(lines: Iterable[str]) -> dict[str, dict[IPNetwork, AdjRibEntry]]:
    """``show adj-rib out`` output → {peer address: {prefix: entry}}."""
    out: dict[str, dict[IPNetwork, AdjRibEntry]] = {}
    for line in lines:
        entry = parse_adj_rib_line(line)
        if entry is not None:
            out.setdefault(str(entry.peer), {})[entry.prefix] = entry
    return out


# -- show neighbor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeighborSummary:
    """One row of ``show neighbor summary``."""

    peer: IPAddress
    asn: int | None
    up_down: str
    state: str
    sent: int
    received: int

    @property
    def established(self) -> bool:
        return self.state == "established"


def parse_neighbor_summary(lines: Iterable[str]) -> list[NeighborSummary]:
    """Rows look like ``198.18.0.1  64500  0:00:08 established  3  2`` (5.0.15, measured)."""
    rows = []
    for line in lines:
        tokens = line.replace("|", " ").split()
        if len(tokens) < 6 or tokens[0] == "Peer":
            continue
        peer = ip_or_none(tokens[0])
        if peer is None:
            continue
        try:
            sent, received = int(tokens[-2]), int(tokens[-1])
        except ValueError:
            continue
        asn = int(tokens[1]) if tokens[1].isdigit() else None
        rows.append(
            NeighborSummary(peer, asn, tokens[2], " ".join(tokens[3:-2]).lower(), sent, received)
        )
    return rows


@dataclass(frozen=True)
class NeighborStatus:
    """The parts of ``show neighbor json`` exalb reports (session truth per peer)."""

    peer: IPAddress
    state: str  # "up" / "down" / ...
    fsm: str
    duration: int | None
    local_address: IPAddress | None
    peer_asn: int | None
    hold_time: int | None  # negotiated: min of both sides
    families: tuple[str, ...]
    graceful_restart: bool  # negotiated by both sides


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_neighbor_json(lines: Iterable[str]) -> list[NeighborStatus]:
    out = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                continue
            peer_d = item.get("peer") or {}
            local_d = item.get("local") or {}
            peer = ip_or_none(peer_d.get("address"))
            if peer is None:
                continue
            holds = [h for h in (peer_d.get("hold"), local_d.get("hold")) if isinstance(h, int)]
            gr = bool((local_d.get("capabilities") or {}).get("graceful-restart")) and bool(
                (peer_d.get("capabilities") or {}).get("graceful-restart")
            )
            out.append(
                NeighborStatus(
                    peer=peer,
                    state=str(item.get("state", "")),
                    fsm=str(item.get("fsm", "")),
                    duration=_int_or_none(item.get("duration")),
                    local_address=ip_or_none(local_d.get("address")),
                    peer_asn=_int_or_none(peer_d.get("as")),
                    hold_time=min(holds) if holds else None,
                    families=tuple(str(f) for f in item.get("families") or ()),
                    graceful_restart=gr,
                )
            )
    return out
