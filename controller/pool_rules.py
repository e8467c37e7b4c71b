"""Which pool holds an IP, may assign it, and selects a Service (pure queries on a Config).

"Holds" is by CIDR alone; "may assign" also honours ``avoidBuggyIPs``; "selects" is a pool's
``serviceAllocation`` (namespaces, namespace and service selectors). The automatic order of
pools is MetalLB's, with ties broken by name so that a ``plan`` is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exalb.config.model import Config, IPAddress, Pool
from exalb.views import ServiceView


def pool_name(config: Config, ips: tuple[IPAddress, ...]) -> str | None:
    """The one pool whose CIDRs hold every IP (``avoidBuggyIPs`` aside), else None."""
    pools = {p.name if p else None for p in (config.pool_of(ip) for ip in ips)}
    return pools.pop() if len(pools) == 1 else None


def outside(config: Config, ips: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    """The IPs no pool may assign: outside every CIDR, or excluded by avoidBuggyIPs."""
    return tuple(ip for ip in ips if config.allocatable_pool_of(ip) is None)


def allows(pool: Pool, svc: ServiceView, ns_labels: Mapping[str, str]) -> bool:
    """Whether the pool's ``serviceAllocation`` (if any) selects the Service."""
    sa = pool.service_allocation
    return sa is None or sa.matches(svc.namespace, ns_labels, svc.label_map)


def candidate_pools(
    config: Config, svc: ServiceView, ns_labels: Mapping[str, str]
) -> tuple[Pool, ...]:
    """Automatic order: pinned pools by priority (0 last) then name; then the rest."""
    pinned = [
        p
        for p in config.pools
        if p.auto_assign and p.service_allocation is not None and allows(p, svc, ns_labels)
    ]
    pinned.sort(
        key=lambda p: (
            p.service_allocation.priority == 0 if p.service_allocation else True,
            p.service_allocation.priority if p.service_allocation else 0,
            p.name,
        )
    )
    rest = [p for p in config.pools if p.auto_assign and p.service_allocation is None]
    return (*pinned, *rest)
