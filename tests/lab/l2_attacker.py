"""An attacker on the L2 segment: raw frames with any source, capture and replay.

Used by ``tests/lab/test_l2_probe_security.py`` and ``bench/l2_scale.py``. Everything runs in
namespaces the caller created (``containerlab/l2-segment``, see ``tests/lab/l2_lab.py``);
sockets are opened inside them with :func:`lab.nsnet.in_netns` and closed by the caller.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from collections.abc import Callable

from garp import packets as pk

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def udp4_frame(
    eth_dst: bytes,
    eth_src: bytes,
    src: ipaddress.IPv4Address,
    dst: ipaddress.IPv4Address,
    sport: int,
    dport: int,
    payload: bytes,
) -> bytes:
    """An Ethernet/IPv4/UDP frame with whatever source address the attacker likes (UDP
    checksum 0 = none, which IPv4 allows)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src.packed, dst.packed
    )
    hdr = hdr[:10] + struct.pack("!H", pk.checksum(hdr)) + hdr[12:]
    return pk.ethernet(eth_dst, eth_src, pk.ETH_P_IP, hdr + udp)


def udp4_payload(frame: bytes) -> tuple[ipaddress.IPv4Address, int, bytes] | None:
    """(source address, destination port, payload) of an IPv4/UDP frame, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    at = 14 + ihl
    dport = int.from_bytes(frame[at + 2 : at + 4], "big")
    length = int.from_bytes(frame[at + 4 : at + 6], "big")
    src = ipaddress.IPv4Address(frame[26:30])
    return src, dport, frame[at + 8 : at + length]


def raw_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket on ``ifname`` seeing every frame (open it inside the namespace)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    return s


def capture(s: socket.socket, keep: Callable[[bytes, int], bool], duration: float) -> list[bytes]:
    """Frames on ``s`` for ``duration`` seconds that ``keep(frame, pkttype)`` accepts."""
    out: list[bytes] = []
    end = time.monotonic() + duration
    while (left := end - time.monotonic()) > 0:
        if select.select([s], [], [], left)[0]:
            frame, addr = s.recvfrom(65535)
            if keep(frame, addr[2]):
                out.append(frame)
    return out
