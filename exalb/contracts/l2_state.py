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
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    _index: dict[IPAddress, IPState] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._index.update((e.ip, e) for e in self.ips)

    @property
    def owned(self) -> tuple[IPAddress, ...]:
        return tuple(e.ip for e in self.ips if e.rank_of(self.node) == 0)

    def entry(self, ip: IPAddress) -> IPState | None:
        return self._index.get(ip)


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


def _json(data: bytes | str) -> Any:
    """``json.loads`` that fails only with :class:`StateError` (a document nested thousands
    deep raises RecursionError in the parser, which is input, not a bug)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"not JSON: {exc}") from exc
    except RecursionError:
        raise StateError("not JSON: nested too deeply") from None


def _generation(doc: Mapping[str, Any]) -> int:
    generation: int = _req(doc, "generation", int, "$")
    if not 0 <= generation < 2**63:
        raise StateError("$.generation: out of range")
    return generation


def _candidate(c: Any, where: str, known: dict[tuple[str, str | None], Candidate]) -> Candidate:
    """One candidate. The same few candidates repeat on every IP: each (node, nodeIP) is
    parsed once and the (immutable) Candidate shared, which makes a 10,000-IP document
    several times cheaper to read. Anything unusual takes the slow path, which names the
    offending field."""
    name = c.get("node") if isinstance(c, dict) else None
    nip = c.get("nodeIP") if isinstance(c, dict) else None
    if type(name) is str and (nip is None or type(nip) is str):
        cand = known.get((name, nip))
        if cand is None:
            cand = Candidate(name, None if nip is None else _ip(nip, f"{where}.nodeIP"))
            known[(name, nip)] = cand
        return cand
    if not isinstance(c, dict):
        raise StateError(f"{where}: not an object")
    return Candidate(_req(c, "node", str, where), _ip(nip, f"{where}.nodeIP"))


def _entry(raw: Any, where: str, known: dict[tuple[str, str | None], Candidate]) -> IPState:
    if not isinstance(raw, dict):
        raise StateError(f"{where}: not an object")
    ip = _ip(_req(raw, "ip", str, where), f"{where}.ip")
    cands = [
        _candidate(c, f"{where}.candidates[{j}]", known)
        for j, c in enumerate(_req(raw, "candidates", list, where))
    ]
    if len({c.node for c in cands}) != len(cands):
        raise StateError(f"{where}.candidates: a node is listed twice")
    return IPState(
        ip=ip,
        candidates=tuple(cands),
        services=_str_list(raw, "services", where),
        interfaces=_str_list(raw, "interfaces", where),
    )


def decode(data: bytes | str) -> DesiredState:
    """Parse and validate a document; raise :class:`StateError` with a path on bad input."""
    doc = _json(data)
    if not isinstance(doc, dict):
        raise StateError("document is not an object")
    if doc.get("version") != VERSION:
        raise StateError(f"unsupported version {doc.get('version')!r} (want {VERSION})")
    node = _req(doc, "node", str, "$")
    generation = _generation(doc)
    ping = doc.get("ping", False)
    if not isinstance(ping, bool):
        raise StateError("$.ping: not a boolean")
    entries: list[IPState] = []
    seen: set[IPAddress] = set()
    known: dict[tuple[str, str | None], Candidate] = {}
    for i, raw in enumerate(_req(doc, "ips", list, "$")):
        entry = _entry(raw, f"$.ips[{i}]", known)
        if entry.ip in seen:
            raise StateError(f"$.ips[{i}].ip: {entry.ip} listed twice")
        seen.add(entry.ip)
        entries.append(entry)
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
    """Parse the sidecar's report; any malformed input raises :class:`StateError` (a reader
    such as the speaker's ``/status`` then treats the sidecar as not reporting)."""
    doc = _json(data)
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise StateError("not a version 1 status document")
    peers = doc.get("peers", {})
    if not isinstance(peers, dict) or not all(isinstance(v, bool) for v in peers.values()):
        raise StateError("$.peers: not an object of booleans")
    written = doc.get("written") or 0.0
    try:
        if isinstance(written, bool) or not math.isfinite(written):
            raise TypeError
        written = float(written)
    except (TypeError, OverflowError):
        raise StateError("$.written: not a finite number") from None
    return Status(
        node=_req(doc, "node", str, "$"),
        generation=_generation(doc),
        answering=tuple(_ip(x, "$.answering") for x in _str_list(doc, "answering", "$")),
        peers=tuple(sorted((str(k), v) for k, v in peers.items())),
        written=written,
        interfaces=_str_list(doc, "interfaces", "$") if "interfaces" in doc else None,
    )
