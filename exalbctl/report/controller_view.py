"""The controller's view of one Service, as written on the Service object.

``status.loadBalancer.ingress``, the pool annotation, the ``exalb.io/*`` conditions (names
from :mod:`exalb.contracts.service_status`) and the Service's events, reduced to plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exalb.contracts.service_status import (
    CONDITION_PREFIX,
    FLAG_CONDITIONS,
    POOL_ANNOTATION,
    Condition,
)

JSON = dict[str, Any]


def service_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def ingress_ips(obj: Mapping[str, Any]) -> list[str]:
    lb = (obj.get("status") or {}).get("loadBalancer") or {}
    return [str(i["ip"]) for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


def allocated_pool(obj: Mapping[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(POOL_ANNOTATION)
    return str(value) if value else None


def our_conditions(obj: Mapping[str, Any]) -> list[JSON]:
    """The controller's conditions (``exalb.io/*``), as written."""
    conds = (obj.get("status") or {}).get("conditions") or []
    return [
        {
            "type": str(c.get("type")),
            "status": str(c.get("status")),
            "reason": c.get("reason"),
            "message": c.get("message"),
            "lastTransitionTime": c.get("lastTransitionTime"),
        }
        for c in conds
        if isinstance(c, dict) and str(c.get("type", "")).startswith(CONDITION_PREFIX)
    ]


def _condition_true(conds: Sequence[Mapping[str, Any]], ctype: str) -> bool | None:
    for c in conds:
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return None


def controller_view(obj: Mapping[str, Any]) -> JSON:
    """What the controller says about one Service."""
    spec = obj.get("spec") or {}
    conds = our_conditions(obj)
    allocated = _condition_true(conds, Condition.ALLOCATED)
    # the flag's name where the IP is kept although MetalLB would move it, or a request is
    # not met (README "How exalb differs")
    flags = [str(f) for f, ctype in FLAG_CONDITIONS.items() if _condition_true(conds, ctype)]
    if _condition_true(conds, Condition.CONFLICT):
        flags.append("ipConflict")
    if allocated is False:
        reason = next(
            (c.get("reason") for c in conds if c["type"] == Condition.ALLOCATED), "Pending"
        )
        flags.append(f"pending({reason})")
    return {
        "found": True,
        "type": spec.get("type"),
        "loadBalancerClass": spec.get("loadBalancerClass"),
        "externalTrafficPolicy": spec.get("externalTrafficPolicy"),
        "ips": ingress_ips(obj),
        "pool": allocated_pool(obj),
        "allocated": allocated,
        "outOfPool": bool(_condition_true(conds, Condition.OUT_OF_POOL)),
        "conflict": bool(_condition_true(conds, Condition.CONFLICT)),
        "flags": flags,
        "conditions": conds,
    }


def event_rows(events: Iterable[Mapping[str, Any]], last: int = 5) -> list[JSON]:
    """The ``last`` events, oldest first (as ``kubectl describe`` lists them)."""

    def when(e: Mapping[str, Any]) -> str:
        return str(
            e.get("lastTimestamp")
            or e.get("eventTime")
            or e.get("firstTimestamp")
            or (e.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    rows = [
        {
            "time": when(e) or None,
            "type": e.get("type"),
            "reason": e.get("reason"),
            "message": e.get("message"),
            "count": e.get("count"),
            "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
        }
        for e in events
    ]
    rows.sort(key=lambda r: str(r["time"] or ""))
    return rows[-last:] if last > 0 else rows
