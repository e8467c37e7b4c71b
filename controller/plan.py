"""What a config would do to the Services, before it is applied (pure).

Runs the same allocator the controller runs, in the same order (restore every status IP
first, then allocate for pending Services), against the proposed config, and classifies the
outcome per Service. Because ties are broken deterministically, the plan is what the
controller will do, not a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from controller.allocator import IP_CONFLICT, IP_OUT_OF_POOL, Allocator
from exalb.config.model import Config, IPAddress
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
            rows[s.key] = _row(s, d.ips, d.pool, d.reason, d.message)
    for s in ours:
        if not s.assigned_ips:
            d = al.assign(s, labels.get(s.namespace, {}))
            rows[s.key] = _row(s, d.ips, d.pool, d.reason, d.message)
    return tuple(rows[s.key] for s in sorted(views, key=lambda v: v.key))


def _row(
    s: ServiceView, ips: tuple[IPAddress, ...], pool: str | None, reason: str, message: str
) -> PlanRow:
    action: Action
    if reason == IP_OUT_OF_POOL:
        action = "out-of-pool"
    elif reason == IP_CONFLICT:
        action = "conflict"
    elif not ips:
        action = "pending"
    elif not s.assigned_ips:
        action = "new"
    elif set(ips) == set(s.assigned_ips):
        action = "keep"
    else:
        action = "change"
    return PlanRow(s.key, s.assigned_ips, ips, pool, action, message if action != "keep" else "")
