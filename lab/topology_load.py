"""Reading a topology the runner can trust: the clab file, its routers' own config files,
and every rule a plan must keep (names, binds, addresses on known interfaces, BGP sessions
that both ends agree on). :func:`load_topology` raises with every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from lab import bird, frrconf
from lab.execlines import parse_exec_links
from lab.topology import (
    _IFNAME_RE,
    _NAME_RE,
    FRR_CONF_TARGET,
    FRR_DAEMONS_TARGET,
    LABEL_ROUTER,
    MAX_NODE_NAME,
    MGMT_INTERFACE,
    ROUTER_KINDS,
    Endpoint,
    IPAddress,
    Node,
    Role,
    Topology,
    TopologyError,
    parse_topology,
)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a clab file and its routers' frr.conf (raises TopologyError)."""
    path = Path(path).resolve()
    topology = parse_topology(path.read_text(), path)
    frr_confs: dict[str, str] = {}
    problems: list[str] = []
    for router in topology.by_role(Role.ROUTER):
        target = bird.BIRD_CONF_TARGET if router.router_kind == "bird" else FRR_CONF_TARGET
        source = router.bind_source(target)
        if source is not None and source.is_file():
            frr_confs[router.name] = source.read_text()
    topology = with_router_addresses(topology, frr_confs)
    problems.extend(validate(topology, frr_confs))
    if problems:
        raise TopologyError(path, problems)
    return topology


def with_router_addresses(topology: Topology, frr_confs: Mapping[str, str]) -> Topology:
    """Fill routers' addresses from their frr.conf text (node name -> text)."""
    nodes = tuple(
        replace(n, addresses=n.addresses + frrconf.parse_frr_addresses(frr_confs[n.name]))
        if n.role is Role.ROUTER and n.router_kind == "frr" and n.name in frr_confs
        else n
        for n in topology.nodes
    )
    return Topology(topology.name, topology.path, nodes, topology.links)


# --- validation ---------------------------------------------------------------------


def validate(topology: Topology, frr_confs: Mapping[str, str]) -> list[str]:
    """Everything that would make the runner (or containerlab) fail, as readable lines."""
    problems: list[str] = []
    names = {n.name for n in topology.nodes}
    for node in topology.nodes:
        problems.extend(_node_problems(node, topology))
    seen: set[Endpoint] = set()
    for link in topology.links:
        for end in (link.a, link.b):
            if end.node not in names:
                problems.append(f"link endpoint {end}: no node {end.node}")
            if not _IFNAME_RE.match(end.interface):
                problems.append(f"link endpoint {end}: interface name longer than 15 or odd")
            if end.interface in (MGMT_INTERFACE, "lo"):
                problems.append(f"link endpoint {end}: {end.interface} is reserved")
            if end in seen:
                problems.append(f"link endpoint {end} used twice")
            seen.add(end)
        if link.a.node == link.b.node:
            problems.append(f"link {link.a} - {link.b} loops back to one node")
    problems.extend(_bgp_problems(topology, frr_confs))
    return problems


def _node_problems(node: Node, topology: Topology) -> list[str]:
    problems: list[str] = []
    if not (len(node.name) <= MAX_NODE_NAME and _NAME_RE.match(node.name)):
        problems.append(f"node {node.name}: name must be <= {MAX_NODE_NAME} chars of [a-z0-9-]")
    if node.kind != "linux":
        problems.append(f"node {node.name}: kind {node.kind!r} (the runner supports linux)")
    for bind in node.binds:
        if not bind.source.is_file():
            problems.append(f"node {node.name}: bind source {bind.source} is not a file")
    if node.role is Role.ROUTER:
        problems.extend(_router_problems(node))
    own = {*topology.interfaces(node.name), *parse_exec_links(node.exec), "lo"}
    for iface, address in node.addresses:
        if iface not in own:
            problems.append(f"node {node.name}: address {address} on unknown interface {iface}")
    return problems


def _router_problems(node: Node) -> list[str]:
    """A router names a known implementation and binds that implementation's files."""
    if node.router_kind not in ROUTER_KINDS:
        return [f"node {node.name}: {LABEL_ROUTER} must be one of {ROUTER_KINDS}"]
    targets = (
        (bird.BIRD_CONF_TARGET,)
        if node.router_kind == "bird"
        else (FRR_CONF_TARGET, FRR_DAEMONS_TARGET)
    )
    what = "a BIRD router" if node.router_kind == "bird" else "a router"
    return [
        f"node {node.name}: {what} needs a bind to {target}"
        for target in targets
        if node.bind_source(target) is None
    ]


def _bgp_problems(topology: Topology, frr_confs: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    owners: dict[IPAddress, Node] = {
        iface.ip: router
        for router in topology.by_role(Role.ROUTER)
        for _, iface in router.addresses
    }
    for node in topology.by_role(Role.NODE):
        if node.bgp is None:
            continue
        for peer in node.bgp.peers:
            router = owners.get(peer.address)
            local = node.local_address_for(peer.address)
            if router is None:
                problems.append(f"node {node.name}: peer {peer.address} is no router's address")
            if local is None:
                problems.append(f"node {node.name}: no own address on {peer.address}'s subnet")
            if router is None or local is None:
                continue
            conf = frr_confs.get(router.name, "")
            is_bird = router.router_kind == "bird"
            router_as = (bird.parse_bird_asn if is_bird else frrconf.parse_frr_asn)(conf)
            if router_as != peer.asn:
                problems.append(
                    f"node {node.name}: peer {peer.address}@{peer.asn} but {router.name} is "
                    f"AS {router_as}"
                )
            neighbors = (bird.parse_bird_neighbors if is_bird else frrconf.parse_frr_neighbors)(
                conf
            )
            if neighbors.get(local) != node.bgp.asn:
                conf_name, line = (
                    ("bird.conf", f"neighbor {local} as {node.bgp.asn}")
                    if is_bird
                    else ("frr.conf", f"neighbor {local} remote-as {node.bgp.asn}")
                )
                problems.append(f"node {node.name}: {router.name}'s {conf_name} has no '{line}'")
    return problems
