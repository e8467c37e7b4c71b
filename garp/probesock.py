"""The probe channel's UDP sockets: bound to the node's address, admitting only peers.

Each socket gets a classic BPF filter that accepts a datagram only when its source address
is one of the peers' (the other candidates' nodeIPs in the desired state), so junk from
anywhere else is dropped by the kernel: it never wakes the sidecar and, more importantly,
never fills the socket's receive buffer. A buffer full of junk would drop the peers' real
probes and acks while the loop is busy (reading a new state, say), and their silence would
read as death. The sidecar checks the source again in user space (and every message's tag);
the filter is the cheap first gate, not the only one.

Socket filters on UDP see the packet from its UDP header; the source address is read
relative to the network header (``SKF_NET_OFF``). Jumps in classic BPF reach 255
instructions at most, so each address gets its own small block ending in "accept"; a
program holds at most ``BPF_MAXINSNS`` (4096) instructions, enough for about 2,000 IPv4 or
450 IPv6 peers. Beyond that no filter is attached (everything is admitted, as without one)
and the caller logs it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from exalb.config.model import IPAddress
from garp.links import attach_filter

SKF_NET_OFF = -0x100000
BPF_MAXINSNS = 4096
SO_DETACH_FILTER = 27
_LD_W_ABS, _JEQ, _RET = 0x20, 0x15, 0x06
_ACCEPT, _DROP = 0x40000, 0

Program = list[tuple[int, int, int, int]]


def _net(offset: int) -> int:
    return (SKF_NET_OFF + offset) & 0xFFFFFFFF


def peer_filter(version: int, peers: Iterable[IPAddress]) -> Program | None:
    """A program admitting datagrams from ``peers`` of this IP version (pure); None when
    they do not fit in one program."""
    addrs = sorted({a for a in peers if a.version == version}, key=int)
    prog: Program = []
    if version == 4:
        prog.append((_LD_W_ABS, 0, 0, _net(12)))
        for a in addrs:
            prog += [(_JEQ, 0, 1, int(a)), (_RET, 0, 0, _ACCEPT)]
    else:
        for a in addrs:
            words = [int.from_bytes(a.packed[i : i + 4], "big") for i in range(0, 16, 4)]
            for k, w in enumerate(words):
                left = 2 * (3 - k)  # instructions after this compare, up to "accept"
                prog += [(_LD_W_ABS, 0, 0, _net(8 + 4 * k)), (_JEQ, 0, left + 1, w)]
            prog.append((_RET, 0, 0, _ACCEPT))
    prog.append((_RET, 0, 0, _DROP))
    return prog if len(prog) <= BPF_MAXINSNS else None


def open_probe_socket(addr: IPAddress, port: int, rcvbuf: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``addr``:``port`` that admits nobody until
    :func:`set_peers` says who (raises ``OSError``)."""
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if addr.version == 6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        set_peers(s, addr.version, ())
        s.bind((str(addr), port))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def set_peers(s: socket.socket, version: int, peers: Iterable[IPAddress]) -> bool:
    """Admit only ``peers``; False when there are too many for a filter (then everyone is
    admitted and only the user-space checks remain)."""
    prog = peer_filter(version, peers)
    if prog is None:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        return False
    attach_filter(s, prog)
    return True
