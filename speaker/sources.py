"""Fill in each BGPPeer's local address (``sourceAddress``) from the kernel's route choice.

Why: without ``local-address`` ExaBGP learns its address from the TCP connection, but only
on connect. A ``reload`` (needed whenever any peer of the node changes) replaces the neighbor
object with one whose local address is unknown again while the session stays up, and from
then on every ``announce ... next-hop self`` to that neighbor fails inside ExaBGP 5.0.15
("'NoneType' object has no attribute 'afi'", measured in the lab: the new Service of
``test_ipv6_and_new_peer_or_service_never_resets_a_session``). Rendering the address
explicitly makes the neighbor definition complete and stable across reloads.

The address is the one the kernel would pick to reach the peer (what ExaBGP's own connect
would use, and what native MetalLB's FRR uses when ``sourceAddress`` is unset): a UDP
``connect`` does the route lookup and sends nothing. The speaker runs in the node's network
namespace (hostNetwork), so the lookup sees the node's routes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Callable, Iterable

from exalb.config.model import IPAddress, Peer

Resolver = Callable[[IPAddress], IPAddress | None]


def kernel_source_address(peer: IPAddress) -> IPAddress | None:
    """The source address the kernel would use towards ``peer`` (None: no route)."""
    family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(peer), 179))
            return ipaddress.ip_address(s.getsockname()[0])
        except (OSError, ValueError):
            return None


def with_source_addresses(peers: Iterable[Peer], resolve: Resolver) -> tuple[Peer, ...]:
    """Peers without ``source_address`` get the resolved one (unchanged when unresolvable)."""
    out = []
    for peer in peers:
        addr = resolve(peer.peer_address) if peer.source_address is None else None
        if addr is not None and addr.version == peer.peer_address.version:
            out.append(dataclasses.replace(peer, source_address=addr))
        else:
            out.append(peer)
    return tuple(out)
