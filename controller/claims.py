"""Who holds which IP: the allocator's bookkeeping (pure, no decisions).

Every IP in use has one :class:`Claim` per Service holding it (several when MetalLB's sharing
rules allow). Per pool and family the table keeps the pool's addresses as a dense line of
positions (:mod:`controller.addrspace`) with a free-run index (:mod:`controller.freespace`)
and, per sharing key, the positions already shared under that key, so "the first usable
address of a pool" costs O(log n) at any pool size. Which IPs to take is decided elsewhere
(:mod:`controller.new_allocation`, :mod:`controller.allocator`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from controller.addrspace import AddressSpace
from controller.families import family_of
from controller.freespace import FreeSpace
from exalb.config.model import Config, Family, IPAddress, Pool
from exalb.views import ServiceView


@dataclass(frozen=True)
class Claim:
    """One Service's use of one IP, with what MetalLB's sharing rules look at."""

    service: str
    sharing_key: str | None
    backend_key: str
    ports: frozenset[tuple[str, int]]

    def compatible(self, other: Claim) -> bool:
        """Same key, same backend key, and no (protocol, port) used twice."""
        if self.service == other.service:
            return True
        return (
            bool(self.sharing_key)
            and self.sharing_key == other.sharing_key
            and self.backend_key == other.backend_key
            and not (self.ports & other.ports)
        )


def claim_of(svc: ServiceView) -> Claim:
    return Claim(svc.key, svc.sharing_key, svc.backend_key, frozenset(svc.ports))


@dataclass(frozen=True)
class PoolUsage:
    """Exact per pool and family usage (Python ints: an IPv6 /64 does not overflow)."""

    pool: str
    family: Family
    capacity: int
    in_use: int


@dataclass
class _PoolFamily:
    space: AddressSpace
    free: FreeSpace
    shared: dict[str, SortedList[int]] = field(default_factory=dict)


class ClaimTable:
    """The claims on every IP and the IPs each Service holds, indexed by pool and family.

    :meth:`rebuild` re-indexes the same claims under another config (a pool edit moves no
    IP; it only changes which positions count as taken)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._claims: dict[IPAddress, dict[str, Claim]] = {}
        self._held: dict[str, tuple[IPAddress, ...]] = {}
        self._families: dict[tuple[str, Family], _PoolFamily] = {}
        self.rebuild(config)

    def rebuild(self, config: Config) -> None:
        self._config = config
        self._families = {}
        for pool in config.pools:
            for fam in pool.families():
                space = AddressSpace(pool.cidrs_of(fam), fam, pool.avoid_buggy_ips)
                self._families[(pool.name, fam)] = _PoolFamily(space, FreeSpace(space.size))
        for ip, claims in self._claims.items():
            for claim in claims.values():
                self._index(ip, claim, first=False)
            loc = self._locate(ip)
            if loc is not None:
                loc[0].free.take(loc[1])

    # ----------------------------------------------------------------- holdings
    def held(self, key: str) -> tuple[IPAddress, ...] | None:
        """The IPs a Service holds, or None when it holds none."""
        return self._held.get(key)

    def holdings(self) -> Iterator[tuple[str, tuple[IPAddress, ...]]]:
        """(Service, IPs) for every Service holding IPs."""
        return iter(self._held.items())

    def holders(self, ip: IPAddress) -> tuple[str, ...]:
        return tuple(sorted(self._claims.get(ip, {})))

    def services(self) -> tuple[str, ...]:
        return tuple(sorted(self._held))

    def usage(self) -> tuple[PoolUsage, ...]:
        return tuple(
            PoolUsage(name, fam, pf.space.size, pf.free.used)
            for (name, fam), pf in sorted(self._families.items())
        )

    def hold(self, key: str, ips: tuple[IPAddress, ...], claim: Claim) -> None:
        for ip in ips:
            self._claim(ip, claim)
        self._held[key] = ips

    def release(self, key: str) -> tuple[IPAddress, ...]:
        ips = self._held.pop(key, ())
        for ip in ips:
            self._unclaim(ip, key)
        return ips

    def blockers(self, ip: IPAddress, claim: Claim) -> list[str]:
        """The Services holding ``ip`` whose claims the sharing rules do not allow next to
        ``claim``."""
        return sorted(
            c.service for c in self._claims.get(ip, {}).values() if not c.compatible(claim)
        )

    # ----------------------------------------------------------------- picking
    def allocatable(self, pool: Pool, ip: IPAddress) -> bool:
        """Whether ``ip`` is one of the pool's assignable addresses (avoidBuggyIPs honoured)."""
        return self._families[(pool.name, family_of(ip))].space.position(ip) is not None

    def pick(self, pool: Pool, family: Family, claim: Claim) -> IPAddress | None:
        """MetalLB's "first usable address in CIDR order", where usable = free or shareable."""
        pf = self._families[(pool.name, family)]
        best = pf.free.first_free(0)
        if claim.sharing_key:
            for pos in pf.shared.get(claim.sharing_key, ()):
                if best is not None and pos > best:
                    break
                ip = pf.space.address(pos)
                if not self.blockers(ip, claim):
                    best = pos
                    break
        return None if best is None else pf.space.address(best)

    def pick_all(
        self, pool: Pool, fams: tuple[Family, ...], claim: Claim
    ) -> tuple[IPAddress, ...] | None:
        """One usable address per family from the pool, or None unless every family has one."""
        if not set(fams) <= pool.families():
            return None
        ips: list[IPAddress] = []
        for fam in fams:
            ip = self.pick(pool, fam, claim)
            if ip is None:
                return None
            ips.append(ip)
        return tuple(ips)

    # ----------------------------------------------------------------- index
    def _locate(self, ip: IPAddress) -> tuple[_PoolFamily, int] | None:
        pool = self._config.pool_of(ip)
        if pool is None:
            return None
        pf = self._families[(pool.name, family_of(ip))]
        pos = pf.space.position(ip)
        return None if pos is None else (pf, pos)

    def _index(self, ip: IPAddress, claim: Claim, *, first: bool) -> None:
        loc = self._locate(ip)
        if loc is None:
            return
        pf, pos = loc
        if first:
            pf.free.take(pos)
        if claim.sharing_key:
            index = pf.shared.setdefault(claim.sharing_key, SortedList())
            if pos not in index:
                index.add(pos)

    def _claim(self, ip: IPAddress, claim: Claim) -> None:
        claims = self._claims.setdefault(ip, {})
        first = not claims
        claims[claim.service] = claim
        self._index(ip, claim, first=first)

    def _unclaim(self, ip: IPAddress, service: str) -> None:
        claims = self._claims.get(ip, {})
        claim = claims.pop(service, None)
        if claim is None:
            return
        loc = self._locate(ip)
        if not claims:
            del self._claims[ip]
        if loc is None:
            return
        pf, pos = loc
        if not claims:
            pf.free.release(pos)
        key = claim.sharing_key
        if key and not any(c.sharing_key == key for c in claims.values()):
            index = pf.shared.get(key)
            if index is not None:
                index.discard(pos)
                if not index:
                    del pf.shared[key]
