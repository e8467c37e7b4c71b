"""What a topology node's ``exec:`` lines create: addresses and links (pure parsing).

Why the runner reads them: containerlab runs ``exec`` lines blindly, but the runner must
know a node's addresses (to derive BGP session addresses and check a plan) and the links a
node builds itself (a bridge, a dummy), so that a plan naming them is not refused.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_exec_addresses(commands: Iterable[str]) -> tuple[tuple[str, IPInterface], ...]:
    """(interface, address) for every ``ip [-4|-6] addr add|replace A/L dev IF`` line."""
    out: list[tuple[str, IPInterface]] = []
    for command in commands:
        words = shlex.split(command)
        if len(words) < 2 or words[0] != "ip":
            continue
        rest = [w for w in words[1:] if w not in ("-4", "-6")]
        if len(rest) < 3 or rest[0] not in ("a", "addr", "address"):
            continue
        if rest[1] not in ("add", "replace", "change"):
            continue
        try:
            iface = ipaddress.ip_interface(rest[2])
            dev = rest[rest.index("dev") + 1]
        except (ValueError, IndexError):
            continue
        out.append((dev, iface))
    return tuple(out)


def parse_exec_links(commands: Iterable[str]) -> tuple[str, ...]:
    """Interfaces a node creates itself: ``ip link add NAME ...`` (a bridge, a dummy)."""
    out: list[str] = []
    for command in commands:
        words = shlex.split(command)
        if words[:3] == ["ip", "link", "add"] and len(words) > 3:
            out.append(words[4] if words[3] == "name" and len(words) > 4 else words[3])
    return tuple(out)
