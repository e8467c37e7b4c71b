"""BFD for the node's BGP sessions, as a pure function of the peers and MetalLB's profiles.

ExaBGP has no BFD (docs/exabgp.md, "Limitations"), so every node runs FRR's ``bfdd`` next to
ExaBGP, without zebra or bgpd (docs/bfd.md says why this daemon). The speaker decides here
which BFD sessions the node runs and with which timers, and renders:

* the daemon's config file (``bfd`` block: one ``profile`` per BFDProfile in use, one
  ``peer`` per BGPPeer with a ``bfdProfile``), which a (re)started bfdd reads at start;
* the ``vtysh`` commands that bring a running bfdd to the same state
  (:func:`apply_commands`): profiles and peers written out in full (re-sending a value that
  did not change changes nothing in bfdd, and a changed timer is renegotiated with the peer
  by a BFD poll sequence, without taking the session down), then ``no peer`` / ``no
  profile`` for what is no longer wanted, read from bfdd's own running config.

Every setting is written explicitly, with MetalLB's default (which is FRR's) where the
profile leaves it unset, so removing a field from a BFDProfile really restores the default.

Mapping (MetalLB's FRR mode renders the same lines, ``internal/bgp/frr/templates``):

====================  ============================================================
BFDProfile            bfdd profile line
====================  ============================================================
receiveInterval       ``receive-interval`` (ms, default 300)
transmitInterval      ``transmit-interval`` (ms, default 300)
detectMultiplier      ``detect-multiplier`` (default 3)
echoInterval          ``echo receive-interval`` and ``echo transmit-interval`` (50)
echoMode              ``echo-mode`` / ``no echo-mode``
passiveMode           ``passive-mode`` / ``no passive-mode``
minimumTtl            ``minimum-ttl`` (default 254; bfdd applies it to multi-hop only)
====================  ============================================================

A BGPPeer with ``ebgpMultiHop`` gets a multi-hop BFD session (RFC 5883, UDP 4784), as FRR's
bgpd would create for it; every other peer a single-hop one (RFC 5881, UDP 3784, TTL 255).
The session's local address is the BGP session's (``sourceAddress``, or the kernel's
choice: :mod:`speaker.sources`), so both protocols leave from the same address.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exalb.config.model import BFDProfile, Peer

DEFAULT_RECEIVE_INTERVAL = 300
DEFAULT_TRANSMIT_INTERVAL = 300
DEFAULT_DETECT_MULTIPLIER = 3
DEFAULT_ECHO_INTERVAL = 50
DEFAULT_MINIMUM_TTL = 254
#: bfdd's profile names are at most 63 characters (``BFD_PROFILE_NAME_LEN`` 64 with NUL).
MAX_PROFILE_NAME = 63
_TOKEN = re.compile(r"^[A-Za-z0-9._-]+$")

HEADER = "! Rendered by exalb's speaker for FRR's bfdd; do not edit: the speaker overwrites it.\n"


@dataclass(frozen=True)
class BfdPeer:
    """One BFD session of this node: towards a BGPPeer's address."""

    peer_name: str  # the BGPPeer
    address: str
    local_address: str | None
    multihop: bool
    profile: str

    @property
    def key(self) -> str:
        """The ``peer`` line, exactly as bfdd prints it in its running config."""
        line = f"peer {self.address}"
        if self.multihop:
            line += " multihop"
        if self.local_address is not None:
            line += f" local-address {self.local_address}"
        return line


@dataclass(frozen=True)
class BfdPlan:
    """What the node's bfdd should run; ``problems`` are BGPPeers left without BFD."""

    profiles: tuple[BFDProfile, ...]
    peers: tuple[BfdPeer, ...]
    problems: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The bfdd config file."""
        if not self.peers:
            return HEADER
        return HEADER + "bfd\n" + "".join(_indent(self.body_lines(), 1)) + "exit\n"

    def body_lines(self) -> list[str]:
        """The lines inside ``bfd``: profiles first (peers refer to them)."""
        lines: list[str] = []
        for p in self.profiles:
            lines += [f"profile {p.name}", *(f" {x}" for x in profile_settings(p)), "exit"]
        for peer in self.peers:
            lines += [peer.key, f" profile {peer.profile}", "exit"]
        return lines


def _indent(lines: Iterable[str], depth: int) -> list[str]:
    return [" " * depth + line + "\n" for line in lines]


def profile_settings(p: BFDProfile) -> list[str]:
    """Every setting of a profile, defaults written out (see the module docstring)."""
    echo = p.echo_interval if p.echo_interval is not None else DEFAULT_ECHO_INTERVAL
    return [
        f"receive-interval {_or(p.receive_interval, DEFAULT_RECEIVE_INTERVAL)}",
        f"transmit-interval {_or(p.transmit_interval, DEFAULT_TRANSMIT_INTERVAL)}",
        f"detect-multiplier {_or(p.detect_multiplier, DEFAULT_DETECT_MULTIPLIER)}",
        f"echo receive-interval {echo}",
        f"echo transmit-interval {echo}",
        "echo-mode" if p.echo_mode else "no echo-mode",
        "passive-mode" if p.passive_mode else "no passive-mode",
        f"minimum-ttl {_or(p.minimum_ttl, DEFAULT_MINIMUM_TTL)}",
    ]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def detection_ms(p: BFDProfile) -> int:
    """This node's detection time towards a peer using the same profile (ms)."""
    interval = max(
        _or(p.receive_interval, DEFAULT_RECEIVE_INTERVAL),
        _or(p.transmit_interval, DEFAULT_TRANSMIT_INTERVAL),
    )
    return interval * _or(p.detect_multiplier, DEFAULT_DETECT_MULTIPLIER)


def plan_bfd(peers: Sequence[Peer], profiles: Iterable[BFDProfile]) -> BfdPlan:
    """The sessions for this node's ``peers`` (already resolved: source addresses filled)."""
    by_name = {p.name: p for p in profiles}
    out: dict[str, BfdPeer] = {}
    used: dict[str, BFDProfile] = {}
    problems: list[str] = []
    for peer in sorted(peers, key=lambda p: (p.peer_address.version, int(p.peer_address))):
        name = peer.bfd_profile
        if name is None:
            continue
        profile = by_name.get(name)
        where = f"BGPPeer/{peer.name}: spec.bfdProfile"
        if profile is None:
            problems.append(f"{where}: BFDProfile {name!r} does not exist; no BFD session")
            continue
        if len(name) > MAX_PROFILE_NAME or not _TOKEN.match(name):
            problems.append(f"{where}: {name!r} is not a bfdd profile name (<= 63 characters)")
            continue
        local = str(peer.source_address) if peer.source_address is not None else None
        session = BfdPeer(peer.name, str(peer.peer_address), local, peer.ebgp_multihop, name)
        if session.multihop and local is None:
            problems.append(f"{where}: a multi-hop BFD session needs a source address")
            continue
        if session.key in out:
            other = out[session.key]
            if other.profile != name:
                problems.append(
                    f"{where}: the session to {session.address} already uses BFDProfile "
                    f"{other.profile!r} (BGPPeer/{other.peer_name}); ignored"
                )
            continue
        out[session.key] = session
        used[name] = profile
    return BfdPlan(
        profiles=tuple(used[n] for n in sorted(used)),
        peers=tuple(out.values()),
        problems=tuple(problems),
    )


# -- what bfdd runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """The profiles and peers of bfdd's running config (``show running-config``)."""

    profiles: frozenset[str]
    peers: frozenset[str]  # ``peer`` lines (:attr:`BfdPeer.key`)


def parse_running_config(text: str) -> Running:
    """Profiles and peer lines directly under bfdd's ``bfd`` node (one space of indent)."""
    profiles: set[str] = set()
    peers: set[str] = set()
    inside = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if line == "bfd":
            inside = True
            continue
        if (inside and line in ("exit", "end")) or (line and not line.startswith(" ")):
            inside = False
            continue
        if not inside or not line.startswith(" ") or line.startswith("  "):
            continue
        words = line.split()
        if words[0] == "profile" and len(words) == 2:
            profiles.add(words[1])
        elif words[0] == "peer":
            peers.add(" ".join(w for w in words if w not in ("vrf", "default")))
    return Running(frozenset(profiles), frozenset(peers))


def apply_commands(plan: BfdPlan, running: Running) -> list[str]:
    """``vtysh -c`` commands bringing a bfdd that runs ``running`` to ``plan``."""
    wanted_peers = {p.key for p in plan.peers}
    wanted_profiles = {p.name for p in plan.profiles}
    commands = ["configure terminal", "bfd"]
    commands += [f"no {key}" for key in sorted(running.peers - wanted_peers)]
    commands += plan.body_lines()
    commands += [f"no profile {n}" for n in sorted(running.profiles - wanted_profiles)]
    commands += ["exit", "end"]
    return commands


# -- state --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BfdSession:
    """One session as bfdd reports it (``show bfd peers json`` + ``... counters json``)."""

    peer: str
    local: str | None
    multihop: bool
    vrf: str
    status: str  # up, down, init, shutdown, unknown
    uptime: int | None  # seconds, while up
    downtime: int | None  # seconds, while down
    diagnostic: str
    remote_diagnostic: str
    receive_interval: int | None
    transmit_interval: int | None
    detect_multiplier: int | None
    remote_receive_interval: int | None
    remote_transmit_interval: int | None
    remote_detect_multiplier: int | None
    counters: tuple[tuple[str, int], ...] = ()

    @property
    def up(self) -> bool:
        return self.status == "up"

    def counter(self, name: str) -> int:
        return dict(self.counters).get(name, 0)


#: bfdd's counter names, as MetalLB mirrors them (``frr-tools/metrics/collector/bfd.go``).
COUNTERS = (
    "control-packet-input",
    "control-packet-output",
    "echo-packet-input",
    "echo-packet-output",
    "session-up",
    "session-down",
    "zebra-notifications",
)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _session_key(item: Mapping[str, Any]) -> tuple[str, str, bool, str]:
    return (
        str(item.get("peer", "")),
        str(item.get("local", "")),
        bool(item.get("multihop", False)),
        str(item.get("vrf", "default")),
    )


def parse_sessions(peers_json: str, counters_json: str = "[]") -> list[BfdSession]:
    """Sessions from bfdd's JSON; anything malformed is skipped, never raised."""
    try:
        peers = json.loads(peers_json or "[]")
        counters = json.loads(counters_json or "[]")
    except ValueError:
        return []
    if not isinstance(peers, list):
        return []
    by_key = {
        _session_key(c): tuple((n, v) for n in COUNTERS if (v := _int(c.get(n))) is not None)
        for c in counters if isinstance(c, dict)
    } if isinstance(counters, list) else {}  # fmt: skip
    out = []
    for p in peers:
        if not isinstance(p, dict) or not p.get("peer"):
            continue
        out.append(
            BfdSession(
                peer=str(p["peer"]),
                local=str(p["local"]) if p.get("local") else None,
                multihop=bool(p.get("multihop", False)),
                vrf=str(p.get("vrf", "default")),
                status=str(p.get("status", "unknown")),
                uptime=_int(p.get("uptime")),
                downtime=_int(p.get("downtime")),
                diagnostic=str(p.get("diagnostic", "")),
                remote_diagnostic=str(p.get("remote-diagnostic", "")),
                receive_interval=_int(p.get("receive-interval")),
                transmit_interval=_int(p.get("transmit-interval")),
                detect_multiplier=_int(p.get("detect-multiplier")),
                remote_receive_interval=_int(p.get("remote-receive-interval")),
                remote_transmit_interval=_int(p.get("remote-transmit-interval")),
                remote_detect_multiplier=_int(p.get("remote-detect-multiplier")),
                counters=by_key.get(_session_key(p), ()),
            )
        )
    return out


def in_force(plan: BfdPlan, sessions: Iterable[BfdSession]) -> bool:
    """Whether bfdd runs exactly the plan's sessions (same peers, local addresses, hops)."""
    have = {BfdPeer("", s.peer, s.local, s.multihop, "").key for s in sessions}
    return have == {p.key for p in plan.peers}
