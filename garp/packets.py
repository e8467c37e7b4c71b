"""Pure builders and parsers for the frames the garp sidecar reads and writes.

Ethernet II frames only (VLAN tags are stripped by the kernel before AF_PACKET sees them on
the VLAN device). Parsers return ``None`` for anything that is not a well-formed packet of
the expected kind instead of raising: frames come from the wire and must never crash the
responder. No sockets here, so every byte can be checked in unit tests (and against scapy).

Choices that matter on the wire (docs/lab.md, "L2 facts", has the measurements):

* Gratuitous ARP is sent in both forms, a request (``who-has VIP tell VIP``, target MAC
  ff:ff:ff:ff:ff:ff) and a reply with target MAC = sender MAC. Linux treats both as
  gratuitous, which bypasses its 1 s ARP ``locktime``; a reply to ff:ff.. would not.
* Unsolicited NA: destination ff02::1, hop limit 255 (RFC 4861 drops anything else),
  Override=1 (O=0 leaves existing entries alone), Solicited=0, Router=0.
* Solicited NA: Solicited=1 and **Override=1**. MetalLB sends O=0. With O=0 a client that
  still holds the previous owner's MAC only marks its entry STALE and keeps using the dead
  MAC until neighbour unreachability detection gives up; with O=1 the answer replaces it.
  O=0 exists for anycast/proxy answers where several nodes may legitimately answer; an L2
  VIP has exactly one answering node at a time, so O=1 is the truthful flag.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

ARP_REQUEST = 1
ARP_REPLY = 2
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
ICMP6_NS = 135
ICMP6_NA = 136
ALL_NODES = ipaddress.IPv6Address("ff02::1")
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20
OPT_SLLA = 1
OPT_TLLA = 2

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return _ETH.pack(dst, src, ethertype) + payload


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


# --- ARP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Arp:
    op: int
    sha: bytes
    spa: ipaddress.IPv4Address
    tha: bytes
    tpa: ipaddress.IPv4Address
    eth_src: bytes = ZERO_MAC

    @property
    def gratuitous(self) -> bool:
        """A sender announcing itself (spa == tpa), in request or reply form."""
        return self.spa == self.tpa


def parse_arp(frame: bytes) -> Arp | None:
    if len(frame) < _ETH.size + _ARP.size:
        return None
    _dst, src, etype = _ETH.unpack_from(frame)
    if etype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETH.size)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return Arp(op, sha, ipaddress.IPv4Address(spa), tha, ipaddress.IPv4Address(tpa), eth_src=src)


def arp_frame(
    op: int,
    sha: bytes,
    spa: ipaddress.IPv4Address,
    *,
    tha: bytes,
    tpa: ipaddress.IPv4Address,
    eth_dst: bytes,
) -> bytes:
    body = _ARP.pack(1, ETH_P_IP, 6, 4, op, sha, spa.packed, tha, tpa.packed)
    return ethernet(eth_dst, sha, ETH_P_ARP, body)


def arp_request(sha: bytes, spa: ipaddress.IPv4Address, tpa: ipaddress.IPv4Address) -> bytes:
    """A plain ``who-has tpa tell spa`` broadcast (used by tests and tools)."""
    return arp_frame(ARP_REQUEST, sha, spa, tha=ZERO_MAC, tpa=tpa, eth_dst=BROADCAST)


def arp_reply(req: Arp, mac: bytes) -> bytes:
    """Unicast answer to ``req``: ``tpa is-at mac``, sent to the requester's MAC."""
    return arp_frame(ARP_REPLY, mac, req.tpa, tha=req.sha, tpa=req.spa, eth_dst=req.sha)


def garp_request(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    return arp_frame(ARP_REQUEST, mac, ip, tha=BROADCAST, tpa=ip, eth_dst=BROADCAST)


def garp_reply(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    return arp_frame(ARP_REPLY, mac, ip, tha=mac, tpa=ip, eth_dst=BROADCAST)


# --- IPv6 / ICMPv6 -------------------------------------------------------------------


@dataclass(frozen=True)
class Icmp6:
    eth_src: bytes
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    hop_limit: int
    type: int
    code: int
    body: bytes  # ICMPv6 message after type, code and checksum


def _pseudo6(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, length: int) -> bytes:
    return src.packed + dst.packed + struct.pack("!I3xB", length, 58)


def parse_icmp6(frame: bytes) -> Icmp6 | None:
    """An ICMPv6 message directly after the IPv6 header, checksum verified."""
    if len(frame) < 14 + 40 + 4:
        return None
    _dst, src_mac, etype = _ETH.unpack_from(frame)
    if etype != ETH_P_IPV6 or frame[14] >> 4 != 6:
        return None
    plen, nxt, hlim = struct.unpack_from("!HBB", frame, 18)
    if nxt != 58 or len(frame) < 54 + plen or plen < 4:
        return None
    src = ipaddress.IPv6Address(frame[22:38])
    dst = ipaddress.IPv6Address(frame[38:54])
    msg = frame[54 : 54 + plen]
    if checksum(_pseudo6(src, dst, plen) + msg) != 0:
        return None
    return Icmp6(src_mac, src, dst, hlim, msg[0], msg[1], msg[4:])


def icmp6_frame(
    eth_dst: bytes,
    eth_src: bytes,
    *,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    icmp_type: int,
    body: bytes,
    hop_limit: int = 255,
) -> bytes:
    msg = bytes([icmp_type, 0]) + b"\x00\x00" + body
    csum = checksum(_pseudo6(src, dst, len(msg)) + msg)
    msg = msg[:2] + struct.pack("!H", csum) + msg[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(msg), 58, hop_limit) + src.packed + dst.packed
    return ethernet(eth_dst, eth_src, ETH_P_IPV6, ip6 + msg)


def _options(data: bytes) -> dict[int, bytes] | None:
    opts: dict[int, bytes] = {}
    while data:
        if len(data) < 2 or data[1] == 0 or len(data) < data[1] * 8:
            return None
        opts.setdefault(data[0], data[2 : data[1] * 8])
        data = data[data[1] * 8 :]
    return opts


@dataclass(frozen=True)
class NeighborSolicit:
    eth_src: bytes
    src: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    slla: bytes | None


@dataclass(frozen=True)
class NeighborAdvert:
    eth_src: bytes
    src: ipaddress.IPv6Address
    target: ipaddress.IPv6Address
    flags: int
    tlla: bytes | None


def parse_ns(msg: Icmp6) -> NeighborSolicit | None:
    """RFC 4861 §7.1.1 validity checks that matter for a responder."""
    if msg.type != ICMP6_NS or msg.code != 0 or msg.hop_limit != 255 or len(msg.body) < 20:
        return None
    target = ipaddress.IPv6Address(msg.body[4:20])
    opts = _options(msg.body[20:])
    if opts is None or target.is_multicast:
        return None
    slla = opts.get(OPT_SLLA)
    if msg.src.is_unspecified and slla is not None:
        return None
    return NeighborSolicit(msg.eth_src, msg.src, target, slla[:6] if slla else None)


def parse_na(msg: Icmp6) -> NeighborAdvert | None:
    if msg.type != ICMP6_NA or msg.code != 0 or msg.hop_limit != 255 or len(msg.body) < 20:
        return None
    opts = _options(msg.body[20:])
    if opts is None:
        return None
    tlla = opts.get(OPT_TLLA)
    return NeighborAdvert(
        msg.eth_src,
        msg.src,
        ipaddress.IPv6Address(msg.body[4:20]),
        msg.body[0],
        tlla[:6] if tlla else None,
    )


def solicited_node(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip.packed[13:])


def multicast_mac(ip: ipaddress.IPv6Address) -> bytes:
    return b"\x33\x33" + ip.packed[12:]


def neighbor_solicit(
    mac: bytes, src: ipaddress.IPv6Address, target: ipaddress.IPv6Address
) -> bytes:
    """A multicast NS for ``target`` (used by tests and tools)."""
    group = solicited_node(target)
    body = b"\x00" * 4 + target.packed + bytes([OPT_SLLA, 1]) + mac
    return icmp6_frame(multicast_mac(group), mac, src=src, dst=group, icmp_type=ICMP6_NS, body=body)


def neighbor_advert(
    mac: bytes,
    target: ipaddress.IPv6Address,
    *,
    dst: ipaddress.IPv6Address,
    dst_mac: bytes,
    flags: int,
) -> bytes:
    """An NA for ``target`` with a TLLA option; the source address is the target itself."""
    body = struct.pack("!B3x", flags) + target.packed + bytes([OPT_TLLA, 1]) + mac
    return icmp6_frame(dst_mac, mac, src=target, dst=dst, icmp_type=ICMP6_NA, body=body)


def na_reply(ns: NeighborSolicit, mac: bytes) -> bytes:
    """Answer an NS. DAD probes (source ::) get S=0 to all-nodes, as RFC 4861 §7.2.4 says."""
    if ns.src.is_unspecified:
        return neighbor_advert(
            mac, ns.target, dst=ALL_NODES, dst_mac=multicast_mac(ALL_NODES), flags=NA_OVERRIDE
        )
    return neighbor_advert(
        mac,
        ns.target,
        dst=ns.src,
        dst_mac=ns.slla or ns.eth_src,
        flags=NA_SOLICITED | NA_OVERRIDE,
    )


def unsolicited_na(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    return neighbor_advert(
        mac, ip, dst=ALL_NODES, dst_mac=multicast_mac(ALL_NODES), flags=NA_OVERRIDE
    )


def echo6_reply(req: Icmp6, mac: bytes) -> bytes | None:
    """Echo reply from the VIP (the request's destination) back to the sender's MAC."""
    if req.type != ICMP6_ECHO_REQUEST or req.code != 0 or req.dst.is_multicast:
        return None
    return icmp6_frame(
        req.eth_src,
        mac,
        src=req.dst,
        dst=req.src,
        icmp_type=ICMP6_ECHO_REPLY,
        body=req.body,
        hop_limit=64,
    )


# --- IPv4 ICMP echo ------------------------------------------------------------------


@dataclass(frozen=True)
class Echo4:
    eth_src: bytes
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    rest: bytes  # identifier, sequence and payload


def parse_echo4(frame: bytes) -> Echo4 | None:
    if len(frame) < 14 + 20 + 8:
        return None
    _dst, src_mac, etype = _ETH.unpack_from(frame)
    if etype != ETH_P_IP or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total, frag, proto = struct.unpack_from("!H2xH1xB", frame, 16)
    if ihl < 20 or proto != 1 or frag & 0x3FFF or total < ihl + 8 or len(frame) < 14 + total:
        return None
    icmp = frame[14 + ihl : 14 + total]
    if icmp[0] != 8 or icmp[1] != 0 or checksum(icmp) != 0:
        return None
    return Echo4(
        src_mac,
        ipaddress.IPv4Address(frame[26:30]),
        ipaddress.IPv4Address(frame[30:34]),
        icmp[4:],
    )


def echo4_reply(req: Echo4, mac: bytes) -> bytes:
    icmp = b"\x00\x00\x00\x00" + req.rest
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0,
                      req.dst.packed, req.src.packed)  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return ethernet(req.eth_src, mac, ETH_P_IP, hdr + icmp)
