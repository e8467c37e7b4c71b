"""How a Service without IPs gets new ones, in MetalLB's order (pure).

Requested IPs (``spec.loadBalancerIP`` / ``loadBalancerIPs``) first, then the
``address-pool`` annotation, then pools pinned by ``serviceAllocation`` (priority ascending,
0 last), then every other ``autoAssign`` pool; within a pool the first usable address in CIDR
order. Every failure is an :class:`~controller.decision.AllocationError` whose reason and
message the pending Service's event carries. Nothing here changes the claim table; the
caller holds what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.claims import Claim, ClaimTable
from controller.decision import ALLOCATION_FAILED, AllocationError
from controller.families import family_attempts, family_of
from controller.pool_rules import allows, candidate_pools, outside
from exalb.config.model import Config, Family, IPAddress, Pool
from exalb.views import ServiceView

Attempts = list[tuple[Family, ...]]


def allocate_new(
    config: Config,
    table: ClaimTable,
    svc: ServiceView,
    claim: Claim,
    ns_labels: Mapping[str, str],
) -> tuple[Pool, tuple[IPAddress, ...]]:
    """The pool and IPs a Service would get now; raises :class:`AllocationError`."""
    attempts = family_attempts(svc)
    if svc.requested_ips:
        return _requested(config, table, svc, claim, ns_labels, attempts)
    if svc.requested_pool:
        return _from_named_pool(config, table, svc, claim, ns_labels, attempts)
    return _automatic(config, table, svc, claim, ns_labels, attempts)


def _wanted(attempts: Attempts) -> str:
    return " + ".join(f"IPv{f}" for f in attempts[0])


def _not_selected(pool: Pool) -> AllocationError:
    return AllocationError(
        ALLOCATION_FAILED, f"pool {pool.name}'s serviceAllocation does not select this Service"
    )


def _requested_pool(config: Config, svc: ServiceView, attempts: Attempts) -> Pool:
    """The one pool every requested IP lies in, checked against the Service's families."""
    ips = svc.requested_ips
    fams = tuple(family_of(ip) for ip in ips)
    if not any(set(fams) == set(a) for a in attempts):
        raise AllocationError(
            ALLOCATION_FAILED,
            f"requested IP {', '.join(map(str, ips))} does not match the ipFamily of the "
            f"Service (needs {_wanted(attempts)})",
        )
    pools = {config.pool_of(ip) for ip in ips}
    if None in pools:
        outside = [str(ip) for ip in ips if config.pool_of(ip) is None]
        raise AllocationError(
            ALLOCATION_FAILED, f"requested IP {', '.join(outside)} is not in any IPAddressPool"
        )
    if len(pools) > 1:
        raise AllocationError(ALLOCATION_FAILED, "requested IPs must come from one pool")
    pool = pools.pop()
    assert pool is not None
    return pool


def _requested(
    config: Config,
    table: ClaimTable,
    svc: ServiceView,
    claim: Claim,
    ns_labels: Mapping[str, str],
    attempts: Attempts,
) -> tuple[Pool, tuple[IPAddress, ...]]:
    ips = svc.requested_ips
    pool = _requested_pool(config, svc, attempts)
    if svc.requested_pool and pool.name != svc.requested_pool:
        raise AllocationError(
            ALLOCATION_FAILED,
            f"requested IP is in pool {pool.name}, not in the annotated pool {svc.requested_pool}",
        )
    if not allows(pool, svc, ns_labels):
        raise _not_selected(pool)
    for ip in ips:
        if not table.allocatable(pool, ip):
            raise AllocationError(
                ALLOCATION_FAILED,
                f"requested IP {ip} is excluded by avoidBuggyIPs in pool {pool.name}",
            )
        blockers = table.blockers(ip, claim)
        if blockers:
            raise AllocationError(
                ALLOCATION_FAILED,
                f"requested IP {ip} is in use by {', '.join(blockers)} and cannot be "
                "shared (sharing needs the same allow-shared-ip key, distinct ports and, "
                "for externalTrafficPolicy Local, the same pod selector)",
            )
    return pool, ips


def _from_named_pool(
    config: Config,
    table: ClaimTable,
    svc: ServiceView,
    claim: Claim,
    ns_labels: Mapping[str, str],
    attempts: Attempts,
) -> tuple[Pool, tuple[IPAddress, ...]]:
    pool = config.pool(svc.requested_pool or "")
    if pool is None:
        raise AllocationError(
            ALLOCATION_FAILED, f"IPAddressPool {svc.requested_pool!r} does not exist"
        )
    if not allows(pool, svc, ns_labels):
        raise _not_selected(pool)
    for fams in attempts:
        ips = table.pick_all(pool, fams, claim)
        if ips is not None:
            return pool, ips
    raise AllocationError(
        ALLOCATION_FAILED, f"no available IPs in pool {pool.name} for {_wanted(attempts)}"
    )


def _automatic(
    config: Config,
    table: ClaimTable,
    svc: ServiceView,
    claim: Claim,
    ns_labels: Mapping[str, str],
    attempts: Attempts,
) -> tuple[Pool, tuple[IPAddress, ...]]:
    pools = candidate_pools(config, svc, ns_labels)
    if not config.pools:
        # MetalLB stays silent here (controller/service.go: "pools are empty" is a debug
        # log); exalb says it on the Service, a difference the README lists.
        raise AllocationError(
            ALLOCATION_FAILED,
            "no IPAddressPool is configured; the Service waits for one (IPs already "
            "assigned to other Services are kept)",
        )
    if not pools:
        raise AllocationError(
            ALLOCATION_FAILED, "no IPAddressPool with autoAssign selects this Service"
        )
    for fams in attempts:
        for pool in pools:
            ips = table.pick_all(pool, fams, claim)
            if ips is not None:
                return pool, ips
    names = ", ".join(p.name for p in pools)
    raise AllocationError(
        ALLOCATION_FAILED, f"no available IPs in pools {names} for {_wanted(attempts)}"
    )


def second_family(
    config: Config,
    table: ClaimTable,
    svc: ServiceView,
    held: tuple[IPAddress, ...],
    ns_labels: Mapping[str, str],
    claim: Claim,
    missing: Family,
    pool: Pool | None,
) -> tuple[IPAddress | None, str]:
    """For a dual-stack Service holding one family: an address of the ``missing`` family
    from its own ``pool``, or None and why not. ``pool`` is None when ``held`` lies in no
    single pool."""
    if pool is None or outside(config, held):
        return None, f"IP {', '.join(map(str, held))} is in no pool that may assign it"
    if not allows(pool, svc, ns_labels):
        return None, f"pool {pool.name}'s serviceAllocation does not select this Service"
    if missing not in pool.families():
        return None, f"pool {pool.name} has no IPv{missing} addresses"
    extra = table.pick(pool, missing, claim)
    if extra is None:
        return None, f"no free IPv{missing} address in pool {pool.name}"
    return extra, ""
