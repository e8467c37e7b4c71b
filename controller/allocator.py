"""The IP allocator: MetalLB's allocation rules, without its churn.

Pure (no I/O, no clock, no ``kubernetes``): the controller feeds it :class:`ServiceView` s
and writes back what it decides. It follows MetalLB's order — requested IPs
(``spec.loadBalancerIP`` / ``loadBalancerIPs``), then the ``address-pool`` annotation, then
pools pinned by ``serviceAllocation`` (priority ascending, 0 last), then every other
``autoAssign`` pool — its exact sharing rules, ``avoidBuggyIPs`` and the three family
policies, with these deliberate differences:

* **An assigned IP is a contract.** Re-validation never moves an IP: an IP that left every
  pool (pool edited or deleted, or no pools at all) is kept and reported out-of-pool; only an
  explicit user action moves it (new requested IPs, another ``address-pool``, or the
  ``exalb.io/migrate`` annotation on an out-of-pool Service).
* **Restores come first and are deterministic**: :meth:`Allocator.restore_all` claims the IPs
  in Service status, older Services first, before anything new is handed out; a Service whose
  status clashes with an older one keeps its status and is reported, never silently re-IPed.
* **Ties are broken by pool name** (MetalLB uses Go map order), so a ``plan`` is reproducible.
* **Any pool size**: each pool family is a dense line of positions (see
  :mod:`controller.addrspace`) with a free-run index (:mod:`controller.freespace`), so finding
  the first free address costs O(log n), and capacities are exact Python ints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from controller.addrspace import AddressSpace
from controller.freespace import FreeSpace
from exalb.config.model import Config, Family, IPAddress, Pool
from exalb.views import MIGRATE_ANNOTATION, ServiceView

# Event reasons (MetalLB's, so tooling that greps them keeps working, plus exalb's own).
IP_ALLOCATED = "IPAllocated"
ALLOCATION_FAILED = "AllocationFailed"
LOAD_BALANCER_FAILED = "LoadBalancerFailed"
NOT_ENOUGH_CLUSTER_IPS = "not enough clusterips"
ADDITIONAL_ASSIGN_FAILED = "AdditionalAssignFailed"
IP_OUT_OF_POOL = "IPOutOfPool"
IP_CONFLICT = "IPConflict"
IP_MIGRATED = "IPMigrated"


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
class Decision:
    """What a Service has after one allocator call, and what to tell its owner.

    ``ips`` is what the Service's status should hold (empty: pending). ``reason`` is an
    event reason or empty when there is nothing new to say.
    """

    ips: tuple[IPAddress, ...]
    pool: str | None = None
    changed: bool = False
    reason: str = ""
    message: str = ""
    warning: bool = False
    out_of_pool: tuple[IPAddress, ...] = ()

    @property
    def pending(self) -> bool:
        return not self.ips


class _AllocationError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _PoolFamily:
    space: AddressSpace
    free: FreeSpace
    shared: dict[str, SortedList[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolUsage:
    """Exact per pool and family usage (Python ints: an IPv6 /64 does not overflow)."""

    pool: str
    family: Family
    capacity: int
    in_use: int


class Allocator:
    """Holds who uses which IP and decides new assignments. Not thread-safe by design: the
    controller runs one reconcile loop."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config or Config()
        self._claims: dict[IPAddress, dict[str, Claim]] = {}
        self._held: dict[str, tuple[IPAddress, ...]] = {}
        self._families: dict[tuple[str, Family], _PoolFamily] = {}
        self._rebuild()

    # ----------------------------------------------------------------- config
    @property
    def config(self) -> Config:
        return self._config

    def set_config(self, config: Config) -> tuple[str, ...]:
        """Swap the config. No IP moves. Returns the Services whose pool status changed
        (became out-of-pool, came back, or now sit in another pool)."""
        before = {key: self._pool_name(ips) for key, ips in self._held.items()}
        self._config = config
        self._rebuild()
        return tuple(
            sorted(k for k, ips in self._held.items() if self._pool_name(ips) != before[k])
        )

    def _rebuild(self) -> None:
        self._families = {}
        for pool in self._config.pools:
            for fam in pool.families():
                space = AddressSpace(pool.cidrs_of(fam), fam, pool.avoid_buggy_ips)
                self._families[(pool.name, fam)] = _PoolFamily(space, FreeSpace(space.size))
        for ip, claims in self._claims.items():
            for claim in claims.values():
                self._index(ip, claim, first=False)
            loc = self._locate(ip)
            if loc is not None:
                loc[0].free.take(loc[1])

    def _locate(self, ip: IPAddress) -> tuple[_PoolFamily, int] | None:
        pool = self._config.pool_of(ip)
        if pool is None:
            return None
        pf = self._families[(pool.name, 4 if ip.version == 4 else 6)]
        pos = pf.space.position(ip)
        return None if pos is None else (pf, pos)

    def _pool_name(self, ips: tuple[IPAddress, ...]) -> str | None:
        pools = {p.name if p else None for p in (self._config.pool_of(ip) for ip in ips)}
        return pools.pop() if len(pools) == 1 else None

    # ----------------------------------------------------------------- claims
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

    def _blockers(self, ip: IPAddress, claim: Claim) -> list[str]:
        return sorted(
            c.service for c in self._claims.get(ip, {}).values() if not c.compatible(claim)
        )

    def _conflict(self, ips: tuple[IPAddress, ...], claim: Claim, why: str) -> Decision | None:
        """A flagged, unchanged decision when another Service blocks one of ``ips``."""
        for ip in ips:
            blockers = self._blockers(ip, claim)
            if blockers:
                return Decision(
                    ips,
                    self._pool_name(ips),
                    reason=IP_CONFLICT,
                    warning=True,
                    message=f"IP {ip} is also held by {', '.join(blockers)} and {why}; kept "
                    f"unchanged. Fix allow-shared-ip or ports, or set {MIGRATE_ANNOTATION}=true "
                    "to move this Service",
                )
        return None

    def _hold(self, key: str, ips: tuple[IPAddress, ...], claim: Claim) -> None:
        for ip in ips:
            self._claim(ip, claim)
        self._held[key] = ips

    def release(self, key: str) -> tuple[IPAddress, ...]:
        """Forget a Service (deleted, no longer LoadBalancer, or not ours any more)."""
        ips = self._held.pop(key, ())
        for ip in ips:
            self._unclaim(ip, key)
        return ips

    # ----------------------------------------------------------------- queries
    def assigned(self, key: str) -> tuple[IPAddress, ...]:
        return self._held.get(key, ())

    def holders(self, ip: IPAddress) -> tuple[str, ...]:
        return tuple(sorted(self._claims.get(ip, {})))

    def services(self) -> tuple[str, ...]:
        return tuple(sorted(self._held))

    def out_of_pool(self) -> dict[str, tuple[IPAddress, ...]]:
        """Services holding IPs that lie in no pool, with those IPs."""
        out: dict[str, tuple[IPAddress, ...]] = {}
        for key, ips in self._held.items():
            lost = tuple(ip for ip in ips if self._config.pool_of(ip) is None)
            if lost:
                out[key] = lost
        return out

    def usage(self) -> tuple[PoolUsage, ...]:
        return tuple(
            PoolUsage(name, fam, pf.space.size, pf.free.used)
            for (name, fam), pf in sorted(self._families.items())
        )

    def services_per_pool(self) -> dict[str, int]:
        counts = {p.name: 0 for p in self._config.pools}
        for ips in self._held.values():
            name = self._pool_name(ips)
            if name is not None:
                counts[name] += 1
        return counts

    # ----------------------------------------------------------------- restore
    def restore_all(self, services: Iterable[ServiceView]) -> dict[str, Decision]:
        """Claim every Service's status IPs, oldest Service first, before any allocation."""
        ordered = sorted(
            (s for s in services if s.assigned_ips), key=lambda s: (s.creation_timestamp, s.key)
        )
        return {s.key: self.restore(s) for s in ordered}

    def restore(self, svc: ServiceView) -> Decision:
        """Take the IPs a Service already has as given. Never moves them."""
        claim = claim_of(svc)
        ips = svc.assigned_ips
        if svc.key in self._held:
            self.release(svc.key)
        conflict = self._conflict(ips, claim, "the sharing rules do not allow both")
        if conflict is not None:
            return conflict
        self._hold(svc.key, ips, claim)
        return self._kept(svc, ips)

    def _kept(
        self,
        svc: ServiceView,
        ips: tuple[IPAddress, ...],
        *,
        changed: bool = False,
        reason: str = "",
        message: str = "",
    ) -> Decision:
        lost = tuple(ip for ip in ips if self._config.pool_of(ip) is None)
        if lost and not reason:
            reason = IP_OUT_OF_POOL
            message = (
                f"IP {', '.join(map(str, lost))} is not in any IPAddressPool; kept unchanged. "
                f"Set annotation {MIGRATE_ANNOTATION}=true to move it into the current config"
            )
            return Decision(ips, self._pool_name(ips), changed, reason, message, True, lost)
        return Decision(ips, self._pool_name(ips), changed, reason, message, False, lost)

    # ----------------------------------------------------------------- assign
    def assign(
        self, svc: ServiceView, namespace_labels: Mapping[str, str] | None = None
    ) -> Decision:
        """Converge one Service of type LoadBalancer that is ours."""
        ns_labels = namespace_labels or {}
        key = svc.key
        if svc.errors:
            return Decision(
                self._held.get(key, svc.assigned_ips),
                reason=LOAD_BALANCER_FAILED,
                message="; ".join(svc.errors),
                warning=True,
            )
        if key not in self._held and svc.assigned_ips:
            restored = self.restore(svc)
            if restored.reason == IP_CONFLICT and not svc.migrate:
                return restored
            if restored.reason == IP_CONFLICT:
                return self._move(svc, ns_labels, (), IP_MIGRATED)
        held = self._held.get(key)
        if held is None:
            return self._fresh(svc, ns_labels)
        if svc.requested_ips and set(svc.requested_ips) != set(held):
            return self._move(svc, ns_labels, held, IP_ALLOCATED)
        if svc.requested_pool and self._pool_name(held) != svc.requested_pool:
            return self._move(svc, ns_labels, held, IP_ALLOCATED)
        lost = [ip for ip in held if self._config.pool_of(ip) is None]
        if lost and svc.migrate:
            return self._move(svc, ns_labels, held, IP_MIGRATED)
        return self._refresh(svc, held, ns_labels)

    def _refresh(
        self, svc: ServiceView, held: tuple[IPAddress, ...], ns_labels: Mapping[str, str]
    ) -> Decision:
        """Keep the IPs; update sharing data in place; add a missing PreferDualStack family."""
        claim = claim_of(svc)
        conflict = self._conflict(
            held,
            claim,
            "the Service's sharing data (allow-shared-ip, ports, policy) no longer "
            "allows sharing it",
        )
        if conflict is not None:
            return conflict
        self.release(svc.key)
        self._hold(svc.key, held, claim)
        wanted = self._family_attempts(svc)
        have = {4 if ip.version == 4 else 6 for ip in held}
        if (
            isinstance(wanted, list)
            and svc.family_policy == "PreferDualStack"
            and len(wanted[0]) == 2
            and len(have) == 1
            and not svc.requested_ips
        ):
            pool = self._config.pool(self._pool_name(held) or "")
            missing: Family = 6 if 4 in have else 4
            if pool is not None and missing in pool.families():
                extra = self._pick(pool, missing, claim)
                if extra is None:
                    return self._kept(
                        svc,
                        held,
                        reason=ADDITIONAL_ASSIGN_FAILED,
                        message=f"no free IPv{missing} address in pool {pool.name} to add "
                        "for PreferDualStack",
                    )
                ips = tuple(sorted((*held, extra), key=lambda a: a.version != svc.primary_family))
                self.release(svc.key)
                self._hold(svc.key, ips, claim)
                return self._kept(
                    svc,
                    ips,
                    changed=True,
                    reason=IP_ALLOCATED,
                    message=f"added {extra} from pool {pool.name} (PreferDualStack)",
                )
        return self._kept(svc, held, changed=tuple(svc.assigned_ips) != held)

    def _move(
        self,
        svc: ServiceView,
        ns_labels: Mapping[str, str],
        old: tuple[IPAddress, ...],
        reason: str,
    ) -> Decision:
        """An explicit request for other IPs: take the new ones first, then free the old."""
        self.release(svc.key)
        decision = self._fresh(svc, ns_labels)
        if decision.pending:
            if old:
                self._hold(svc.key, old, claim_of(svc))
            return Decision(
                old,
                self._pool_name(old) if old else None,
                False,
                decision.reason,
                decision.message + ("; the current IP is kept" if old else ""),
                True,
            )
        if reason == IP_MIGRATED:
            return Decision(
                decision.ips,
                decision.pool,
                True,
                IP_MIGRATED,
                f"moved from {', '.join(map(str, old)) or 'a conflicting IP'} to "
                f"{', '.join(map(str, decision.ips))} on request",
            )
        return decision

    def _fresh(self, svc: ServiceView, ns_labels: Mapping[str, str]) -> Decision:
        claim = claim_of(svc)
        try:
            attempts = self._family_attempts(svc)
            if isinstance(attempts, _AllocationError):
                raise attempts
            if svc.requested_ips:
                pool, ips = self._requested(svc, claim, ns_labels, attempts)
            elif svc.requested_pool:
                pool, ips = self._from_named_pool(svc, claim, ns_labels, attempts)
            else:
                pool, ips = self._automatic(svc, claim, ns_labels, attempts)
        except _AllocationError as failure:
            return Decision((), None, bool(svc.assigned_ips), failure.reason, failure.message, True)
        self._hold(svc.key, ips, claim)
        return Decision(
            ips,
            pool.name,
            tuple(svc.assigned_ips) != ips,
            IP_ALLOCATED,
            f"Assigned IP {', '.join(map(str, ips))} from pool {pool.name}",
        )

    # ----------------------------------------------------------------- families
    def _family_attempts(self, svc: ServiceView) -> list[tuple[Family, ...]] | _AllocationError:
        """Which family sets to try, in order (MetalLB's three ipFamilyPolicy rules)."""
        cluster = tuple(dict.fromkeys(svc.cluster_ip_families)) or (svc.primary_family,)
        primary = svc.primary_family
        other: Family = 6 if primary == 4 else 4
        if svc.family_policy == "RequireDualStack":
            if len(cluster) < 2:
                return _AllocationError(
                    NOT_ENOUGH_CLUSTER_IPS, "RequireDualStack needs an IPv4 and an IPv6 cluster IP"
                )
            return [(primary, other)]
        if svc.family_policy == "PreferDualStack" and len(cluster) >= 2:
            return [(primary, other), (primary,), (other,)]
        return [(primary,)]

    def _allows(self, pool: Pool, svc: ServiceView, ns_labels: Mapping[str, str]) -> bool:
        sa = pool.service_allocation
        return sa is None or sa.matches(svc.namespace, ns_labels, svc.label_map)

    # ----------------------------------------------------------------- strategies
    def _requested(
        self,
        svc: ServiceView,
        claim: Claim,
        ns_labels: Mapping[str, str],
        attempts: list[tuple[Family, ...]],
    ) -> tuple[Pool, tuple[IPAddress, ...]]:
        ips = svc.requested_ips
        fams = tuple(4 if ip.version == 4 else 6 for ip in ips)
        if not any(set(fams) == set(a) for a in attempts):
            want = " + ".join(f"IPv{f}" for f in attempts[0])
            raise _AllocationError(
                ALLOCATION_FAILED,
                f"requested IP {', '.join(map(str, ips))} does not match the ipFamily of the "
                f"Service (needs {want})",
            )
        pools = {self._config.pool_of(ip) for ip in ips}
        if None in pools:
            outside = [str(ip) for ip in ips if self._config.pool_of(ip) is None]
            raise _AllocationError(
                ALLOCATION_FAILED, f"requested IP {', '.join(outside)} is not in any IPAddressPool"
            )
        if len(pools) > 1:
            raise _AllocationError(ALLOCATION_FAILED, "requested IPs must come from one pool")
        pool = pools.pop()
        assert pool is not None
        if svc.requested_pool and pool.name != svc.requested_pool:
            raise _AllocationError(
                ALLOCATION_FAILED,
                f"requested IP is in pool {pool.name}, not in the annotated pool "
                f"{svc.requested_pool}",
            )
        if not self._allows(pool, svc, ns_labels):
            raise _AllocationError(
                ALLOCATION_FAILED,
                f"pool {pool.name}'s serviceAllocation does not select this Service",
            )
        for ip in ips:
            pf = self._families[(pool.name, 4 if ip.version == 4 else 6)]
            if pf.space.position(ip) is None:
                raise _AllocationError(
                    ALLOCATION_FAILED,
                    f"requested IP {ip} is excluded by avoidBuggyIPs in pool {pool.name}",
                )
            blockers = self._blockers(ip, claim)
            if blockers:
                raise _AllocationError(
                    ALLOCATION_FAILED,
                    f"requested IP {ip} is in use by {', '.join(blockers)} and cannot be "
                    "shared (sharing needs the same allow-shared-ip key, distinct ports and, "
                    "for externalTrafficPolicy Local, the same pod selector)",
                )
        return pool, ips

    def _from_named_pool(
        self,
        svc: ServiceView,
        claim: Claim,
        ns_labels: Mapping[str, str],
        attempts: list[tuple[Family, ...]],
    ) -> tuple[Pool, tuple[IPAddress, ...]]:
        pool = self._config.pool(svc.requested_pool or "")
        if pool is None:
            raise _AllocationError(
                ALLOCATION_FAILED, f"IPAddressPool {svc.requested_pool!r} does not exist"
            )
        if not self._allows(pool, svc, ns_labels):
            raise _AllocationError(
                ALLOCATION_FAILED,
                f"pool {pool.name}'s serviceAllocation does not select this Service",
            )
        for fams in attempts:
            ips = self._take_all(pool, fams, claim)
            if ips is not None:
                return pool, ips
        raise _AllocationError(
            ALLOCATION_FAILED,
            f"no available IPs in pool {pool.name} for "
            f"{' + '.join(f'IPv{f}' for f in attempts[0])}",
        )

    def candidate_pools(self, svc: ServiceView, ns_labels: Mapping[str, str]) -> tuple[Pool, ...]:
        """Automatic order: pinned pools by priority (0 last) then name; then the rest."""
        pinned = [
            p
            for p in self._config.pools
            if p.auto_assign
            and p.service_allocation is not None
            and self._allows(p, svc, ns_labels)
        ]
        pinned.sort(
            key=lambda p: (
                p.service_allocation.priority == 0 if p.service_allocation else True,
                p.service_allocation.priority if p.service_allocation else 0,
                p.name,
            )
        )
        rest = [p for p in self._config.pools if p.auto_assign and p.service_allocation is None]
        return (*pinned, *rest)

    def _automatic(
        self,
        svc: ServiceView,
        claim: Claim,
        ns_labels: Mapping[str, str],
        attempts: list[tuple[Family, ...]],
    ) -> tuple[Pool, tuple[IPAddress, ...]]:
        pools = self.candidate_pools(svc, ns_labels)
        if not pools:
            raise _AllocationError(
                ALLOCATION_FAILED, "no IPAddressPool with autoAssign selects this Service"
            )
        for fams in attempts:
            for pool in pools:
                ips = self._take_all(pool, fams, claim)
                if ips is not None:
                    return pool, ips
        names = ", ".join(p.name for p in pools)
        raise _AllocationError(
            ALLOCATION_FAILED,
            f"no available IPs in pools {names} for {' + '.join(f'IPv{f}' for f in attempts[0])}",
        )

    def _take_all(
        self, pool: Pool, fams: tuple[Family, ...], claim: Claim
    ) -> tuple[IPAddress, ...] | None:
        if not set(fams) <= pool.families():
            return None
        ips: list[IPAddress] = []
        for fam in fams:
            ip = self._pick(pool, fam, claim)
            if ip is None:
                return None
            ips.append(ip)
        return tuple(ips)

    def _pick(self, pool: Pool, family: Family, claim: Claim) -> IPAddress | None:
        """MetalLB's "first usable address in CIDR order", where usable = free or shareable."""
        pf = self._families[(pool.name, family)]
        best = pf.free.first_free(0)
        if claim.sharing_key:
            for pos in pf.shared.get(claim.sharing_key, ()):
                if best is not None and pos > best:
                    break
                ip = pf.space.address(pos)
                if not self._blockers(ip, claim):
                    best = pos
                    break
        return None if best is None else pf.space.address(best)
