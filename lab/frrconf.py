"""FRR's configuration files read as data: the integrated ``frr.conf`` and ``daemons``.

Why a module of its own: the topology loader checks each router's ``frr.conf`` against the
nodes that peer with it (addresses, AS, neighbors) and the runner starts the daemons the
``daemons`` file switches on; both only need these few facts, not an FRR config model.
Pure functions of the file text.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_frr_addresses(text: str) -> tuple[tuple[str, IPInterface], ...]:
    """(interface, address) from ``interface X`` / ``ip[v6] address A/L`` in frr.conf."""
    out: list[tuple[str, IPInterface]] = []
    current: str | None = None
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("!"):
            continue
        if not raw[0].isspace():  # a top-level line opens or closes an interface block
            current = words[1] if words[0] == "interface" and len(words) > 1 else None
        elif current and words[0] in ("ip", "ipv6") and len(words) >= 3 and words[1] == "address":
            try:
                out.append((current, ipaddress.ip_interface(words[2])))
            except ValueError:
                continue
    return tuple(out)


def parse_frr_neighbors(text: str) -> dict[IPAddress, int]:
    """``neighbor <address> remote-as <asn>`` lines of frr.conf."""
    out: dict[IPAddress, int] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "neighbor" and words[2] == "remote-as":
            try:
                out[ipaddress.ip_address(words[1])] = int(words[3])
            except ValueError:
                continue
    return out


def parse_frr_asn(text: str) -> int | None:
    """The AS of ``router bgp <asn>`` in frr.conf (the default VRF's), if any."""
    match = re.search(r"^router bgp (\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def parse_daemons(text: str) -> tuple[str, ...]:
    """Daemons switched on (``name=yes``) in an FRR ``daemons`` file."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and value.strip().strip("\"'") == "yes" and re.fullmatch(r"[a-z0-9]+d", key):
            out.append(key)
    return tuple(out)
