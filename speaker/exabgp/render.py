"""ExaBGP 5.0 configuration as a pure function of this node's peers.

The text comes from the templates in ``exabgp_conf/`` (``exabgp.conf``, ``neighbor.conf``);
this module computes the values that fill them. The rendered file only declares sessions
(neighbors) and the API process; routes never appear in it. That split is what lets a
Service change go through ``announce``/``withdraw`` without ever touching a session, while a
peer change re-renders this file and ``reload``s it: ExaBGP keeps every neighbor whose
definition did not change (docs/exabgp.md, "Reload and restart").

Mapping of MetalLB's BGPPeer onto ExaBGP (verified with ``exabgp validate`` and in the lab):

==========================  ===============================================================
BGPPeer                     ExaBGP neighbor
==========================  ===============================================================
peerAddress                 ``neighbor <ip>``
sourceAddress               ``local-address`` (omitted = ExaBGP picks it, "auto")
routerID                    ``router-id``; fallback: the node's first IPv4 address, then an
                            IPv4 sourceAddress (ExaBGP requires a router-id when
                            local-address is auto, and always for IPv6 neighbors)
myASN / localASN            ``local-as``
peerASN / dynamicASN        ``peer-as <n>`` / ``peer-as auto`` (ExaBGP does not check
                            internal/external: reported as a warning)
peerPort                    ``connect <port>`` (only when not 179)
holdTime                    ``hold-time``; unset = 90 s as native MetalLB (ExaBGP's own
                            default is 180 s); only keepaliveTime set = 3 x keepalive
keepaliveTime               no knob: ExaBGP always uses hold/3 (problem if it differs)
ebgpMultiHop                ``outgoing-ttl 255``; otherwise the OS default TTL (64), as
                            native MetalLB (which never set a TTL): forcing TTL 1 would break
                            loopback eBGP peerings that worked with native MetalLB
password / passwordSecret   ``md5-password`` in base64 + ``md5-base64 true``: any byte survives
                            the config tokenizer, and a password that happens to be all hex
                            digits is not mistaken for base64 by ExaBGP's auto-detection
enableGracefulRestart       ``capability { graceful-restart 120; }`` + ``manual-eor true``
                            (the driver sends End-of-RIB after a full re-sync)
address family              ``family { ipv4 unicast; }`` or ``ipv6 unicast`` by peerAddress
connectTime, vrf            not supported by ExaBGP 5.0: reported as problems
bfdProfile                  not ExaBGP's: the node's bfdd runs the BFD session
                            (:mod:`speaker.bfd`)
==========================  ===============================================================
"""

from __future__ import annotations

import base64
import ipaddress
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import exabgp_conf
from exalb.config.model import Peer
from exalb.views import NodeView

CONFIG_HEAD = exabgp_conf.read(exabgp_conf.CONFIG_HEAD)
NEIGHBOR = exabgp_conf.read(exabgp_conf.NEIGHBOR)

DEFAULT_HOLD_TIME = 90  # native MetalLB's default when the BGPPeer leaves it unset
GRACEFUL_RESTART_TIME = 120  # seconds; the usual restart time (FRR's default too)
PROCESS_NAME = "bridge"
MAX_MD5_KEY = 80  # TCP_MD5SIG_MAXKEYLEN

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class RenderProblem:
    """Something the rendered config cannot honour; errors drop the neighbor.

    ``event``: the reason of a Warning event the speaker puts on the BGPPeer for it (a
    refused neighbor, a password Secret that cannot be read), ``None`` for none. ``peer``
    is empty for a problem of the whole file."""

    peer: str
    field: str
    message: str
    severity: Severity = "warning"
    event: str | None = None

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        where = f"BGPPeer/{self.peer}: {self.field}" if self.peer else "exabgp.conf"
        return f"{prefix}{where}: {self.message}"


#: Event reason: ExaBGP refused this peer's neighbor; the others were applied without it.
REFUSED_EVENT = "PeerRefusedByExaBGP"


@dataclass(frozen=True)
class Neighbor:
    """One rendered neighbor; ``block`` is its exact text (used to tell what a reload changes)."""

    peer_name: str
    address: str
    family: Literal[4, 6]
    graceful_restart: bool
    block: str


@dataclass(frozen=True)
class Rendered:
    """The file's text: the head (the API process), then one block per neighbor, in order."""

    text: str
    neighbors: tuple[Neighbor, ...]
    problems: tuple[RenderProblem, ...]

    @property
    def errors(self) -> tuple[RenderProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def head(self) -> str:
        return self.text[: len(self.text) - sum(len(n.block) for n in self.neighbors)]

    def with_neighbors(self, neighbors: Sequence[Neighbor]) -> str:
        """The text this file would have with only ``neighbors`` (a subset, in order)."""
        return self.head + "".join(n.block for n in neighbors)

    def without(self, refused: Mapping[str, str]) -> Rendered:
        """This config less the neighbors of the peers in ``refused`` (name → ExaBGP's
        complaint), each reported as an error with an event: one peer ExaBGP will not take
        must not keep every other peer's change from being applied."""
        keep = tuple(n for n in self.neighbors if n.peer_name not in refused)
        problems = tuple(
            RenderProblem(
                name,
                "spec",
                f"ExaBGP refuses this neighbor ({why}); it is left out and the other peers "
                "are applied",
                "error",
                REFUSED_EVENT,
            )
            for name, why in sorted(refused.items())
        )
        return Rendered(self.with_neighbors(keep), keep, (*self.problems, *problems))


_UNSAFE_TOKEN = re.compile(r"[\s;{}\"'\[\]#]")
_OPTIONAL = re.compile(r"^\?(\w+)(.*)$")


def fill(template: str, values: Mapping[str, object]) -> str:
    """``template`` with ``${name}`` replaced; a line ``?name rest`` becomes ``rest`` when
    ``values[name]`` is set (not None, not empty) and is dropped otherwise (see
    :mod:`exabgp_conf`). A name the values lack is a bug here, so it raises ``KeyError``."""
    lines = []
    for raw in template.splitlines(keepends=True):
        optional = _OPTIONAL.match(raw)
        if optional is None:
            lines.append(raw)
        elif values.get(optional.group(1)) not in (None, ""):
            lines.append(optional.group(2) + raw[len(raw.rstrip("\n")) :])
    return string.Template("".join(lines)).substitute(
        {k: "" if v is None else str(v) for k, v in values.items()}
    )


def config_head(bridge_argv: Sequence[str], node: str) -> str:
    """The file's head: the ``process`` block that starts the bridge (``run`` must name an
    existing file, so the program is an absolute path)."""
    if not bridge_argv:
        raise ValueError("bridge command line is empty")
    for token in bridge_argv:
        if not token or _UNSAFE_TOKEN.search(token):
            raise ValueError(f"bridge argument {token!r} cannot be written into exabgp.conf")
    if not bridge_argv[0].startswith("/"):
        raise ValueError("the bridge program must be an absolute path")
    return fill(CONFIG_HEAD, {"node": node, "process": PROCESS_NAME, "run": " ".join(bridge_argv)})


def _router_id(peer: Peer, node: NodeView) -> ipaddress.IPv4Address | None:
    if peer.router_id is not None:
        return peer.router_id
    for addr in node.addresses:
        if isinstance(addr, ipaddress.IPv4Address):
            return addr
    if isinstance(peer.source_address, ipaddress.IPv4Address):
        return peer.source_address
    return None


def _hold_time(peer: Peer, problems: list[RenderProblem]) -> int:
    hold = peer.hold_time
    keepalive = peer.keepalive_time
    if hold is None:
        hold = keepalive * 3 if keepalive else DEFAULT_HOLD_TIME
    elif keepalive is not None and keepalive != hold // 3:
        problems.append(
            RenderProblem(
                peer.name,
                "spec.keepaliveTime",
                f"ExaBGP always sends keepalives every hold/3 = {hold // 3}s; "
                f"keepaliveTime {keepalive}s is not honoured",
            )
        )
    return hold


def _unsupported(peer: Peer, problems: list[RenderProblem]) -> None:
    # These fields may not exist on the model yet; read them defensively (see report).
    for attr, path, why in (
        ("connect_time", "spec.connectTime", "ExaBGP 5.0 has no connect-retry knob"),
        ("vrf", "spec.vrf", "ExaBGP has no VRF support; run it inside the VRF instead"),
    ):
        if getattr(peer, attr, None):
            problems.append(RenderProblem(peer.name, path, f"not supported: {why}"))


def neighbor_block(
    peer: Peer, node: NodeView, password: str | None, problems: list[RenderProblem]
) -> str | None:
    """One ``neighbor`` block, or None when the peer cannot be rendered (error appended)."""
    rid = _router_id(peer, node)
    if rid is None:
        problems.append(
            RenderProblem(
                peer.name,
                "spec.routerID",
                f"no router-id: node {node.name} has no IPv4 address; set routerID",
                "error",
            )
        )
        return None
    if peer.password_secret is not None and password is None:
        problems.append(
            RenderProblem(
                peer.name,
                "spec.passwordSecret",
                f"secret {peer.password_secret.namespace}/{peer.password_secret.name} "
                "not resolved; session not configured",
                "error",
            )
        )
        return None
    if password is not None and len(password.encode()) > MAX_MD5_KEY:
        problems.append(
            RenderProblem(peer.name, "spec.password", "longer than 80 bytes (TCP MD5 key)", "error")
        )
        return None
    _unsupported(peer, problems)
    if peer.dynamic_asn is not None:
        problems.append(
            RenderProblem(
                peer.name,
                "spec.dynamicASN",
                f"ExaBGP learns the peer AS from its OPEN and does not check that it is "
                f"{peer.dynamic_asn}",
            )
        )
    values = {
        "address": peer.peer_address,
        "name": peer.name,
        "router_id": rid,
        "local_address": peer.source_address,
        "local_as": getattr(peer, "session_local_asn", peer.my_asn),
        "peer_as": "auto" if peer.dynamic_asn is not None else peer.peer_asn,
        "hold_time": _hold_time(peer, problems),
        "connect": peer.peer_port if peer.peer_port != 179 else None,
        "outgoing_ttl": 255 if peer.ebgp_multihop and not peer.is_ibgp else None,
        "md5_password": (
            base64.b64encode(password.encode()).decode() if password is not None else None
        ),
        "graceful_restart": GRACEFUL_RESTART_TIME if peer.enable_graceful_restart else None,
        "family": peer.family,
        "process": PROCESS_NAME,
    }
    return fill(NEIGHBOR, values)


def render_config(
    peers: Sequence[Peer],
    node: NodeView,
    bridge_argv: Sequence[str],
    passwords: Mapping[str, str] | None = None,
) -> Rendered:
    """The whole exabgp.conf for the peers that apply to this node.

    ``passwords`` maps peer name to the MD5 password resolved by the adapter (inline
    ``password`` needs no entry; an entry wins). Neighbors are sorted by address so the text
    only changes when a peer does.
    """
    passwords = passwords or {}
    problems: list[RenderProblem] = []
    neighbors: list[Neighbor] = []
    seen: dict[str, str] = {}
    for peer in sorted(peers, key=lambda p: (p.peer_address.version, int(p.peer_address))):
        addr = str(peer.peer_address)
        if addr in seen:
            problems.append(
                RenderProblem(
                    peer.name,
                    "spec.peerAddress",
                    f"{addr} is already used by BGPPeer/{seen[addr]} on this node; ignored",
                    "error",
                )
            )
            continue
        password = passwords.get(peer.name, peer.password)
        block = neighbor_block(peer, node, password, problems)
        if block is None:
            continue
        seen[addr] = peer.name
        neighbors.append(
            Neighbor(peer.name, addr, peer.family, peer.enable_graceful_restart, block)
        )
    text = config_head(bridge_argv, node.name) + "".join(n.block for n in neighbors)
    return Rendered(text=text, neighbors=tuple(neighbors), problems=tuple(problems))


def passwords_in_config(text: str) -> dict[str, str]:
    """Peer name → MD5 password of every neighbor in a file this module rendered (its
    ``description`` is the peer's name, its ``md5-password`` base64). The file ExaBGP runs
    with is the last known password of a session whose Secret cannot be read, also across
    a speaker restart."""
    out: dict[str, str] = {}
    name: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("neighbor "):
            name = None
        elif line.startswith("description ") and line.endswith(";"):
            name = line[len("description ") : -1].strip()
        elif line.startswith('md5-password "') and line.endswith('";') and name:
            try:
                out[name] = base64.b64decode(
                    line[len('md5-password "') : -2], validate=True
                ).decode()
            except (ValueError, UnicodeDecodeError):
                continue
    return out
