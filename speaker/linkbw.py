"""The BGP link-bandwidth extended community: weighted ECMP by ready local endpoints (pure).

With ``externalTrafficPolicy: Local`` a node only forwards to its own pods, so plain ECMP
gives a node with one pod as much traffic as a node with three. A BGPAdvertisement with the
annotation ``exalb.io/weighted-ecmp: "true"`` makes every node send, with each route of a
Local Service, the link-bandwidth extended community (draft-ietf-idr-link-bandwidth) in
proportion to its ready local endpoints; a router that honours it (FRR does, without any
configuration, when every multipath carries one) installs next-hop weights
``bandwidth * 100 / total``: 3 pods on n1 and 1 on n2 become weights 75 and 25.

Encoding choices, and why:

* **Type 0x40, subtype 0x04** (non-transitive, 2-octet AS): what ExaBGP 5.0 writes for
  ``extended-community bandwidth:<as>:<bytes/s>``. Non-transitive: the weights describe this
  hop only and must not leak beyond the router that peers with the nodes.
* **1 Mbit/s (125,000 bytes/s) per endpoint**: FRR's own reference value when it derives
  the bandwidth from a path count (``set extcommunity bandwidth num-multipaths``), so the
  figures read naturally in ``show bgp`` ("3.000 Mbps" = 3 endpoints). The value is an IEEE
  float; ExaBGP refuses more than 2^32-1, which caps a node at 34,359 endpoints.
* **AS**: the session's local AS, or AS_TRANS (23456, RFC 6793) when it does not fit in
  16 bits; receivers ignore it for the weight.
* **Rounded to float32** before it is written, so what exalb asks for is exactly what
  ExaBGP reports back in ``show adj-rib out`` (as ``0x4004<as><float>``) and the driver's
  diff never sees a phantom change.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

BYTES_PER_ENDPOINT = 125_000  # 1 Mbit/s
MAX_BYTES = 2**32 - 1  # ExaBGP's limit for the value
AS_TRANS = 23456
PREFIX = "bandwidth:"
_HEX_TYPE = "4004"  # type 0x40 (non-transitive, 2-octet AS), subtype 0x04


def _float32(value: float) -> int:
    (rounded,) = struct.unpack("!f", struct.pack("!f", value))
    return int(rounded)


def link_bandwidth(local_asn: int, endpoints: int) -> str:
    """``bandwidth:<as>:<bytes/s>`` for ``endpoints`` ready endpoints (at least one: a node
    that announces a Local Service has one, and a zero would read as "no bandwidth" and
    turn the whole prefix back to plain ECMP at FRR)."""
    asn = local_asn if 0 < local_asn <= 0xFFFF else AS_TRANS
    count = min(max(1, endpoints), MAX_BYTES // BYTES_PER_ENDPOINT)
    value = count * BYTES_PER_ENDPOINT
    while _float32(value) > MAX_BYTES:  # float32 may round up past the limit (one step)
        value -= BYTES_PER_ENDPOINT
    return f"{PREFIX}{asn}:{_float32(value)}"


def bandwidth_of(community: str) -> int | None:
    """The bytes/s of a ``bandwidth:<as>:<bytes/s>`` community; None for any other."""
    if not community.startswith(PREFIX):
        return None
    parts = community.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return int(parts[2])


def from_wire(text: str) -> str:
    """An extended community as ``show adj-rib out`` prints it, in exalb's spelling:
    ``0x4004FBF548B71B00`` → ``bandwidth:64501:375000``; anything else is kept (upper-case
    hex normalised), so it compares unequal to what exalb sends and is corrected."""
    if not text.lower().startswith("0x"):
        return text
    digits = text[2:].upper()
    if len(digits) != 16 or digits[:4] != _HEX_TYPE:
        return f"0x{digits}"
    try:
        asn, value = struct.unpack("!Hf", bytes.fromhex(digits[4:]))
    except ValueError:
        return f"0x{digits}"
    return f"{PREFIX}{asn}:{int(value)}"


def merge(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union of extended communities, but one link bandwidth only (the largest): two
    Services sharing one IP (same pods, MetalLB's rule for Local) or an aggregate must not
    send two bandwidths, which receivers would read inconsistently."""
    others: set[str] = set()
    best: tuple[int, str] | None = None
    for group in groups:
        for c in group:
            bw = bandwidth_of(c)
            if bw is None:
                others.add(c)
            elif best is None or (bw, c) > best:
                best = (bw, c)
    return tuple(sorted(others | ({best[1]} if best else set())))
