"""A Service keeps its IPs: trimmed to one per family, flagged where the config disagrees.

Pure. Where MetalLB would clear an IP and allocate another, exalb keeps it and says why with
a :class:`~controller.decision.Flag`: the IP left every pool or is excluded by
``avoidBuggyIPs`` (``outOfPool``), it is of a family the Service no longer has
(``wrongFamily``), or its pool's ``serviceAllocation`` no longer selects the Service
(``notSelectedByPool``). :func:`kept` builds the Decision for a Service that keeps ``ips``;
:func:`blocked` the one for a Service whose IPs another Service blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.claims import Claim, ClaimTable
from controller.decision import (
    EXTRA_IPS_RELEASED,
    FLAG_KINDS,
    IP_CONFLICT,
    IP_OUT_OF_POOL,
    IP_WRONG_FAMILY,
    NOT_SELECTED_BY_POOL,
    Decision,
    Flag,
)
from controller.families import families_of, family_of
from controller.pool_rules import allows, outside, pool_name
from exalb.config.model import Config, Family, IPAddress
from exalb.contracts.service_status import FlagKind
from exalb.views import MIGRATE_ANNOTATION, ServiceView


def trim(config: Config, svc: ServiceView, ips: tuple[IPAddress, ...]) -> tuple[IPAddress, ...]:
    """At most one status IP per family, and no more families than the Service has.

    MetalLB treats more IPs than that as a broken state and re-allocates
    (``controller/service.go``: ``serviceFamilyChanged``; ``ipfamily.ForAddresses``
    refuses three IPs or two of one family). exalb keeps what it can: per family the
    first IP in status order that a pool may assign, else the first of that family;
    with two families on a one-family Service, the Service's family wins. The rest is
    released (event ``ExtraIPsReleased``).
    """
    allowed = families_of(svc)
    if len(ips) <= len(allowed) and len({family_of(ip) for ip in ips}) == len(ips):
        return ips
    chosen: dict[Family, IPAddress] = {}
    for ip in ips:
        current = chosen.get(family_of(ip))
        if current is None or (outside(config, (current,)) and not outside(config, (ip,))):
            chosen[family_of(ip)] = ip
    if len(chosen) > len(allowed):
        chosen = {f: ip for f, ip in chosen.items() if f in allowed}
    keep = set(chosen.values())
    return tuple(ip for ip in ips if ip in keep)


def flags_for(
    config: Config,
    svc: ServiceView,
    ips: tuple[IPAddress, ...],
    ns_labels: Mapping[str, str] | None,
) -> list[Flag]:
    """What is wrong with keeping ``ips`` under the current config (``ns_labels`` None:
    unknown, so the pool selectors are not judged)."""
    lost = outside(config, ips)
    found = [
        _out_of_pool(config, lost),
        _wrong_family(svc, ips),
        None if lost or ns_labels is None else _not_selected(config, svc, ips, ns_labels),
    ]
    return [f for f in found if f is not None]


def _out_of_pool(config: Config, lost: tuple[IPAddress, ...]) -> Flag | None:
    if not lost:
        return None
    where = []
    for ip in lost:
        pool = config.pool_of(ip)
        if pool is None:
            where.append(f"{ip} is not in any IPAddressPool")
        else:
            where.append(f"{ip} is excluded by avoidBuggyIPs of IPAddressPool {pool.name}")
    return Flag(
        FlagKind.OUT_OF_POOL,
        IP_OUT_OF_POOL,
        f"IP {'; '.join(where)}; kept unchanged. Set annotation "
        f"{MIGRATE_ANNOTATION}=true to move it into the current config",
        lost,
    )


def _wrong_family(svc: ServiceView, ips: tuple[IPAddress, ...]) -> Flag | None:
    allowed = families_of(svc)
    wrong = tuple(ip for ip in ips if family_of(ip) not in allowed)
    if not wrong:
        return None
    want = " and ".join(f"IPv{f}" for f in sorted(allowed))
    return Flag(
        FlagKind.WRONG_FAMILY,
        IP_WRONG_FAMILY,
        f"IP {', '.join(map(str, wrong))} is not of the Service's family ({want}, "
        f"{svc.family_policy}); kept unchanged. Set annotation "
        f"{MIGRATE_ANNOTATION}=true to get an IP of the Service's family",
        wrong,
    )


def _not_selected(
    config: Config, svc: ServiceView, ips: tuple[IPAddress, ...], ns_labels: Mapping[str, str]
) -> Flag | None:
    pool = config.pool(pool_name(config, ips) or "")
    if pool is None or allows(pool, svc, ns_labels):
        return None
    return Flag(
        FlagKind.NOT_SELECTED_BY_POOL,
        NOT_SELECTED_BY_POOL,
        f"IPAddressPool {pool.name}'s serviceAllocation (namespaces, "
        "namespaceSelectors, serviceSelectors) no longer selects this Service; "
        f"IP {', '.join(map(str, ips))} kept unchanged. Set annotation "
        f"{MIGRATE_ANNOTATION}=true to move it to a pool that selects it",
        ips,
    )


def kept(
    config: Config,
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
    flags = (*flags_for(config, svc, ips, ns_labels), *extra)
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
    return Decision(ips, pool_name(config, ips), changed, reason, message, warning, flags)


def blocked(
    config: Config, table: ClaimTable, ips: tuple[IPAddress, ...], claim: Claim, why: str
) -> Decision | None:
    """A flagged, unchanged decision when another Service blocks one of ``ips``."""
    for ip in ips:
        blockers = table.blockers(ip, claim)
        if blockers:
            return Decision(
                ips,
                pool_name(config, ips),
                reason=IP_CONFLICT,
                warning=True,
                message=f"IP {ip} is also held by {', '.join(blockers)} and {why}; kept "
                f"unchanged. Fix allow-shared-ip or ports, or set {MIGRATE_ANNOTATION}=true "
                "to move this Service",
            )
    return None
