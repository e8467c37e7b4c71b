"""Parsers for the scalar value syntaxes MetalLB configs use.

Each returns the parsed value or raises ``ValueError`` with a message meant for the user;
the object parsers attach the object and field path.
"""

from __future__ import annotations

import ipaddress
import re

from exalb.config.limits import describe
from exalb.config.model import IPAddress, IPNetwork

MAX_ASN = 2**32 - 1


def _quoted(value: object) -> str:
    """A text value in double quotes, as MetalLB prints addresses; others described."""
    if isinstance(value, str) and len(value) <= 80:
        return f'"{value}"'
    return describe(value)


def _address(text: str) -> IPAddress:
    """One address; a zone (``fe80::1%eth0``) is refused: ``2001:db8::5%x`` is another
    ``IPv6Address`` than ``2001:db8::5`` although both are one address on the wire."""
    if "%" in text:
        raise ValueError("has a zone (%...); zones are not allowed here")
    return ipaddress.ip_address(text)


def parse_addresses(text: object) -> tuple[IPNetwork, ...]:
    """A CIDR (``198.18.0.0/28``) or a range ``first-last`` summarised into minimal CIDRs.

    As in MetalLB, host bits of a CIDR are ignored and spaces around the dash are allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{_quoted(text)} is not a CIDR or an a-b range")
    text = text.strip()
    if "%" in text:
        raise ValueError(f"{_quoted(text)} has a zone (%...); pools take plain addresses")
    if "-" in text:
        first_s, _, last_s = text.partition("-")
        try:
            first = _address(first_s.strip())
            last = _address(last_s.strip())
        except ValueError:
            raise ValueError(f"{_quoted(text)} is not a CIDR or an a-b range") from None
        if first.version != last.version:
            raise ValueError(f"range {_quoted(text)} mixes IPv4 and IPv6")
        if int(first) > int(last):
            raise ValueError(f"range {_quoted(text)} starts after it ends")
        return tuple(ipaddress.summarize_address_range(first, last))
    if "/" not in text:
        raise ValueError(
            f"{_quoted(text)} is not a CIDR or an a-b range (write a single address as "
            f"{text[:80]}/32 or /128)"
        )
    try:
        return (ipaddress.ip_network(text, strict=False),)
    except ValueError:
        raise ValueError(f"{_quoted(text)} is not a CIDR or an a-b range") from None


def parse_ip(value: object) -> IPAddress:
    """An IP address; with a zone (``%eth0``) it is refused (see :func:`_address`)."""
    if not isinstance(value, str):
        raise ValueError(f"{describe(value)} is not an IP address")
    try:
        return _address(value.strip())
    except ValueError as exc:
        why = "; zones are not allowed" if "zone" in str(exc) else ""
        raise ValueError(f"{describe(value)} is not an IP address{why}") from None


def parse_asn(value: object, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{describe(value)} is not an AS number (0..{MAX_ASN})")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_ASN:
        raise ValueError(f"AS number {describe(value)} is out of range ({low}..{MAX_ASN})")
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
#: Go's ``time.Duration`` is int64 nanoseconds: about 292 years; longer is an error there.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def parse_duration(value: object) -> float:
    """A Go duration string (``90s``, ``1m30s``, ``1.5m``), as Kubernetes metav1.Duration.

    Bounded as Go bounds it: a total beyond :data:`MAX_DURATION_SECONDS` is refused (a
    400-digit hold time once overflowed ``round``)."""
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise ValueError(f"{describe(value)} is not a duration such as 90s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"{describe(value)} is not a duration such as 90s or 1m30s")
        if len(m.group(1)) > 30:
            raise ValueError(f"{describe(value)} is out of range (at most about 292 years)")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not total <= MAX_DURATION_SECONDS:
        raise ValueError(f"{describe(value)} is out of range (at most about 292 years)")
    return total


# Bounded digit runs: a 5,000-digit part must be "not a community", not an int() error.
_STANDARD_COMMUNITY = re.compile(r"^(\d{1,10}):(\d{1,10})$")
_LARGE_COMMUNITY = re.compile(r"^large:(\d{1,10}):(\d{1,10}):(\d{1,10})$")


def parse_community(value: str) -> tuple[str, str]:
    """``a:b`` (16-bit halves) → ("standard", "a:b"); ``large:a:b:c`` → ("large", "a:b:c")."""
    m = _STANDARD_COMMUNITY.match(value)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > 0xFFFF or b > 0xFFFF:
            raise ValueError(f"community {describe(value)}: each half must be 0..65535")
        return "standard", f"{a}:{b}"
    m = _LARGE_COMMUNITY.match(value)
    if m:
        parts = [int(g) for g in m.groups()]
        if any(p > MAX_ASN for p in parts):
            raise ValueError(f"large community {describe(value)}: each part must be 0..{MAX_ASN}")
        return "large", ":".join(str(p) for p in parts)
    raise ValueError(
        f"{describe(value)} is not a community (a:b or large:a:b:c) nor a known Community alias"
    )


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def is_label_key(key: str) -> bool:
    return len(key) <= 316 and bool(_LABEL_KEY.match(key))
