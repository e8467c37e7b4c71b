"""Interfaces the sidecar works on, and their AF_PACKET sockets (stdlib only, CAP_NET_RAW).

Which interfaces: every Ethernet-type link (``sll_hatype`` 1, read from the bound socket,
not sysfs, because sysfs follows the mount namespace, docs/lab.md, "Namespace pitfalls") whose name
does not fully match one of the exclude patterns. The default patterns are MetalLB's list of
container/overlay devices; the list is an option because a lab's or a host's real segment
may be a veth or a bridge. "Non-virtual" is approximated by that list on purpose: bonds,
VLANs and bridges are virtual devices that very often *are* the segment.

Per link we keep up to three sockets, each bound to one ethertype with a classic BPF filter
so that the kernel hands user space only what we may answer: all ARP; IPv6 only ICMPv6
NS/NA/echo-request; IPv4 only ICMP echo-request (only when ping is enabled). Without the
filters a busy node would copy every IPv6 packet into the sidecar.

For NDP the link joins the solicited-node group of each IPv6 VIP (see ``set_groups``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exalb.config.model import IPAddress
from garp.packets import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, multicast_mac, solicited_node

DEFAULT_EXCLUDES = (
    r"docker.*",
    r"cbr.*",
    r"dummy.*",
    r"virbr.*",
    r"lxcbr.*",
    r"veth.*",
    r"lo",
    r"cali.*",
    r"tunl.*",
    r"flannel.*",
    r"kube-ipvs.*",
    r"cni.*",
    r"vxlan.*",
    r"nodelocaldns.*",
)

ARPHRD_ETHER = 1
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
SO_ATTACH_FILTER = 26

# cBPF opcodes
_LDB_ABS, _LDH_ABS, _LDB_IND, _LDXB_MSH = 0x30, 0x28, 0x50, 0xB1
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06
_ACCEPT = 0x40000

# IPv6: next header ICMPv6 and type NS (135), NA (136) or echo request (128).
_V6_FILTER = [
    (_LDB_ABS, 0, 0, 20),
    (_JEQ, 0, 5, 58),
    (_LDB_ABS, 0, 0, 54),
    (_JEQ, 2, 0, 135),
    (_JEQ, 1, 0, 136),
    (_JEQ, 0, 1, 128),
    (_RET, 0, 0, _ACCEPT),
    (_RET, 0, 0, 0),
]
# IPv4: protocol ICMP, not a fragment, ICMP type echo request (8).
_V4_FILTER = [
    (_LDB_ABS, 0, 0, 23),
    (_JEQ, 0, 6, 1),
    (_LDH_ABS, 0, 0, 20),
    (_JSET, 4, 0, 0x1FFF),
    (_LDXB_MSH, 0, 0, 14),
    (_LDB_IND, 0, 0, 14),
    (_JEQ, 0, 1, 8),
    (_RET, 0, 0, _ACCEPT),
    (_RET, 0, 0, 0),
]


def select_interfaces(names: Iterable[str], excludes: Sequence[str]) -> list[str]:
    """Names not fully matching any exclude pattern (pure)."""
    pats = [re.compile(p) for p in excludes]
    return sorted(n for n in names if not any(p.fullmatch(n) for p in pats))


def local_addresses() -> set[IPAddress]:
    """Addresses configured in this network namespace (from /proc/net, which is per-netns).

    Used to decide whether the kernel already answers ICMP echo for a VIP (VIP on ``lo``)
    or the sidecar has to. IPv4 comes from the LOCAL entries of ``fib_trie``.
    """
    out: set[IPAddress] = set()
    try:
        with open("/proc/net/fib_trie") as f:
            last: str | None = None
            for line in f:
                s = line.strip()
                if s.startswith(("|--", "+--")):
                    last = s.split()[1]
                elif "/32 host LOCAL" in s and last:
                    out.add(ipaddress.ip_address(last))
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.add(ipaddress.IPv6Address(bytes.fromhex(hexaddr)))
    except (OSError, ValueError):
        pass
    return out


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    insns = b"".join(struct.pack("HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def raw_socket_refusal() -> str | None:
    """Why this process may not open AF_PACKET sockets (no CAP_NET_RAW), or None.

    Without it every link would silently be skipped and the node would answer no ARP/NDP;
    a sidecar that says so and exits is visible (a restarting container) instead."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError as exc:
        return str(exc)
    except OSError:
        return None  # e.g. no AF_PACKET at all: every link reports its own error
    return None


def _packet_socket(
    name: str, proto: int, prog: list[tuple[int, int, int, int]] | None
) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    try:
        if prog is not None:
            attach_filter(sock, prog)
        sock.bind((name, proto))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Link:
    """One interface and its sockets."""

    name: str
    index: int
    mac: bytes
    arp: socket.socket
    v6: socket.socket
    v4: socket.socket | None = None
    groups: set[ipaddress.IPv6Address] = field(default_factory=set)
    mcast6: socket.socket | None = None

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.arp, self.v6, self.v4) if s is not None]

    def close(self) -> None:
        for s in [*self.sockets(), self.mcast6]:
            if s is not None:
                s.close()

    def refresh_mac(self) -> bool:
        """Re-read the MAC (it can change, e.g. bond failover); True if it did."""
        addr = self.arp.getsockname()[4]
        if len(addr) >= 6 and addr[:6] != self.mac:
            self.mac = addr[:6]
            return True
        return False

    def set_echo4(self, enabled: bool) -> None:
        if enabled and self.v4 is None:
            self.v4 = _packet_socket(self.name, ETH_P_IP, _V4_FILTER)
        elif not enabled and self.v4 is not None:
            self.v4.close()
            self.v4 = None

    def set_groups(self, ips: Iterable[ipaddress.IPv6Address]) -> bool:
        """Be a member of exactly the solicited-node groups of ``ips`` on this link.

        Joined through an IPv6 datagram socket (``IPV6_JOIN_GROUP``), so the kernel both
        programs the NIC's multicast filter and sends MLD reports: on MLD-snooping switches
        an AF_PACKET membership alone would never receive the solicitations. Falls back to
        ``PACKET_ADD_MEMBERSHIP`` (filter only) when IPv6 is disabled on the link. True when
        every group is joined (else the caller retries later).
        """
        wanted = {solicited_node(ip) for ip in ips}
        for group in self.groups - wanted:
            self._membership(group, join=False)
            self.groups.discard(group)
        for group in wanted - self.groups:
            if self._membership(group, join=True):
                self.groups.add(group)
        return self.groups == wanted

    def _membership(self, group: ipaddress.IPv6Address, *, join: bool) -> bool:
        if self.mcast6 is None and join:
            try:
                self.mcast6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            except OSError:
                self.mcast6 = None
        mreq6 = group.packed + struct.pack("@I", self.index)
        opt6 = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
        try:
            if self.mcast6 is not None:
                self.mcast6.setsockopt(socket.IPPROTO_IPV6, opt6, mreq6)
                return True
        except OSError:
            pass
        mreq = struct.pack("iHH8s", self.index, PACKET_MR_MULTICAST, 6, multicast_mac(group))
        opt = PACKET_ADD_MEMBERSHIP if join else PACKET_DROP_MEMBERSHIP
        try:
            self.v6.setsockopt(SOL_PACKET, opt, mreq)
        except OSError:
            return False
        return True


def open_link(name: str) -> Link | None:
    """Sockets for ``name``, or None when it is not an Ethernet link (or vanished)."""
    try:
        index = socket.if_nametoindex(name)
        arp = _packet_socket(name, ETH_P_ARP, None)
    except OSError:
        return None
    _ifname, _proto, _pkttype, hatype, addr = arp.getsockname()
    if hatype != ARPHRD_ETHER or len(addr) < 6:
        arp.close()
        return None
    try:
        v6 = _packet_socket(name, ETH_P_IPV6, _V6_FILTER)
    except OSError:
        arp.close()
        return None
    return Link(name=name, index=index, mac=addr[:6], arp=arp, v6=v6)
