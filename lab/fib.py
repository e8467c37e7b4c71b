"""Kernel FIB reads inside a lab namespace, over netlink, and waits that poll them.

Why netlink and a tight poll: announce-to-FIB is ~65 ms (docs/lab.md, "Waiting without sleeps"); a
dump is ~1 ms, so polling every 2 ms measures timings faithfully without sleeps that
hide them. Two route shapes exist: classic multipath (``RTA_MULTIPATH``, what zebra
writes with ``no zebra nexthop kernel enable``) and nexthop objects (``RTA_NH_ID``; the
kernel usually adds ``RTA_MULTIPATH``/``RTA_GATEWAY`` too, in its compat mode). When only
the nexthop id is present, its group is read with ``ip nexthop``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from lab import netns

POLL = 0.002
RTA_NH_ID = 30  # linux/rtnetlink.h
RTPROT_BGP = 186  # linux/rtnetlink.h: what zebra marks its BGP routes with
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Nexthop:
    """One path of a route: gateway address (None when on-link), output ifindex and weight
    (the kernel's ``rtnh_hops`` + 1: what ``ip route`` prints as ``weight``)."""

    gateway: str | None
    oif: int | None
    weight: int = 1


@dataclass(frozen=True)
class FibRoute:
    """A route of the main table as the kernel holds it."""

    prefix: IPNetwork
    nexthops: tuple[Nexthop, ...]
    nexthop_object: bool
    """True when the route points at a kernel nexthop object (``nhid``)."""
    protocol: int

    @property
    def gateways(self) -> frozenset[str]:
        return frozenset(n.gateway for n in self.nexthops if n.gateway)

    @property
    def weights(self) -> dict[str, int]:
        """Gateway → weight (weighted ECMP; all 1 for plain ECMP)."""
        return {n.gateway: n.weight for n in self.nexthops if n.gateway}


class RouteTimeoutError(AssertionError):
    """A wait for a FIB state ran out; the message says what was last seen."""


class Fib:
    """A netlink socket bound to one namespace; reuse it across polls (opening costs ~8 ms)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._ipr = IPRoute(netns=namespace)

    def close(self) -> None:
        self._ipr.close()

    def route(self, prefix: str | IPNetwork) -> FibRoute | None:
        """The main-table route for exactly ``prefix``, or None."""
        net = ipaddress.ip_network(prefix)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        for msg in self._ipr.get_routes(family=family, table=254):
            if msg["dst_len"] != net.prefixlen:
                continue
            dst = msg.get("RTA_DST") or ("0.0.0.0" if net.version == 4 else "::")
            if ipaddress.ip_address(dst) == net.network_address:
                return self._route(net, msg)
        return None

    def _route(self, net: IPNetwork, msg: Any) -> FibRoute:
        has_nhid = _has_nhid(msg)
        multipath = msg.get("RTA_MULTIPATH")
        if multipath:
            hops = tuple(
                Nexthop(_gateway(nh), nh.get("oif"), int(nh.get("hops") or 0) + 1)
                for nh in multipath
            )
        elif msg.get("RTA_GATEWAY") or msg.get("RTA_OIF"):
            hops = (Nexthop(_gateway(msg), msg.get("RTA_OIF")),)
        elif has_nhid:
            hops = _object_nexthops(self.namespace, net)
        else:
            hops = ()
        return FibRoute(net, hops, has_nhid, msg["proto"])

    def prefixes(self, version: int, protocol: int = RTPROT_BGP) -> set[str]:
        """Main-table prefixes of one IP version installed by ``protocol`` (default: BGP)."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        out = set()
        for msg in self._ipr.get_routes(family=family, table=254):
            if msg["proto"] == protocol:
                dst = msg.get("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
                out.add(f"{dst}/{msg['dst_len']}")
        return out

    def gateways(self, version: int = 4, protocol: int = RTPROT_BGP) -> dict[str, frozenset[str]]:
        """Every main-table route of one IP version installed by ``protocol``: prefix -> its
        gateways (one dump: what a recorder samples)."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        out = {}
        for msg in self._ipr.get_routes(family=family, table=254):
            if msg["proto"] != protocol:
                continue
            dst = msg.get("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
            net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}")
            out[str(net)] = self._route(net, msg).gateways
        return out

    def wait_route(
        self, prefix: str | IPNetwork, nexthops: int | None = None, timeout: float = 5.0
    ) -> FibRoute:
        """Poll until the route exists (with exactly ``nexthops`` paths if given)."""
        deadline = time.monotonic() + timeout
        while True:
            route = self.route(prefix)
            if route is not None and (nexthops is None or len(route.nexthops) == nexthops):
                return route
            if time.monotonic() > deadline:
                raise RouteTimeoutError(
                    f"{self.namespace}: {prefix} with {nexthops} nexthops not seen in "
                    f"{timeout}s; last: {route}"
                )
            time.sleep(POLL)

    def wait_no_route(self, prefix: str | IPNetwork, timeout: float = 5.0) -> None:
        """Poll until the route is gone."""
        deadline = time.monotonic() + timeout
        while (route := self.route(prefix)) is not None:
            if time.monotonic() > deadline:
                raise RouteTimeoutError(f"{self.namespace}: {prefix} still present: {route}")
            time.sleep(POLL)


def _gateway(msg: Any) -> str | None:
    gateway = msg.get("RTA_GATEWAY")
    if gateway:
        return str(gateway)
    via = msg.get("RTA_VIA")  # IPv4 route with an IPv6 next hop (RFC 5549)
    if isinstance(via, dict) and via.get("addr"):
        return str(via["addr"])
    return None


def _has_nhid(msg: Any) -> bool:
    """Whether the route carries RTA_NH_ID (pyroute2 0.9 leaves it undecoded: type 30)."""
    if msg.get("RTA_NH_ID") is not None:
        return True
    return any(
        name == "UNKNOWN"
        and isinstance(value, dict)
        and value.get("header", {}).get("type") == RTA_NH_ID
        for name, value in msg["attrs"]
    )


def _object_nexthops(namespace: str, net: IPNetwork) -> tuple[Nexthop, ...]:
    """Paths of a route that only names a nexthop object (kernel compat mode off).

    Rare (zebra with kernel nexthop groups *and* ``nexthop_compat_mode=0``), so ``ip -j``
    is good enough here; the id is read from ``ip route``, its members from ``ip nexthop``.
    """
    family = "-4" if net.version == 4 else "-6"
    out = netns.run(["ip", family, "-j", "-n", namespace, "route", "show", "exact", str(net)])
    routes = json.loads(out.stdout)
    if not routes or "nhid" not in routes[0]:
        return ()
    members = _nexthop(namespace, int(routes[0]["nhid"])).get("group") or [
        {"id": routes[0]["nhid"]}
    ]
    return tuple(
        Nexthop(info.get("gateway"), None, int(m.get("weight") or 1))
        for m, info in ((m, _nexthop(namespace, int(m["id"]))) for m in members)
    )


def _nexthop(namespace: str, nhid: int) -> dict[str, Any]:
    out = netns.run(["ip", "-j", "-n", namespace, "nexthop", "show", "id", str(nhid)]).stdout
    (obj,) = json.loads(out)
    return dict(obj)
