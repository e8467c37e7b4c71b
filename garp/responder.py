"""Answers on the wire: ARP replies, NAs, gratuitous bursts and opt-in echo replies.

The responder holds no ownership logic: it asks the engine's ``answering`` set, which is
re-read for every frame, so a lost IP stops being answered with the very next frame. It
reports foreign claims (another MAC announcing an IP we answer) back to the engine. Every
lookup per frame is a dict or set lookup (the engine indexes the state by IP), so a frame
costs the same with 10 IPs or 10,000, and junk for unknown IPs is dropped after one lookup.

No rate limit on answers: they are one-for-one with requests (no amplification), and a
router that lost its cache legitimately asks for every IP at once.

Opt-in ping: the reply means "the node that answers ARP for this IP is alive", nothing about
the Service's health. When the VIP is configured locally (e.g. on ``lo``) the kernel
already answers echo requests, so the sidecar stays quiet to avoid duplicate replies; when it
is not, the sidecar answers from user space with the VIP as source.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from exalb.config.model import IPAddress
from exalb.contracts.l2_state import DesiredState
from garp import log
from garp import packets as p
from garp.failover import Engine
from garp.links import PACKET_OUTGOING, Link, local_addresses, open_link, select_interfaces
from garp.metrics import Metrics

PACKET_HOST = 0


class Responder:
    def __init__(self, engine: Engine, metrics: Metrics, excludes: tuple[str, ...]) -> None:
        self.engine = engine
        self.metrics = metrics
        self.excludes = excludes
        self.links: dict[str, Link] = {}
        self.local: set[IPAddress] = set()
        self.send_errors = 0
        self._applied: dict[str, tuple[Link, DesiredState | None]] = {}
        self.log = log.get_logger()

    # --- interfaces ---------------------------------------------------------------------

    def rescan(self, names: Iterable[str]) -> tuple[list[Link], list[Link]]:
        """Open sockets on new allowed links and close vanished ones; (opened, closed)."""
        wanted = set(select_interfaces(names, self.excludes))
        closed = [self.links.pop(n) for n in sorted(set(self.links) - wanted)]
        for link in closed:
            link.close()
        opened: list[Link] = []
        for name in sorted(wanted - set(self.links)):
            new = open_link(name)
            if new is not None:
                self.links[name] = new
                opened.append(new)
        for link in self.links.values():
            try:
                link.refresh_mac()
            except OSError:
                continue
        self.local = local_addresses()
        self.apply_state()
        return opened, closed

    def drop(self, link: Link) -> None:
        """Forget a link whose sockets failed (device deleted); the next rescan may reopen."""
        if self.links.get(link.name) is link:
            del self.links[link.name]
        link.close()

    def apply_state(self) -> None:
        """Per-link multicast groups and echo sockets for the current state (only on links
        that have not seen this state yet: a rescan must not walk every IP again)."""
        state = self.engine.state
        for link in self.links.values():
            done = self._applied.get(link.name)
            if done is not None and done[0] is link and done[1] is state:
                continue
            v6 = [
                e.ip
                for e in (state.ips if state else ())
                if isinstance(e.ip, ipaddress.IPv6Address) and _allowed(e.interfaces, link)
            ]
            complete = link.set_groups(v6)
            try:
                link.set_echo4(bool(state and state.ping))
            except OSError as exc:
                self.log.warning("echo socket failed", interface=link.name, error=str(exc))
                complete = False
            if complete:  # else retried at the next rescan
                self._applied[link.name] = (link, state)

    def links_for(self, ip: IPAddress) -> list[Link]:
        entry = self.engine.entry(ip)
        if entry is None:
            return []
        return [lk for lk in self.links.values() if _allowed(entry.interfaces, lk)]

    # --- sending ------------------------------------------------------------------------

    def _send(self, link: Link, frame: bytes) -> bool:
        # Send each frame on the socket of its own ethertype, so skb->protocol is right.
        etype = int.from_bytes(frame[12:14], "big")
        sock = (
            link.v6
            if etype == p.ETH_P_IPV6
            else (link.v4 or link.arp)
            if etype == p.ETH_P_IP
            else link.arp
        )
        try:
            sock.send(frame)
        except OSError:
            self.send_errors += 1  # link down / gone: the burst or the next answer retries
            return False
        return True

    def announce(self, ip: IPAddress) -> int:
        """One round of the gratuitous burst on every allowed link; frames sent."""
        sent = 0
        for link in self.links_for(ip):
            if isinstance(ip, ipaddress.IPv4Address):
                frames = [p.garp_request(link.mac, ip), p.garp_reply(link.mac, ip)]
            else:
                frames = [p.unsolicited_na(link.mac, ip)]
            sent += sum(self._send(link, f) for f in frames)
        if sent:
            self.metrics.of(self.metrics.gratuitous, ip).inc(sent)
        return sent

    # --- receiving ----------------------------------------------------------------------

    def handle(self, link: Link, frame: bytes, pkttype: int, now: float) -> None:
        if pkttype == PACKET_OUTGOING or self.engine.state is None:
            return
        etype = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
        if etype == p.ETH_P_ARP:
            self._arp(link, frame, now)
        elif etype == p.ETH_P_IPV6:
            self._icmp6(link, frame, pkttype, now)
        elif etype == p.ETH_P_IP and pkttype == PACKET_HOST:
            self._echo4(link, frame)

    def _mine(self, mac: bytes | None) -> bool:
        return mac is not None and any(lk.mac == mac for lk in self.links.values())

    def _may_answer(self, ip: IPAddress, link: Link) -> bool:
        entry = self.engine.entry(ip)
        return (
            entry is not None and ip in self.engine.answering and _allowed(entry.interfaces, link)
        )

    def _known(self, ip: IPAddress) -> bool:
        return self.engine.entry(ip) is not None

    def _arp(self, link: Link, frame: bytes, now: float) -> None:
        arp = p.parse_arp(frame)
        if arp is None:
            return
        if (arp.gratuitous or arp.op == p.ARP_REPLY) and arp.spa in self.engine.answering:
            if not self._mine(arp.sha):
                self.metrics.of(self.metrics.conflicts, arp.spa).inc()
                self.engine.foreign_claim(arp.spa, now)
            return
        if arp.op != p.ARP_REQUEST or arp.gratuitous or not self._known(arp.tpa):
            return
        self.metrics.of(self.metrics.requests, arp.tpa).inc()
        if self._may_answer(arp.tpa, link) and self._send(link, p.arp_reply(arp, link.mac)):
            self.metrics.of(self.metrics.responses, arp.tpa).inc()

    def _icmp6(self, link: Link, frame: bytes, pkttype: int, now: float) -> None:
        msg = p.parse_icmp6(frame)
        if msg is None:
            return
        if msg.type == p.ICMP6_NS:
            ns = p.parse_ns(msg)
            if ns is None or not self._known(ns.target):
                return
            self.metrics.of(self.metrics.requests, ns.target).inc()
            if self._may_answer(ns.target, link) and self._send(link, p.na_reply(ns, link.mac)):
                self.metrics.of(self.metrics.responses, ns.target).inc()
        elif msg.type == p.ICMP6_NA:
            na = p.parse_na(msg)
            claimed = na is not None and na.target in self.engine.answering
            if na is not None and claimed and not self._mine(na.tlla or na.eth_src):
                self.metrics.of(self.metrics.conflicts, na.target).inc()
                self.engine.foreign_claim(na.target, now)
        elif (
            msg.type == p.ICMP6_ECHO_REQUEST
            and pkttype == PACKET_HOST
            and self._echo_allowed(msg.dst, link)
        ):
            reply = p.echo6_reply(msg, link.mac)
            if reply is not None and self._send(link, reply):
                self.metrics.of(self.metrics.echo, msg.dst).inc()

    def _echo4(self, link: Link, frame: bytes) -> None:
        req = p.parse_echo4(frame)
        ok = req is not None and self._echo_allowed(req.dst, link)
        if req is not None and ok and self._send(link, p.echo4_reply(req, link.mac)):
            self.metrics.of(self.metrics.echo, req.dst).inc()

    def _echo_allowed(self, ip: IPAddress, link: Link) -> bool:
        state = self.engine.state
        return bool(state and state.ping) and ip not in self.local and self._may_answer(ip, link)


def _allowed(interfaces: tuple[str, ...], link: Link) -> bool:
    return not interfaces or link.name in interfaces


def desired_ips(state: DesiredState | None) -> set[IPAddress]:
    return {e.ip for e in state.ips} if state else set()
