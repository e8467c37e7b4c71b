"""ExaBGP 5.0 text API, sans I/O: encode commands, classify and parse what comes back.

Everything here is a pure function over strings, so the driver's I/O stays thin and the wire
format is unit-tested against lines captured from a real ExaBGP 5.0.15:

* commands are one line each and always carry a ``neighbor <ip>`` selector, so an IPv6
  prefix only reaches the IPv6 session it is meant for (an unselected command reaches every
  neighbor bound to the process, docs/exabgp.md, "Neighbor selectors");
* every command is answered by zero or more output lines and then exactly one ``done`` or
  ``error`` (acks stay text even with ``encoder json``); JSON events (``{"exabgp": ...}``) can
  arrive between them at any time;
* what ExaBGP answers to ``show`` commands is parsed in :mod:`speaker.exabgp.show`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exalb.config.model import IPAddress, IPNetwork
from speaker.decisions import Route
from speaker.exabgp.show import AdjRibEntry, ip_or_none

MAX_NLRI_PER_LINE = 256  # keeps a bulk line far below ExaBGP's command-size limit

# -- encoding -------------------------------------------------------------------------------------


def _attributes(route: Route) -> str:
    parts = [f"next-hop {route.next_hop}"]
    if route.local_pref is not None:
        parts.append(f"local-preference {route.local_pref}")
    if route.med is not None:
        parts.append(f"med {route.med}")
    if route.communities:
        parts.append(f"community [ {' '.join(route.communities)} ]")
    if route.large_communities:
        parts.append(f"large-community [ {' '.join(route.large_communities)} ]")
    if route.extended_communities:
        parts.append(f"extended-community [ {' '.join(route.extended_communities)} ]")
    return " ".join(parts)


def announce(route: Route, neighbor: IPAddress | str) -> str:
    """``neighbor <ip> announce route <prefix> next-hop self [attrs]``."""
    return f"neighbor {neighbor} announce route {route.prefix} {_attributes(route)}"


def withdraw(prefix: IPNetwork, neighbor: IPAddress | str) -> str:
    """``neighbor <ip> withdraw route <prefix>`` (ExaBGP matches the prefix only)."""
    return f"neighbor {neighbor} withdraw route {prefix}"


def attribute_key(route: Route) -> tuple[object, ...]:
    """Everything but the prefix and the peer: routes with equal keys can share one UPDATE."""
    return (route.next_hop, route.local_pref, route.med, route.communities,
            route.large_communities, route.extended_communities)  # fmt: skip


def announce_bulk(
    routes: Iterable[Route], neighbor: IPAddress | str, per_line: int = MAX_NLRI_PER_LINE
) -> list[str]:
    """Group routes with equal attributes into ``announce attributes ... nlri ...`` lines.

    A group of one becomes a plain ``announce route`` (easier to read in logs).
    """
    groups: dict[tuple[object, ...], list[Route]] = {}
    for r in sorted(routes, key=Route.sort_key):
        groups.setdefault(attribute_key(r), []).append(r)
    lines = []
    for members in groups.values():
        if len(members) == 1:
            lines.append(announce(members[0], neighbor))
            continue
        attrs = _attributes(members[0])
        prefixes = [str(r.prefix) for r in members]
        for chunk in _chunks_of(prefixes, per_line):
            lines.append(f"neighbor {neighbor} announce attributes {attrs} nlri {' '.join(chunk)}")
    return lines


def withdraw_bulk(
    prefixes: Iterable[IPNetwork], neighbor: IPAddress | str, per_line: int = MAX_NLRI_PER_LINE
) -> list[str]:
    """``withdraw attributes next-hop self nlri ...`` (the parser needs a next hop)."""
    ordered = sorted(prefixes, key=lambda p: (p.version, int(p.network_address), p.prefixlen))
    if len(ordered) == 1:
        return [withdraw(ordered[0], neighbor)]
    return [
        f"neighbor {neighbor} withdraw attributes next-hop self nlri {' '.join(chunk)}"
        for chunk in _chunks_of([str(p) for p in ordered], per_line)
    ]


def end_of_rib(neighbor: IPAddress | str, family: Literal[4, 6]) -> str:
    return f"neighbor {neighbor} announce eor ipv{family} unicast"


SHOW_ADJ_RIB_OUT = "show adj-rib out extensive"
SHOW_NEIGHBOR_SUMMARY = "show neighbor summary"
SHOW_NEIGHBOR_JSON = "show neighbor json"
RELOAD = "reload"

# -- what ExaBGP writes to the process ---------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """``done`` (ok=True) or ``error`` (ok=False): closes exactly one command."""

    ok: bool


@dataclass(frozen=True)
class Shutdown:
    """ExaBGP is exiting (text ``shutdown`` or the JSON shutdown notification)."""


PeerState = Literal["connected", "up", "down"]


@dataclass(frozen=True)
class PeerStateEvent:
    peer: IPAddress
    local: IPAddress | None
    state: PeerState
    peer_asn: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class OtherEvent:
    """A JSON message exalb does not act on (kept for logs)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Output:
    """A line of command output (``show ...`` answers)."""

    text: str


Message = Ack | Shutdown | PeerStateEvent | OtherEvent | Output


def parse_line(line: str) -> Message:
    """Classify one line ExaBGP wrote to the API process."""
    text = line.rstrip("\r\n")
    stripped = text.strip()
    if stripped == "done":
        return Ack(True)
    if stripped == "error":
        return Ack(False)
    if stripped == "shutdown":
        return Shutdown()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return Output(text)
        if isinstance(data, dict) and "exabgp" in data:
            return _parse_event(data)
    return Output(text)


def _parse_event(data: Mapping[str, Any]) -> Message:
    kind = str(data.get("type", ""))
    if kind == "notification" and data.get("notification") == "shutdown":
        return Shutdown()
    if kind == "state":
        nb = data.get("neighbor") or {}
        addr = nb.get("address") or {}
        peer = ip_or_none(addr.get("peer"))
        state = nb.get("state")
        if peer is not None and state in ("connected", "up", "down"):
            asn = (nb.get("asn") or {}).get("peer")
            return PeerStateEvent(
                peer=peer,
                local=ip_or_none(addr.get("local")),
                state=state,
                peer_asn=int(asn) if isinstance(asn, int) else None,
                reason=nb.get("reason"),
            )
    return OtherEvent(kind, data)


# -- convergence plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One API line and what it does to one neighbor's adj-rib-out once acked ``done``."""

    line: str
    neighbor: str
    announced: tuple[Route, ...] = ()
    withdrawn: tuple[IPNetwork, ...] = ()

    @property
    def verb(self) -> str:
        return "withdraw" if self.withdrawn else "announce" if self.announced else "other"


def plan(
    desired: Mapping[str, Mapping[IPNetwork, Route]],
    actual: Mapping[str, Mapping[IPNetwork, AdjRibEntry | Route]],
    bulk: bool = True,
    per_line: int = MAX_NLRI_PER_LINE,
) -> list[Command]:
    """Commands that turn ``actual`` into ``desired`` (both keyed by neighbor address).

    Withdraws first (a prefix leaving must not linger), then announces of missing or changed
    routes; untouched routes produce nothing. A changed route is simply re-announced (BGP
    implicit replace), never withdrawn first, so it does not flap. With ``bulk``, routes of
    one neighbor with equal attributes share a line (``announce attributes ... nlri ...``).
    """
    withdraws: list[Command] = []
    announces: list[Command] = []
    for neighbor in sorted(set(desired) | set(actual)):
        want = desired.get(neighbor, {})
        have = actual.get(neighbor, {})
        gone = sorted(
            (p for p in have if p not in want),
            key=lambda p: (p.version, int(p.network_address), p.prefixlen),
        )
        changed = sorted(
            (r for p, r in want.items() if not _same(have.get(p), r)), key=Route.sort_key
        )
        size = per_line if bulk else 1
        for chunk in _chunks_of(gone, size):
            line = (withdraw(chunk[0], neighbor) if len(chunk) == 1 else
                    f"neighbor {neighbor} withdraw attributes next-hop self nlri "
                    + " ".join(str(p) for p in chunk))  # fmt: skip
            withdraws.append(Command(line, neighbor, withdrawn=tuple(chunk)))
        groups: dict[tuple[object, ...], list[Route]] = {}
        for r in changed:
            groups.setdefault(attribute_key(r) if bulk else (r.prefix,), []).append(r)
        for members in groups.values():
            for rchunk in _chunks_of(members, size):
                if len(rchunk) == 1:
                    line = announce(rchunk[0], neighbor)
                else:
                    line = (f"neighbor {neighbor} announce attributes {_attributes(rchunk[0])} "
                            "nlri " + " ".join(str(r.prefix) for r in rchunk))  # fmt: skip
                announces.append(Command(line, neighbor, announced=tuple(rchunk)))
    return withdraws + announces


def _chunks_of(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def diff_commands(
    desired: Mapping[str, Mapping[IPNetwork, Route]],
    actual: Mapping[str, Mapping[IPNetwork, AdjRibEntry | Route]],
    bulk: bool = True,
) -> list[str]:
    """The lines of :func:`plan`."""
    return [c.line for c in plan(desired, actual, bulk)]


def _same(have: AdjRibEntry | Route | None, want: Route) -> bool:
    if have is None:
        return False
    if isinstance(have, Route):
        return attribute_key(have) == attribute_key(want) and have.prefix == want.prefix
    return have.matches(want)
