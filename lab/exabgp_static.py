"""A minimal ExaBGP config with static routes, rendered from a topology node's labels.

Why it exists: lab tests of the runner itself (and quick manual checks) need an ExaBGP that
announces a fixed route without the product's speaker. The product's real renderer lives in
``speaker/exabgp/``; this one only knows static routes with ``next-hop self``.
One neighbor per peer; a route goes to the peers of its own address family (docs/exabgp.md,
"Limitations": ``next-hop self`` resolves to the session's family).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from lab.topology import Node


def render_static_config(node: Node, routes: Iterable[str], hold_time: int = 3) -> str:
    """ExaBGP config for ``node`` announcing ``routes`` (prefixes) to all its peers."""
    if node.bgp is None:
        raise ValueError(f"node {node.name} has no exalb.bgp.* labels")
    prefixes = [ipaddress.ip_network(r) for r in routes]
    blocks = []
    for peer in node.bgp.peers:
        local = node.local_address_for(peer.address)
        if local is None:
            raise ValueError(f"node {node.name}: no local address towards {peer.address}")
        family = "ipv4" if peer.address.version == 4 else "ipv6"
        lines = [
            f"neighbor {peer.address} {{",
            f"    router-id {node.bgp.router_id};",
            f"    local-address {local};",
            f"    local-as {node.bgp.asn};",
            f"    peer-as {peer.asn};",
            f"    hold-time {hold_time};",
            f"    family {{ {family} unicast; }}",
        ]
        mine = [p for p in prefixes if p.version == peer.address.version]
        if mine:
            lines.append("    static {")
            lines += [f"        route {p} next-hop self;" for p in mine]
            lines.append("    }")
        lines.append("}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
