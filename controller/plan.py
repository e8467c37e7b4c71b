"""What a config would do to the Services, before it is applied (pure).

Runs the same allocator the controller runs, in the same order (restore every status IP
first, then allocate for pending Services), against the proposed config, and classifies the
outcome per Service. Because ties are broken deterministically, the plan is what the
controller will do, not a guess. Each row also carries the flags the controller would set
(``outOfPool``, ``wrongFamily``, ``notSelectedByPool``, ``requestNotMet``,
``missingFamily``): the places where MetalLB would move an IP and exalb keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from controller.allocator import IP_CONFLICT, Allocator, Decision
from exalb.config.model import Config, IPAddress
from exalb.contracts.service_status import FlagKind
from exalb.views import ServiceView

Action = Literal["keep", "new", "change", "pending", "out-of-pool", "conflict", "skip"]


@dataclass(frozen=True)
class PlanRow:
    service: str
    current: tuple[IPAddress, ...]
    planned: tuple[IPAddress, ...]
    pool: str | None
    action: Action
    message: str = ""
    flags: tuple[FlagKind, ...] = ()


def is_ours(svc: ServiceView, lb_class: str | None) -> bool:
    """MetalLB's filter: type LoadBalancer, and the class matches (none means class-less)."""
    return svc.is_load_balancer and svc.load_balancer_class == lb_class


def plan(
    config: Config,
    services: Iterable[ServiceView],
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    lb_class: str | None = None,
) -> tuple[PlanRow, ...]:
    labels = namespace_labels or {}
    views = sorted(services, key=lambda s: (s.creation_timestamp, s.key))
    ours = [s for s in views if is_ours(s, lb_class)]
    rows: dict[str, PlanRow] = {
        s.key: PlanRow(
            s.key,
            s.assigned_ips,
            (),
            None,
            "skip",
            "not type LoadBalancer"
            if not s.is_load_balancer
            else f"loadBalancerClass {s.load_balancer_class!r} is not ours",
        )
        for s in views
        if not is_ours(s, lb_class)
    }
    al = Allocator(config)
    al.restore_all(ours)
    for s in ours:  # existing assignments first, then new ones, as the controller does
        d = al.assign(s, labels.get(s.namespace, {})) if s.assigned_ips else None
        if d is not None:
            rows[s.key] = _row(s, d)
    for s in ours:
        if not s.assigned_ips:
            rows[s.key] = _row(s, al.assign(s, labels.get(s.namespace, {})))
    return tuple(rows[s.key] for s in sorted(views, key=lambda v: v.key))


def _row(s: ServiceView, d: Decision) -> PlanRow:
    ips = d.ips
    action: Action
    if d.out_of_pool:
        action = "out-of-pool"
    elif d.reason == IP_CONFLICT:
        action = "conflict"
    elif not ips:
        action = "pending"
    elif not s.assigned_ips:
        action = "new"
    elif set(ips) == set(s.assigned_ips):
        action = "keep"
    else:
        action = "change"
    flags = tuple(f.kind for f in d.flags)
    if flags:
        message = " | ".join(f.message for f in d.flags)
    else:
        message = d.message if action != "keep" else ""
    return PlanRow(s.key, s.assigned_ips, ips, d.pool, action, message, flags)
