"""Containerlab topology files, read into frozen values for exalb's netns runner.

Why: one ``*.clab.yml`` (plus its bound ``frr.conf`` / ``daemons`` files) must serve both
containerlab and the namespace runner, so the runner reads containerlab's own format
instead of a private one. Only what the runner needs is modelled: ``kind: linux`` nodes,
``binds``, ``sysctls``, ``exec`` and ``labels`` per node, and point-to-point ``links``.

exalb-specific facts live in node labels (containerlab passes unknown labels through):

* ``exalb.role``: ``router`` (FRR from its bound files, or BIRD 2 from its bound
  ``bird.conf`` with ``exalb.router: bird``: ``lab/bird.py``), ``node`` (a Kubernetes node),
  ``client`` (traffic source), ``switch`` (an L2 segment: a bridge its own ``exec`` lines
  build from its link interfaces, so it lives inside the node, never in the host),
  ``controlplane`` (a real cluster's etcd and Kubernetes control plane; its presence makes
  the nodes real Kubernetes nodes, see ``lab/cluster/``).
* for a ``node`` that speaks BGP: ``exalb.bgp.asn``, ``exalb.bgp.router-id`` and
  ``exalb.bgp.peers`` (a space-separated list of ``<peer address>@<peer AS>``). The
  session's local address is derived from the node's ``ip addr add`` lines: the address
  whose subnet holds the peer. A ``node`` without ``exalb.bgp.*`` labels is L2-only.

``sysctls`` are applied in the node's namespace before its links exist; only per-namespace
``net.ipv4.*`` / ``net.ipv6.*`` keys are accepted: a topology never changes the host.

Everything here is pure apart from :func:`load_topology`, which reads the files.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from lab import frrconf
from lab.execlines import parse_exec_addresses

IPAddress = frrconf.IPAddress
IPInterface = frrconf.IPInterface

#: Linux's IFNAMSIZ is 16 including the trailing NUL.
MAX_IFNAME = 15
#: containerlab reserves eth0 for its management network.
MGMT_INTERFACE = "eth0"
FRR_CONF_TARGET = "/etc/frr/frr.conf"
FRR_DAEMONS_TARGET = "/etc/frr/daemons"
#: Node names become part of namespace names and unix socket paths: keep them short.
MAX_NODE_NAME = 20
#: The repository's topologies: ``<TOPOLOGIES>/<name>/<name>.clab.yml``.
TOPOLOGIES = Path(__file__).resolve().parents[1] / "containerlab"
#: sysctl prefixes that are per network namespace (anything else could reach the host).
NAMESPACED_SYSCTLS = ("net.ipv4.", "net.ipv6.")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

LABEL_ROLE = "exalb.role"
LABEL_ASN = "exalb.bgp.asn"
LABEL_ROUTER_ID = "exalb.bgp.router-id"
LABEL_PEERS = "exalb.bgp.peers"
LABEL_ROUTER = "exalb.router"  # frr (default) or bird
ROUTER_KINDS = ("frr", "bird")


class TopologyError(ValueError):
    """A topology file that the runner cannot use; ``problems`` lists every reason."""

    def __init__(self, path: Path, problems: Iterable[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(f"{path}: " + "; ".join(self.problems))


class Role(StrEnum):
    """What the runner does with a node."""

    ROUTER = "router"
    NODE = "node"
    CLIENT = "client"
    SWITCH = "switch"
    CONTROLPLANE = "controlplane"


@dataclass(frozen=True)
class Endpoint:
    """One end of a link: a node and the interface name inside that node."""

    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True)
class Link:
    """A point-to-point veth pair between two endpoints."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Bind:
    """A containerlab bind: ``source`` resolved against the topology's directory."""

    source: Path
    target: str


@dataclass(frozen=True)
class BgpPeer:
    """A router the node's ExaBGP talks to."""

    address: IPAddress
    asn: int


@dataclass(frozen=True)
class BgpIdentity:
    """A node's ExaBGP identity, taken from its ``exalb.bgp.*`` labels."""

    asn: int
    router_id: ipaddress.IPv4Address
    peers: tuple[BgpPeer, ...]


@dataclass(frozen=True)
class Node:
    """One topology node as the runner sees it.

    ``addresses`` are (interface, address) pairs from the node's ``ip addr add`` exec lines
    or, for routers, from their ``frr.conf``.
    """

    name: str
    kind: str
    image: str
    role: Role
    labels: Mapping[str, str]
    binds: tuple[Bind, ...]
    exec: tuple[str, ...]
    bgp: BgpIdentity | None = None
    addresses: tuple[tuple[str, IPInterface], ...] = field(default=())
    sysctls: Mapping[str, str] = field(default_factory=dict)

    @property
    def router_kind(self) -> str:
        """``frr`` or ``bird`` (label ``exalb.router``) for a router node."""
        return self.labels.get(LABEL_ROUTER, "frr")

    def bind_source(self, target: str) -> Path | None:
        """The host file bound to ``target`` inside the container, if any."""
        for bind in self.binds:
            if bind.target == target:
                return bind.source
        return None

    def address_on(self, interface: str, version: int) -> IPInterface | None:
        """The node's first address of IP ``version`` on ``interface``, if any."""
        for iface, address in self.addresses:
            if iface == interface and address.version == version:
                return address
        return None

    def local_address_for(self, peer: IPAddress) -> IPAddress | None:
        """The node's own address on the subnet that holds ``peer`` (its BGP source)."""
        for _, iface in self.addresses:
            if iface.version == peer.version and peer in iface.network and peer != iface.ip:
                return iface.ip
        return None


@dataclass(frozen=True)
class Topology:
    """A parsed containerlab file."""

    name: str
    path: Path
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"topology {self.name} has no node {name!r}")

    def by_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is role)

    def interfaces(self, node: str) -> tuple[str, ...]:
        """Interface names a node gets from links, in link order."""
        out: list[str] = []
        for link in self.links:
            out.extend(e.interface for e in (link.a, link.b) if e.node == node)
        return tuple(out)

    def peer_of(self, node: str, interface: str) -> Endpoint:
        """The far end of the link on ``node:interface`` (e.g. a switch port)."""
        for link in self.links:
            if link.a == Endpoint(node, interface):
                return link.b
            if link.b == Endpoint(node, interface):
                return link.a
        raise KeyError(f"topology {self.name}: no link on {node}:{interface}")


def topology_path(name: str) -> Path:
    """``containerlab/<name>/<name>.clab.yml`` of this repository."""
    return TOPOLOGIES / name / f"{name}.clab.yml"


# --- naming -------------------------------------------------------------------------


def check_run_name(run: str) -> None:
    """Run names become part of namespace names and socket paths; refuse odd ones."""
    if not (1 <= len(run) <= 24 and _NAME_RE.match(run)):
        raise ValueError(f"run name {run!r}: 1-24 chars of [a-z0-9-], not starting/ending in -")


def namespace_name(run: str, node: str) -> str:
    """``exalb-<run>-<node>``: the prefix marks it as ours, the run keeps runs apart."""
    return f"exalb-{run}-{node}"


def namespace_prefix(run: str) -> str:
    return f"exalb-{run}-"


# --- parsing helpers (pure) ---------------------------------------------------------


def parse_peers(value: str) -> tuple[BgpPeer, ...]:
    """``"198.18.0.1@64500 2001:db8::1@64500"`` into peers (ValueError on bad syntax)."""
    peers = []
    for item in value.replace(",", " ").split():
        address, sep, asn = item.rpartition("@")
        if not sep:
            raise ValueError(f"peer {item!r} is not <address>@<asn>")
        peers.append(BgpPeer(ipaddress.ip_address(address), _asn(asn)))
    return tuple(peers)


def _asn(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4294967295:
        raise ValueError(f"AS number {value} out of range")
    return value


def _parse_bgp(labels: Mapping[str, str]) -> BgpIdentity | None:
    """The node's BGP identity; None for an L2-only node (no ``exalb.bgp.*`` label at all)."""
    if not any(k in labels for k in (LABEL_ASN, LABEL_ROUTER_ID, LABEL_PEERS)):
        return None
    router_id = ipaddress.ip_address(labels[LABEL_ROUTER_ID])
    if not isinstance(router_id, ipaddress.IPv4Address):
        raise ValueError(f"router-id {router_id} must be IPv4")
    return BgpIdentity(_asn(labels[LABEL_ASN]), router_id, parse_peers(labels[LABEL_PEERS]))


def _endpoint(text: Any, problems: list[str]) -> Endpoint | None:
    node, sep, iface = str(text).partition(":")
    if not sep or not node or not iface:
        problems.append(f"link endpoint {text!r} is not <node>:<interface>")
        return None
    return Endpoint(node, iface)


def _string_list(value: Any, what: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{what} must be a list of strings")
        return ()
    return tuple(value)


def _parse_node(
    name: str, spec: Any, defaults: Mapping[str, Any], directory: Path, problems: list[str]
) -> Node | None:
    if not isinstance(spec, dict):
        spec = {}
    merged = {**defaults, **spec}
    raw_labels = merged.get("labels") or {}
    if not isinstance(raw_labels, dict):
        problems.append(f"node {name}: labels must be a mapping")
        raw_labels = {}
    labels = {str(k): str(v) for k, v in raw_labels.items()}
    role_text = labels.get(LABEL_ROLE, "")
    try:
        role = Role(role_text)
    except ValueError:
        roles = "/".join(r.value for r in Role)
        problems.append(f"node {name}: label {LABEL_ROLE} must be one of {roles}")
        return None
    binds = []
    for text in _string_list(merged.get("binds"), f"node {name}: binds", problems):
        parts = text.split(":")
        if len(parts) < 2:
            problems.append(f"node {name}: bind {text!r} is not <source>:<target>[:mode]")
            continue
        source = Path(parts[0])
        binds.append(Bind(source if source.is_absolute() else directory / source, parts[1]))
    commands = _string_list(merged.get("exec"), f"node {name}: exec", problems)
    sysctls = _sysctls(merged.get("sysctls"), name, problems)
    bgp = None
    if role is Role.NODE:
        try:
            bgp = _parse_bgp(labels)
        except KeyError as exc:
            problems.append(f"node {name}: role node needs label {exc.args[0]}")
        except ValueError as exc:
            problems.append(f"node {name}: {exc}")
    return Node(
        name=name,
        kind=str(merged.get("kind", "")),
        image=str(merged.get("image", "")),
        role=role,
        labels=labels,
        binds=tuple(binds),
        exec=commands,
        bgp=bgp,
        addresses=parse_exec_addresses(commands),
        sysctls=sysctls,
    )


def _sysctls(value: Any, node: str, problems: list[str]) -> dict[str, str]:
    """containerlab's ``sysctls:`` mapping; only keys that live in the node's namespace."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"node {node}: sysctls must be a mapping")
        return {}
    out = {str(k): str(v) for k, v in value.items()}
    for key in out:
        if not key.startswith(NAMESPACED_SYSCTLS):
            problems.append(f"node {node}: sysctl {key} is not per-namespace (net.ipv4/net.ipv6)")
    return out


def parse_topology(text: str, path: Path) -> Topology:
    """Parse a clab file's text; ``path`` locates relative binds. Raises TopologyError."""
    problems: list[str] = []
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise TopologyError(path, ["not a YAML mapping"])
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        problems.append("missing top-level name")
    topo = doc.get("topology")
    if not isinstance(topo, dict) or not isinstance(topo.get("nodes"), dict):
        raise TopologyError(path, [*problems, "missing topology.nodes"])
    defaults = topo.get("defaults") or {}
    nodes = []
    for node_name, spec in topo["nodes"].items():
        node = _parse_node(str(node_name), spec, defaults, path.parent, problems)
        if node is not None:
            nodes.append(node)
    links = []
    for item in topo.get("links") or []:
        endpoints = item.get("endpoints") if isinstance(item, dict) else None
        if not isinstance(endpoints, list) or len(endpoints) != 2:
            problems.append(f"link {item!r} needs exactly two endpoints")
            continue
        a, b = (_endpoint(e, problems) for e in endpoints)
        if a and b:
            links.append(Link(a, b))
    if problems:
        raise TopologyError(path, problems)
    return Topology(str(name), path, tuple(nodes), tuple(links))
