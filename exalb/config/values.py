"""Parsers for the scalar value syntaxes MetalLB configs use.

Each returns the parsed value or raises ``ValueError`` with a message meant for the user;
the object parsers attach the object and field path.
"""

from __future__ import annotations

import ipaddress
import re

from exalb.config.model import IPAddress, IPNetwork

MAX_ASN = 2**32 - 1


def parse_addresses(text: str) -> tuple[IPNetwork, ...]:
    """A CIDR (``198.18.0.0/28``) or a range ``first-last`` summarised into minimal CIDRs.

    As in MetalLB, host bits of a CIDR are ignored and spaces around the dash are allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'"{text}" is not a CIDR or an a-b range')
    text = text.strip()
    if "-" in text:
        first_s, _, last_s = text.partition("-")
        try:
            first = ipaddress.ip_address(first_s.strip())
            last = ipaddress.ip_address(last_s.strip())
        except ValueError:
            raise ValueError(f'"{text}" is not a CIDR or an a-b range') from None
        if first.version != last.version:
            raise ValueError(f'range "{text}" mixes IPv4 and IPv6')
        if int(first) > int(last):
            raise ValueError(f'range "{text}" starts after it ends')
        return tuple(ipaddress.summarize_address_range(first, last))
    if "/" not in text:
        raise ValueError(
            f'"{text}" is not a CIDR or an a-b range (write a single address as {text}/32 or /128)'
        )
    try:
        return (ipaddress.ip_network(text, strict=False),)
    except ValueError:
        raise ValueError(f'"{text}" is not a CIDR or an a-b range') from None


def parse_ip(value: object) -> IPAddress:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def parse_asn(value: object, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an AS number (0..{MAX_ASN})")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_ASN:
        raise ValueError(f"AS number {value} is out of range ({low}..{MAX_ASN})")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(value: object) -> float:
    """A Go duration string (``90s``, ``1m30s``, ``1.5m``), as Kubernetes metav1.Duration."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a duration such as 90s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 90s or 1m30s")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total


_STANDARD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^large:(\d+):(\d+):(\d+)$")


def parse_community(value: str) -> tuple[str, str]:
    """``a:b`` (16-bit halves) → ("standard", "a:b"); ``large:a:b:c`` → ("large", "a:b:c")."""
    m = _STANDARD_COMMUNITY.match(value)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > 0xFFFF or b > 0xFFFF:
            raise ValueError(f"community {value!r}: each half must be 0..65535")
        return "standard", f"{a}:{b}"
    m = _LARGE_COMMUNITY.match(value)
    if m:
        parts = [int(g) for g in m.groups()]
        if any(p > MAX_ASN for p in parts):
            raise ValueError(f"large community {value!r}: each part must be 0..{MAX_ASN}")
        return "large", ":".join(str(p) for p in parts)
    raise ValueError(
        f"{value!r} is not a community (a:b or large:a:b:c) nor a known Community alias"
    )


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def is_label_key(key: str) -> bool:
    return bool(_LABEL_KEY.match(key)) and len(key) <= 316
