"""A pool's addresses of one family as a dense line of positions 0..size-1.

MetalLB walks a pool's CIDRs in the user's order and takes the first free address, skipping
``.0`` / ``.255`` when ``avoidBuggyIPs`` is set. Mapping the allocatable addresses onto
consecutive positions, in that same order, turns "first free address" into "first free
position", which a free-run index answers in O(log n) no matter how large the pool is (an
IPv6 /64 has 2**64 positions; nothing here enumerates them). Buggy addresses are left out of
the line arithmetically, so skipping them costs nothing either.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass

from exalb.config.model import Family, IPAddress, IPNetwork

_BLOCK = 256
_GOOD_PER_BLOCK = 254  # .1 .. .254


def _good_upto(x: int) -> int:
    """Number of addresses in [0, x] whose last octet is neither 0 nor 255."""
    if x < 0:
        return 0
    zeros = x // _BLOCK + 1
    maxes = (x - 255) // _BLOCK + 1 if x >= 255 else 0
    return x + 1 - zeros - maxes


def _good_nth(t: int) -> int:
    """The t-th (1-based) address with last octet neither 0 nor 255."""
    return (t - 1) // _GOOD_PER_BLOCK * _BLOCK + (t - 1) % _GOOD_PER_BLOCK + 1


@dataclass(frozen=True)
class _Segment:
    first: int
    last: int
    skip_buggy: bool
    offset: int  # position of this segment's first allocatable address
    size: int

    def position(self, value: int) -> int | None:
        if not self.first <= value <= self.last:
            return None
        if not self.skip_buggy:
            return self.offset + value - self.first
        if value % _BLOCK in (0, 255):
            return None
        return self.offset + _good_upto(value) - _good_upto(self.first - 1) - 1

    def address(self, pos: int) -> int:
        k = pos - self.offset
        if not self.skip_buggy:
            return self.first + k
        return _good_nth(_good_upto(self.first - 1) + k + 1)


class AddressSpace:
    """Positions ↔ addresses for one family of one pool (CIDRs in the user's order)."""

    def __init__(self, cidrs: tuple[IPNetwork, ...], family: Family, avoid_buggy: bool) -> None:
        self.family = family
        segments: list[_Segment] = []
        offset = 0
        for cidr in cidrs:
            first = int(cidr.network_address)
            last = int(cidr.broadcast_address)
            skip = avoid_buggy and family == 4
            size = (_good_upto(last) - _good_upto(first - 1)) if skip else last - first + 1
            if size:
                segments.append(_Segment(first, last, skip, offset, size))
            offset += size
        self.size = offset
        self._segments = segments
        self._offsets = [s.offset for s in segments]
        self._by_first = sorted(segments, key=lambda s: s.first)
        self._firsts = [s.first for s in self._by_first]

    def position(self, ip: IPAddress) -> int | None:
        """Position of ``ip``, or ``None`` when it is not allocatable in this space."""
        if ip.version != self.family:
            return None
        value = int(ip)
        i = bisect.bisect_right(self._firsts, value) - 1
        if i < 0:
            return None
        return self._by_first[i].position(value)

    def address(self, pos: int) -> IPAddress:
        i = bisect.bisect_right(self._offsets, pos) - 1
        value = self._segments[i].address(pos)
        if self.family == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)
