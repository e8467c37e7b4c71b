"""Which IP families a Service may hold and which to try, by its ``ipFamilyPolicy`` (pure).

MetalLB's three policies: SingleStack takes the primary family; PreferDualStack takes both
when the Service has an IPv4 and an IPv6 cluster IP, else falls back to one; RequireDualStack
takes both or nothing.
"""

from __future__ import annotations

from controller.decision import NOT_ENOUGH_CLUSTER_IPS, AllocationError
from exalb.config.model import Family, IPAddress
from exalb.views import ServiceView


def family_of(ip: IPAddress) -> Family:
    return 4 if ip.version == 4 else 6


def families_of(svc: ServiceView) -> frozenset[Family]:
    """The families a Service's load-balancer IPs may have: both for a dual-stack policy
    with an IPv4 and an IPv6 cluster IP, else the primary one (MetalLB's
    ``serviceFamilyChanged`` judges status IPs by the same rule)."""
    dual = svc.family_policy in ("PreferDualStack", "RequireDualStack")
    if dual and len(set(svc.cluster_ip_families)) >= 2:
        return frozenset({4, 6})
    return frozenset({svc.primary_family})


def family_attempts(svc: ServiceView) -> list[tuple[Family, ...]]:
    """Which family sets to try for a new allocation, in order (MetalLB's three
    ipFamilyPolicy rules). Raises :class:`AllocationError` when the policy cannot be met."""
    cluster = tuple(dict.fromkeys(svc.cluster_ip_families)) or (svc.primary_family,)
    primary = svc.primary_family
    other: Family = 6 if primary == 4 else 4
    if svc.family_policy == "RequireDualStack":
        if len(cluster) < 2:
            raise AllocationError(
                NOT_ENOUGH_CLUSTER_IPS, "RequireDualStack needs an IPv4 and an IPv6 cluster IP"
            )
        return [(primary, other)]
    if svc.family_policy == "PreferDualStack" and len(cluster) >= 2:
        return [(primary, other), (primary,), (other,)]
    return [(primary,)]
