"""Packet builders and parsers, cross-checked with scapy (an independent implementation)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.inet import ICMP, IP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether  # noqa: E402

from garp import packets as p  # noqa: E402

MAC = p.mac_bytes("02:00:00:00:00:0a")
CLIENT = p.mac_bytes("02:00:00:00:00:14")
VIP = ipaddress.IPv4Address("198.51.100.50")
CIP = ipaddress.IPv4Address("198.51.100.20")
VIP6 = ipaddress.IPv6Address("2001:db8:50::50")
CIP6 = ipaddress.IPv6Address("2001:db8:50::20")


def test_arp_request_reply_roundtrip() -> None:
    req = p.parse_arp(p.arp_request(CLIENT, CIP, VIP))
    assert req is not None and req.op == p.ARP_REQUEST and not req.gratuitous
    reply = Ether(p.arp_reply(req, MAC))
    assert reply.dst == "02:00:00:00:00:14" and reply.src == "02:00:00:00:00:0a"
    assert reply[ARP].op == 2 and reply[ARP].psrc == str(VIP) and reply[ARP].pdst == str(CIP)
    assert reply[ARP].hwsrc == "02:00:00:00:00:0a" and reply[ARP].hwdst == reply.dst


def test_garp_both_forms_are_gratuitous_for_linux() -> None:
    req = Ether(p.garp_request(MAC, VIP))
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req[ARP].op == 1
    assert req[ARP].psrc == req[ARP].pdst == str(VIP) and req[ARP].hwdst == "ff:ff:ff:ff:ff:ff"
    rep = Ether(p.garp_reply(MAC, VIP))
    assert rep[ARP].op == 2 and rep[ARP].hwdst == rep[ARP].hwsrc  # tha == sha: no locktime
    parsed = p.parse_arp(bytes(rep))
    assert parsed is not None and parsed.gratuitous


def test_parse_arp_from_scapy_and_rejects_garbage() -> None:
    frame = bytes(Ether(src="02:00:00:00:00:14", dst="ff:ff:ff:ff:ff:ff") /
                  ARP(op=1, hwsrc="02:00:00:00:00:14", psrc=str(CIP), pdst=str(VIP)))  # fmt: skip
    arp = p.parse_arp(frame)
    assert arp is not None and arp.tpa == VIP and arp.sha == CLIENT
    assert p.parse_arp(frame[:30]) is None
    assert p.parse_arp(bytes(Ether() / IP())) is None


def test_unsolicited_na_fields() -> None:
    na = Ether(p.unsolicited_na(MAC, VIP6))
    assert na.dst == "33:33:00:00:00:01"
    assert na[IPv6].dst == "ff02::1" and na[IPv6].hlim == 255
    flags = na[ICMPv6ND_NA]
    assert (flags.R, flags.S, flags.O) == (0, 0, 1) and flags.tgt == str(VIP6)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:0a"
    # checksum as scapy computes it
    raw = bytes(na)
    na[ICMPv6ND_NA].cksum = None
    assert bytes(Ether(bytes(na))) == raw


def test_ns_parse_and_solicited_na() -> None:
    group = "ff02::1:ff00:50"
    ns = bytes(
        Ether(src="02:00:00:00:00:14", dst="33:33:ff:00:00:50")
        / IPv6(src=str(CIP6), dst=group, hlim=255)
        / ICMPv6ND_NS(tgt=str(VIP6))
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:14")
    )
    assert ns == p.neighbor_solicit(CLIENT, CIP6, VIP6)
    msg = p.parse_icmp6(ns)
    assert msg is not None
    sol = p.parse_ns(msg)
    assert sol is not None and sol.target == VIP6 and sol.slla == CLIENT
    na = Ether(p.na_reply(sol, MAC))
    assert na.dst == "02:00:00:00:00:14" and na[IPv6].dst == str(CIP6) and na[IPv6].hlim == 255
    assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (1, 1)  # O=1: replaces a stale MAC


def test_ns_validity_checks() -> None:
    base = (
        Ether() / IPv6(src=str(CIP6), dst="ff02::1:ff00:50", hlim=64) / ICMPv6ND_NS(tgt=str(VIP6))
    )
    msg = p.parse_icmp6(bytes(base))
    assert msg is not None and p.parse_ns(msg) is None  # hop limit must be 255
    bad = bytearray(p.neighbor_solicit(CLIENT, CIP6, VIP6))
    bad[-1] ^= 0xFF
    assert p.parse_icmp6(bytes(bad)) is None  # checksum


def test_dad_probe_answered_to_all_nodes() -> None:
    frame = bytes(
        Ether(src="02:00:00:00:00:14")
        / IPv6(src="::", dst="ff02::1:ff00:50", hlim=255)
        / ICMPv6ND_NS(tgt=str(VIP6))
    )
    msg = p.parse_icmp6(frame)
    assert msg is not None
    ns = p.parse_ns(msg)
    assert ns is not None
    na = Ether(p.na_reply(ns, MAC))
    assert na[IPv6].dst == "ff02::1" and na[ICMPv6ND_NA].S == 0


def test_parse_foreign_na() -> None:
    na = p.parse_icmp6(p.unsolicited_na(CLIENT, VIP6))
    assert na is not None
    adv = p.parse_na(na)
    assert adv is not None and adv.target == VIP6 and adv.tlla == CLIENT
    assert adv.flags & p.NA_OVERRIDE


def test_echo4_reply() -> None:
    req = bytes(
        Ether(src="02:00:00:00:00:14", dst="02:00:00:00:00:0a")
        / IP(src=str(CIP), dst=str(VIP))
        / ICMP(type=8, id=7, seq=3)
        / b"payload"
    )
    echo = p.parse_echo4(req)
    assert echo is not None and echo.dst == VIP
    rep = Ether(p.echo4_reply(echo, MAC))
    assert rep.dst == "02:00:00:00:00:14"
    assert rep[IP].src == str(VIP) and rep[IP].dst == str(CIP)
    assert rep[ICMP].type == 0 and rep[ICMP].id == 7 and rep[ICMP].seq == 3
    assert bytes(rep[ICMP].payload) == b"payload"
    raw = bytes(rep)
    rep[IP].chksum = None
    rep[ICMP].chksum = None
    assert bytes(Ether(bytes(rep))) == raw  # both checksums right


def test_echo6_reply() -> None:
    req = bytes(
        Ether(src="02:00:00:00:00:14", dst="02:00:00:00:00:0a")
        / IPv6(src=str(CIP6), dst=str(VIP6))
        / ICMPv6EchoRequest(id=5, seq=9, data=b"abc")
    )
    msg = p.parse_icmp6(req)
    assert msg is not None
    reply = p.echo6_reply(msg, MAC)
    assert reply is not None
    rep = Ether(reply)
    assert rep[IPv6].src == str(VIP6) and rep[ICMPv6EchoReply].id == 5
    assert rep[ICMPv6EchoReply].data == b"abc"
    raw = bytes(rep)
    rep[ICMPv6EchoReply].cksum = None
    assert bytes(Ether(bytes(rep))) == raw


def test_solicited_node_and_multicast_mac() -> None:
    assert str(p.solicited_node(VIP6)) == "ff02::1:ff00:50"
    assert p.multicast_mac(p.solicited_node(VIP6)) == p.mac_bytes("33:33:ff:00:00:50")


@given(st.binary(max_size=120))
def test_parsers_never_raise(data: bytes) -> None:
    for frame in (data, b"\x00" * 12 + b"\x08\x06" + data, b"\x00" * 12 + b"\x86\xdd" + data):
        p.parse_arp(frame)
        p.parse_echo4(frame)
        msg = p.parse_icmp6(frame)
        if msg is not None:
            p.parse_ns(msg)
            p.parse_na(msg)
