"""The controller's Prometheus metrics; names mirror MetalLB's with the ``exalb_`` prefix.

Per pool *and family* (MetalLB splits IPv4/IPv6 only in some series). Counts are exact
Python ints in the allocator; Prometheus stores float64, exact up to 2**53, so an IPv6 /64's
capacity (2**64) is exact but a partly used one is rounded in the last digits — the exact
figures are also written to each IPAddressPool's status.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from controller.allocator import FLAG_KINDS, Allocator

ADDRESSES = Gauge(
    "exalb_allocator_addresses_total", "Allocatable addresses in the pool", ["pool", "family"]
)
IN_USE = Gauge(
    "exalb_allocator_addresses_in_use_total",
    "Addresses of the pool assigned to Services",
    ["pool", "family"],
)
SERVICES = Gauge(
    "exalb_allocator_services_allocated_total", "Services with IPs from the pool", ["pool"]
)
OUT_OF_POOL = Gauge(
    "exalb_allocator_out_of_pool_services",
    "Services keeping an IP that lies in no pool (kept, not moved)",
)
FLAGGED = Gauge(
    "exalb_allocator_flagged_services",
    "Services carrying a flag: an IP kept where MetalLB would move it (outOfPool, "
    "wrongFamily, notSelectedByPool), a request not met, or a missing dual-stack family",
    ["flag"],
)
CONFLICTS = Gauge(
    "exalb_allocator_conflicting_services",
    "Services whose status IP clashes with another Service's (kept)",
)
PENDING = Gauge("exalb_allocator_pending_services", "Services of ours without an IP")
CONFIG_LOADED = Gauge(
    "exalb_k8s_client_config_loaded_bool", "1 when a valid config has been loaded since start"
)
CONFIG_STALE = Gauge(
    "exalb_k8s_client_config_stale_bool",
    "1 when the latest config is invalid and the last good one is in force",
)
UPDATES = Counter("exalb_k8s_client_updates", "Objects processed by the reconcile loop")
UPDATE_ERRORS = Counter(
    "exalb_k8s_client_update_errors", "Reconciles that failed (retried with backoff)"
)


def publish_allocator(
    al: Allocator, pending: int, conflicts: int, flagged: Mapping[str, int] | None = None
) -> None:
    ADDRESSES.clear()
    IN_USE.clear()
    SERVICES.clear()
    for u in al.usage():
        fam = f"IPv{u.family}"
        ADDRESSES.labels(u.pool, fam).set(u.capacity)
        IN_USE.labels(u.pool, fam).set(u.in_use)
    for pool, n in al.services_per_pool().items():
        SERVICES.labels(pool).set(n)
    OUT_OF_POOL.set(len(al.out_of_pool()))
    for kind in FLAG_KINDS:
        FLAGGED.labels(kind).set((flagged or {}).get(kind, 0))
    PENDING.set(pending)
    CONFLICTS.set(conflicts)
