"""The desired-state document the speaker hands the garp sidecar, and the status it returns.

Pure encode/decode; the file transport lives in :mod:`exalb.filechannel`. This module is the
contract between two programs (the speaker writes the state, the garp sidecar the status), so
it lives in the shared core and imports neither.

Why a whole-state document (not a stream of add/remove events): either side may restart at
any time. The speaker atomically rewrites one JSON file in the pod's shared emptyDir; the
sidecar re-reads it on change. A restarted sidecar reads the current file and is correct at
once; a dead speaker leaves the last file in place, so the sidecar keeps serving the last
known state (the IP contract outlives the speaker process). ``generation`` increases with
each write so logs, metrics and the status file show which state the sidecar applies.

Document (``version`` 1)::

    {
      "version": 1,
      "node": "node-a",                 # the node this document is for
      "generation": 42,
      "ping": false,                    # opt-in ICMP echo for answered IPs
      "owned": ["198.51.100.50"],       # derived: IPs where node == candidates[0]
      "ips": [
        {"ip": "198.51.100.50",
         "services": ["default/web"],
         "interfaces": [],              # [] = every interface the sidecar allows
         "candidates": [                # ranked, best first; the node itself included
           {"node": "node-a", "nodeIP": "198.51.100.11"},
           {"node": "node-b", "nodeIP": "198.51.100.12"}]}
      ]
    }

Only IPs for which ``node`` is a candidate are listed; the sidecar never answers others.
``owned`` is redundant on purpose (humans read the file with ``kubectl exec … cat``); the
decoder rejects a document where it disagrees with the candidate lists, because that means
a writer bug and the previous state is safer. ``nodeIP`` is the candidate's address on the
segment used for data-path liveness probes; ``null`` means "cannot be probed", and such a
candidate is always presumed alive (Kubernetes stays the authority).

The sidecar's status document (written next to the state, same atomic rule) reports what
is answered *right now*, which differs from ``owned`` after a data-path takeover::

    {"version": 1, "node": "node-b", "generation": 42, "answering": ["198.51.100.50"],
     "peers": {"node-a": false}, "interfaces": ["eth0", "eth1"]}

``interfaces`` are the links the sidecar listens on (present, not excluded): an
L2Advertisement naming none of them is never answered on this node (``kubectl exalb
doctor`` compares them). A status without the key (an older sidecar) means "unknown".
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exalb.config.model import IPAddress

VERSION = 1


class StateError(ValueError):
    """The document is not a valid desired state (the sidecar keeps its previous one)."""


@dataclass(frozen=True)
class Candidate:
    node: str
    node_ip: IPAddress | None


@dataclass(frozen=True)
class IPState:
    ip: IPAddress
    candidates: tuple[Candidate, ...]
    services: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()  # () = all allowed

    def rank_of(self, node: str) -> int | None:
        for i, c in enumerate(self.candidates):
            if c.node == node:
                return i
        return None


@dataclass(frozen=True)
class DesiredState:
    node: str
    generation: int
    ips: tuple[IPState, ...] = ()
    ping: bool = False

    @property
    def owned(self) -> tuple[IPAddress, ...]:
        return tuple(e.ip for e in self.ips if e.rank_of(self.node) == 0)

    def entry(self, ip: IPAddress) -> IPState | None:
        for e in self.ips:
            if e.ip == ip:
                return e
        return None


@dataclass(frozen=True)
class Status:
    """The sidecar's report. ``written`` (Unix time) is refreshed every second even when
    nothing changes, so a reader can tell a live report from one a dead sidecar left."""

    node: str
    generation: int
    answering: tuple[IPAddress, ...]
    peers: tuple[tuple[str, bool], ...] = ()
    written: float = 0.0
    interfaces: tuple[str, ...] | None = None  # None: not reported


def _ip_sort(ips: Iterable[IPAddress]) -> list[IPAddress]:
    return sorted(ips, key=lambda a: (a.version, int(a)))


def encode(state: DesiredState) -> bytes:
    doc = {
        "version": VERSION,
        "node": state.node,
        "generation": state.generation,
        "ping": state.ping,
        "owned": [str(ip) for ip in state.owned],
        "ips": [
            {
                "ip": str(e.ip),
                "services": list(e.services),
                "interfaces": list(e.interfaces),
                "candidates": [
                    {"node": c.node, "nodeIP": None if c.node_ip is None else str(c.node_ip)}
                    for c in e.candidates
                ],
            }
            for e in state.ips
        ],
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def _req(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StateError(f"{where}.{key}: missing or not {getattr(kind, '__name__', kind)}")
    return value


def _ip(text: Any, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError as exc:
        raise StateError(f"{where}: {text!r} is not an IP address") from exc


def _str_list(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise StateError(f"{where}.{key}: not a list of strings")
    return tuple(value)


def decode(data: bytes | str) -> DesiredState:
    """Parse and validate a document; raise :class:`StateError` with a path on bad input."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise StateError("document is not an object")
    if doc.get("version") != VERSION:
        raise StateError(f"unsupported version {doc.get('version')!r} (want {VERSION})")
    node = _req(doc, "node", str, "$")
    generation = _req(doc, "generation", int, "$")
    ping = doc.get("ping", False)
    if not isinstance(ping, bool):
        raise StateError("$.ping: not a boolean")
    entries: list[IPState] = []
    seen: set[IPAddress] = set()
    for i, raw in enumerate(_req(doc, "ips", list, "$")):
        where = f"$.ips[{i}]"
        if not isinstance(raw, dict):
            raise StateError(f"{where}: not an object")
        ip = _ip(_req(raw, "ip", str, where), f"{where}.ip")
        if ip in seen:
            raise StateError(f"{where}.ip: {ip} listed twice")
        seen.add(ip)
        cands: list[Candidate] = []
        for j, c in enumerate(_req(raw, "candidates", list, where)):
            cw = f"{where}.candidates[{j}]"
            if not isinstance(c, dict):
                raise StateError(f"{cw}: not an object")
            name = _req(c, "node", str, cw)
            nip = c.get("nodeIP")
            cands.append(Candidate(name, None if nip is None else _ip(nip, f"{cw}.nodeIP")))
        if len({c.node for c in cands}) != len(cands):
            raise StateError(f"{where}.candidates: a node is listed twice")
        entries.append(
            IPState(
                ip=ip,
                candidates=tuple(cands),
                services=_str_list(raw, "services", where),
                interfaces=_str_list(raw, "interfaces", where),
            )
        )
    state = DesiredState(node=node, generation=generation, ips=tuple(entries), ping=ping)
    if "owned" in doc:
        owned = {_ip(x, "$.owned") for x in _str_list(doc, "owned", "$")}
        if owned != set(state.owned):
            raise StateError("$.owned disagrees with the candidate lists")
    return state


def encode_status(status: Status) -> bytes:
    doc = {
        "version": VERSION,
        "node": status.node,
        "generation": status.generation,
        "answering": [str(ip) for ip in _ip_sort(status.answering)],
        "peers": dict(status.peers),
        "written": round(status.written, 3),
    }
    if status.interfaces is not None:
        doc["interfaces"] = sorted(status.interfaces)
    return (json.dumps(doc, indent=1) + "\n").encode()


def decode_status(data: bytes | str) -> Status:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise StateError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise StateError("not a version 1 status document")
    peers = doc.get("peers", {})
    if not isinstance(peers, dict):
        raise StateError("$.peers: not an object")
    return Status(
        node=_req(doc, "node", str, "$"),
        generation=_req(doc, "generation", int, "$"),
        answering=tuple(_ip(x, "$.answering") for x in _str_list(doc, "answering", "$")),
        peers=tuple(sorted((str(k), bool(v)) for k, v in peers.items())),
        written=float(doc.get("written") or 0.0),
        interfaces=_str_list(doc, "interfaces", "$") if "interfaces" in doc else None,
    )
