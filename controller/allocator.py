"""The IP allocator: MetalLB's allocation rules, without its churn.

Pure (no I/O, no clock, no ``kubernetes``): the controller feeds it :class:`ServiceView` s
and writes back what it decides. It follows MetalLB's order — requested IPs
(``spec.loadBalancerIP`` / ``loadBalancerIPs``), then the ``address-pool`` annotation, then
pools pinned by ``serviceAllocation`` (priority ascending, 0 last), then every other
``autoAssign`` pool — its exact sharing rules, ``avoidBuggyIPs`` and the three family
policies, with these deliberate differences:

* **An assigned IP is a contract.** Re-validation never moves an IP. Where MetalLB's
  ``convergeBalancer`` (``controller/service.go``) would clear it and allocate another, the
  IP is kept and the Service *flagged* (:class:`Flag`): the IP left every pool or is
  excluded by ``avoidBuggyIPs`` (``outOfPool``), it is of a family the Service no longer
  has (``wrongFamily``), its pool's ``serviceAllocation`` no longer selects the Service
  (``notSelectedByPool``), a requested IP or pool cannot be had (``requestNotMet``), or a
  RequireDualStack Service cannot get its second family (``missingFamily``). Only an
  explicit user action moves an IP: new requested IPs, another ``address-pool``, or the
  ``exalb.io/migrate`` annotation on a flagged Service.
* **Completing a Service is not moving it.** A dual-stack Service holding one family gets
  the other from the same pool as soon as it can (MetalLB does so for PreferDualStack; for
  RequireDualStack it would clear the IP and allocate a new pair). More IPs in status than
  the Service's families allow are cut to one per family, the first usable in status order.
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
from exalb.contracts.service_status import FlagKind
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
IP_WRONG_FAMILY = "IPWrongFamily"
NOT_SELECTED_BY_POOL = "NotSelectedByPool"
EXTRA_IPS_RELEASED = "ExtraIPsReleased"

# The flags a Service can carry (the contract with readers of the Service), in the order
# their messages lead an event.
FLAG_KINDS: tuple[FlagKind, ...] = tuple(FlagKind)
# Flags that mean "kept although the current config would not give it": exalb.io/migrate
# asks to move such a Service into the current config.
MIGRATABLE: frozenset[FlagKind] = frozenset(
    {FlagKind.OUT_OF_POOL, FlagKind.WRONG_FAMILY, FlagKind.NOT_SELECTED_BY_POOL}
)


@dataclass(frozen=True)
class Flag:
    """Something about a Service's IPs that stays true until the Service or config changes.

    MetalLB would resolve each of these by clearing the IP; exalb keeps it, and the
    controller turns each flag into a condition, an event (``reason``) and a metric.
    """

    kind: FlagKind
    reason: str  # the event reason
    message: str
    ips: tuple[IPAddress, ...] = ()


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
    flags: tuple[Flag, ...] = ()

    @property
    def pending(self) -> bool:
        return not self.ips

    def flag(self, kind: FlagKind) -> Flag | None:
        return next((f for f in self.flags if f.kind == kind), None)

    @property
    def out_of_pool(self) -> tuple[IPAddress, ...]:
        found = self.flag(FlagKind.OUT_OF_POOL)
        return found.ips if found else ()

    def events(self) -> tuple[tuple[str, str, bool], ...]:
        """(reason, message, warning) to record: the headline, then every flag it does not
        already say."""
        out: list[tuple[str, str, bool]] = []
        if self.reason:
            out.append((self.reason, self.message, self.warning))
        for f in self.flags:
            if (f.reason, f.message) != (self.reason, self.message):
                out.append((f.reason, f.message, True))
        return tuple(out)


def _family(ip: IPAddress) -> Family:
    return 4 if ip.version == 4 else 6


def families_of(svc: ServiceView) -> frozenset[Family]:
    """The families a Service's load-balancer IPs may have: both for a dual-stack policy
    with an IPv4 and an IPv6 cluster IP, else the primary one (MetalLB's
    ``serviceFamilyChanged`` judges status IPs by the same rule)."""
    dual = svc.family_policy in ("PreferDualStack", "RequireDualStack")
    if dual and len(set(svc.cluster_ip_families)) >= 2:
        return frozenset({4, 6})
    return frozenset({svc.primary_family})


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

        def where(ips: tuple[IPAddress, ...]) -> tuple[str | None, tuple[IPAddress, ...]]:
            return self._pool_name(ips), self._outside(ips)

        before = {key: where(ips) for key, ips in self._held.items()}
        self._config = config
        self._rebuild()
        return tuple(sorted(k for k, ips in self._held.items() if where(ips) != before[k]))

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
        """The one pool whose CIDRs hold every IP (``avoidBuggyIPs`` aside), else None."""
        pools = {p.name if p else None for p in (self._config.pool_of(ip) for ip in ips)}
        return pools.pop() if len(pools) == 1 else None

    def _outside(self, ips: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
        """The IPs no pool may assign: outside every CIDR, or excluded by avoidBuggyIPs."""
        return tuple(ip for ip in ips if self._config.allocatable_pool_of(ip) is None)

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
        """Services holding IPs no pool may assign (see :meth:`_outside`), with those IPs."""
        out: dict[str, tuple[IPAddress, ...]] = {}
        for key, ips in self._held.items():
            lost = self._outside(ips)
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
        """Take the IPs a Service already has as given (at most one per family it may
        hold, see :meth:`_trim`). Never moves them."""
        claim = claim_of(svc)
        ips = self._trim(svc, tuple(dict.fromkeys(svc.assigned_ips)))
        if svc.key in self._held:
            self.release(svc.key)
        conflict = self._conflict(ips, claim, "the sharing rules do not allow both")
        if conflict is not None:
            return conflict
        self._hold(svc.key, ips, claim)
        return self._kept(svc, ips, None, changed=False)

    def _trim(self, svc: ServiceView, ips: tuple[IPAddress, ...]) -> tuple[IPAddress, ...]:
        """At most one status IP per family, and no more families than the Service has.

        MetalLB treats more IPs than that as a broken state and re-allocates
        (``controller/service.go``: ``serviceFamilyChanged``; ``ipfamily.ForAddresses``
        refuses three IPs or two of one family). exalb keeps what it can: per family the
        first IP in status order that a pool may assign, else the first of that family;
        with two families on a one-family Service, the Service's family wins. The rest is
        released (event ``ExtraIPsReleased``).
        """
        allowed = families_of(svc)
        if len(ips) <= len(allowed) and len({_family(ip) for ip in ips}) == len(ips):
            return ips
        chosen: dict[Family, IPAddress] = {}
        for ip in ips:
            current = chosen.get(_family(ip))
            if current is None or (self._outside((current,)) and not self._outside((ip,))):
                chosen[_family(ip)] = ip
        if len(chosen) > len(allowed):
            chosen = {f: ip for f, ip in chosen.items() if f in allowed}
        keep = set(chosen.values())
        return tuple(ip for ip in ips if ip in keep)

    def _flags(
        self,
        svc: ServiceView,
        ips: tuple[IPAddress, ...],
        ns_labels: Mapping[str, str] | None,
    ) -> list[Flag]:
        """What is wrong with keeping ``ips`` under the current config (``ns_labels`` None:
        unknown, so the pool selectors are not judged)."""
        flags: list[Flag] = []
        lost = self._outside(ips)
        if lost:
            where = []
            for ip in lost:
                pool = self._config.pool_of(ip)
                if pool is None:
                    where.append(f"{ip} is not in any IPAddressPool")
                else:
                    where.append(f"{ip} is excluded by avoidBuggyIPs of IPAddressPool {pool.name}")
            flags.append(
                Flag(
                    FlagKind.OUT_OF_POOL,
                    IP_OUT_OF_POOL,
                    f"IP {'; '.join(where)}; kept unchanged. Set annotation "
                    f"{MIGRATE_ANNOTATION}=true to move it into the current config",
                    lost,
                )
            )
        allowed = families_of(svc)
        wrong = tuple(ip for ip in ips if _family(ip) not in allowed)
        if wrong:
            want = " and ".join(f"IPv{f}" for f in sorted(allowed))
            flags.append(
                Flag(
                    FlagKind.WRONG_FAMILY,
                    IP_WRONG_FAMILY,
                    f"IP {', '.join(map(str, wrong))} is not of the Service's family ({want}, "
                    f"{svc.family_policy}); kept unchanged. Set annotation "
                    f"{MIGRATE_ANNOTATION}=true to get an IP of the Service's family",
                    wrong,
                )
            )
        pool = self._config.pool(self._pool_name(ips) or "")
        if (
            ns_labels is not None
            and pool is not None
            and not lost
            and not self._allows(pool, svc, ns_labels)
        ):
            flags.append(
                Flag(
                    FlagKind.NOT_SELECTED_BY_POOL,
                    NOT_SELECTED_BY_POOL,
                    f"IPAddressPool {pool.name}'s serviceAllocation (namespaces, "
                    "namespaceSelectors, serviceSelectors) no longer selects this Service; "
                    f"IP {', '.join(map(str, ips))} kept unchanged. Set annotation "
                    f"{MIGRATE_ANNOTATION}=true to move it to a pool that selects it",
                    ips,
                )
            )
        return flags

    def _kept(
        self,
        svc: ServiceView,
        ips: tuple[IPAddress, ...],
        ns_labels: Mapping[str, str] | None,
        *,
        changed: bool | None = None,
        reason: str = "",
        message: str = "",
        warning: bool = False,
        extra: tuple[Flag, ...] = (),
    ) -> Decision:
        """The Service keeps ``ips``; say what is new and what is flagged."""
        flags = (*self._flags(svc, ips, ns_labels), *extra)
        flags = tuple(sorted(flags, key=lambda f: FLAG_KINDS.index(f.kind)))
        if changed is None:
            changed = tuple(svc.assigned_ips) != ips
        dropped = tuple(ip for ip in dict.fromkeys(svc.assigned_ips) if ip not in ips)
        if dropped:
            released = (
                f"released {', '.join(map(str, dropped))} from status: a {svc.family_policy} "
                f"Service holds at most one IP per family it has "
                f"({' and '.join(f'IPv{f}' for f in sorted(families_of(svc)))})"
            )
            if reason:
                message = f"{message}; {released}"
            else:
                reason, warning = EXTRA_IPS_RELEASED, True
                message = f"{released}; kept {', '.join(map(str, ips)) or 'none'}"
        if not reason and flags:
            reason, message, warning = flags[0].reason, flags[0].message, True
        return Decision(ips, self._pool_name(ips), changed, reason, message, warning, flags)

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
        # The pool the IP came from, also when that pool was deleted meanwhile (the
        # annotation we wrote says it): an edited config is no request to move.
        current = self._pool_name(held) or svc.allocated_pool
        if svc.requested_pool and current != svc.requested_pool:
            return self._move(svc, ns_labels, held, IP_ALLOCATED)
        if svc.migrate and any(f.kind in MIGRATABLE for f in self._flags(svc, held, ns_labels)):
            return self._move(svc, ns_labels, held, IP_MIGRATED)
        return self._refresh(svc, held, ns_labels)

    def _refresh(
        self, svc: ServiceView, held: tuple[IPAddress, ...], ns_labels: Mapping[str, str]
    ) -> Decision:
        """Keep the IPs; update sharing data in place; add a missing dual-stack family."""
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
        held = self._trim(svc, held)  # the Service's families may have shrunk
        self._hold(svc.key, held, claim)
        if svc.family_policy == "RequireDualStack" and len(set(svc.cluster_ip_families)) < 2:
            return self._kept(
                svc,
                held,
                ns_labels,
                reason=NOT_ENOUGH_CLUSTER_IPS,
                message="RequireDualStack needs an IPv4 and an IPv6 cluster IP; the current "
                "IP is kept",
                warning=True,
            )
        wanted = families_of(svc)
        have = {_family(ip) for ip in held}
        if len(wanted) < 2 or len(have) != 1 or svc.requested_ips:
            return self._kept(svc, held, ns_labels)
        return self._complete(svc, held, ns_labels, claim, (6 if 4 in have else 4))

    def _complete(
        self,
        svc: ServiceView,
        held: tuple[IPAddress, ...],
        ns_labels: Mapping[str, str],
        claim: Claim,
        missing: Family,
    ) -> Decision:
        """Add the missing family to a dual-stack Service from the pool it already uses.

        MetalLB does this for PreferDualStack (``controller/service.go``, with
        ``AllocateFromPoolForAdditionalFamily``) and reports ``AdditionalAssignFailed`` when
        it cannot. A RequireDualStack Service with one family (its policy changed, or its
        pool gained the second family) MetalLB clears and re-allocates as a pair, possibly
        elsewhere; exalb keeps the IP it has, adds the other from the same pool, and flags
        ``missingFamily`` while it cannot. Adding an IP of a family the Service lacks moves
        nothing.
        """
        pool = self._config.pool(self._pool_name(held) or "")
        problem = ""
        extra: IPAddress | None = None
        if pool is None or self._outside(held):
            problem = f"IP {', '.join(map(str, held))} is in no pool that may assign it"
        elif not self._allows(pool, svc, ns_labels):
            problem = f"pool {pool.name}'s serviceAllocation does not select this Service"
        elif missing not in pool.families():
            problem = f"pool {pool.name} has no IPv{missing} addresses"
        else:
            extra = self._pick(pool, missing, claim)
            if extra is None:
                problem = f"no free IPv{missing} address in pool {pool.name}"
        if extra is not None and pool is not None:
            ips = tuple(sorted((*held, extra), key=lambda a: a.version != svc.primary_family))
            self.release(svc.key)
            self._hold(svc.key, ips, claim)
            return self._kept(
                svc,
                ips,
                ns_labels,
                changed=True,
                reason=IP_ALLOCATED,
                message=f"added {extra} from pool {pool.name} ({svc.family_policy})",
            )
        text = f"cannot add an IPv{missing} address for {svc.family_policy}: {problem}"
        if svc.family_policy != "RequireDualStack":
            return self._kept(svc, held, ns_labels, reason=ADDITIONAL_ASSIGN_FAILED, message=text)
        flag = Flag(
            FlagKind.MISSING_FAMILY,
            ADDITIONAL_ASSIGN_FAILED,
            f"{text}; the current IP is kept. Add IPv{missing} addresses to the pool, or set "
            f"annotation {MIGRATE_ANNOTATION}=true to move the Service to a pool with both",
            held,
        )
        return self._kept(svc, held, ns_labels, extra=(flag,))

    def _move(
        self,
        svc: ServiceView,
        ns_labels: Mapping[str, str],
        old: tuple[IPAddress, ...],
        reason: str,
    ) -> Decision:
        """An explicit request for other IPs: take the new ones first, then free the old.

        When the request cannot be met, MetalLB has already cleared the old IP (the Service
        is left pending); exalb keeps it and flags ``requestNotMet`` until the request can
        be met or is withdrawn."""
        self.release(svc.key)
        decision = self._fresh(svc, ns_labels)
        if decision.pending:
            if not old:
                return decision
            self._hold(svc.key, old, claim_of(svc))
            text = f"{decision.message}; the current IP {', '.join(map(str, old))} is kept"
            flag = Flag(FlagKind.REQUEST_NOT_MET, decision.reason, text, old)
            return self._kept(
                svc, old, ns_labels, reason=decision.reason, message=text, warning=True,
                extra=(flag,),
            )  # fmt: skip
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
        if not self._config.pools:
            # MetalLB stays silent here (controller/service.go: "pools are empty" is a debug
            # log); exalb says it on the Service, a difference the README lists.
            raise _AllocationError(
                ALLOCATION_FAILED,
                "no IPAddressPool is configured; the Service waits for one (IPs already "
                "assigned to other Services are kept)",
            )
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
