"""What the controller writes on a Service, computed from a decision (pure).

Writes are diffs against the object as last seen, so a converge that changes nothing sends
nothing, and a controller restart that restores every assignment writes nothing either.
Conditions (``status.conditions``) say why a Service is pending, out of pool or in conflict,
in a form ``kubectl get svc -o yaml`` and tooling can read; a merge patch replaces the whole
list, so conditions of other controllers are carried over unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.decision import (
    ADDITIONAL_ASSIGN_FAILED,
    EXTRA_IPS_RELEASED,
    IP_CONFLICT,
    IP_OUT_OF_POOL,
    Decision,
)
from exalb.config.model import IPAddress
from exalb.contracts.service_status import FLAG_CONDITIONS, POOL_ANNOTATION, Condition

OUR_CONDITIONS = tuple(Condition)

_REASON_OK = re.compile(r"[^A-Za-z0-9_,:]")


def condition_reason(reason: str) -> str:
    """Event reasons may hold spaces ("not enough clusterips"); condition reasons may not."""
    words = [w for w in _REASON_OK.sub(" ", reason).split() if w]
    text = "".join(w[:1].upper() + w[1:] for w in words)
    return text or "Unknown"


@dataclass(frozen=True)
class ServicePatches:
    """Merge patches for the status subresource and for metadata; ``None`` = nothing."""

    status: dict[str, Any] | None
    metadata: dict[str, Any] | None


def current_ingress(obj: Mapping[str, Any]) -> list[str]:
    lb = (obj.get("status") or {}).get("loadBalancer") or {}
    return [str(i.get("ip")) for i in lb.get("ingress") or [] if i.get("ip")]


def _condition(
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    existing: Mapping[str, Mapping[str, Any]],
    now: str,
    generation: int | None,
) -> dict[str, Any]:
    old = existing.get(ctype)
    state = "True" if status else "False"
    changed = old is None or old.get("status") != state
    cond: dict[str, Any] = {
        "type": ctype,
        "status": state,
        "reason": condition_reason(reason),
        "message": message[:32000],
        "lastTransitionTime": now if changed or not old else old.get("lastTransitionTime", now),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def desired_conditions(
    decision: Decision | None, obj: Mapping[str, Any], now: str
) -> list[dict[str, Any]]:
    """Other controllers' conditions unchanged, plus ours (none when not ours)."""
    conds: Sequence[Mapping[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    existing = {str(c.get("type")): c for c in conds}
    out = [dict(c) for c in conds if c.get("type") not in OUR_CONDITIONS]
    if decision is None:
        return out
    gen = (obj.get("metadata") or {}).get("generation")
    generation = int(gen) if isinstance(gen, int) else None
    ips = ", ".join(map(str, decision.ips))
    if decision.pending:
        out.append(
            _condition(
                Condition.ALLOCATED,
                False,
                decision.reason or "Pending",
                decision.message or "waiting for an IP",
                existing,
                now,
                generation,
            )
        )
    else:
        flagged = {f.reason for f in decision.flags}
        quiet = {"", IP_OUT_OF_POOL, IP_CONFLICT, ADDITIONAL_ASSIGN_FAILED, EXTRA_IPS_RELEASED}
        reason = "IPAllocated" if decision.reason in quiet | flagged else decision.reason
        message = f"{ips} from pool {decision.pool}" if decision.pool else ips
        out.append(
            _condition(Condition.ALLOCATED, True, reason, message, existing, now, generation)
        )
    for flag in decision.flags:
        out.append(
            _condition(
                FLAG_CONDITIONS[flag.kind],
                True,
                flag.reason,
                flag.message,
                existing,
                now,
                generation,
            )
        )
    if decision.reason == IP_CONFLICT:
        out.append(
            _condition(
                Condition.CONFLICT, True, IP_CONFLICT, decision.message, existing, now, generation
            )
        )
    return out


def _same_conditions(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    def norm(c: Mapping[str, Any]) -> tuple[Any, ...]:
        return (
            c.get("type"),
            c.get("status"),
            c.get("reason"),
            c.get("message"),
            c.get("observedGeneration"),
        )

    return sorted(map(norm, a), key=str) == sorted(map(norm, b), key=str)


def _adopted(have: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> bool:
    """An IP someone else assigned (MetalLB, before a migration) is adopted without a write.

    The only change would be adding ``IPAllocated=True`` to a Service that carries none of
    our conditions, and its ingress already says as much; writing it would cost one status
    patch per Service at the moment of a migration (thousands of writes that tell nothing).
    The condition is written with the next real change (a flag, a conflict, a new IP)."""
    if any(c.get("type") in OUR_CONDITIONS for c in have):
        return False
    ours = [c for c in want if c.get("type") in OUR_CONDITIONS]
    return [(c.get("type"), c.get("status")) for c in ours] == [(Condition.ALLOCATED, "True")]


def service_patches(obj: Mapping[str, Any], decision: Decision | None, now: str) -> ServicePatches:
    """Patches that make ``obj`` reflect ``decision`` (``None``: not ours any more)."""
    ips: tuple[IPAddress, ...] = decision.ips if decision else ()
    want_ingress = [str(ip) for ip in ips]
    status_patch: dict[str, Any] = {}
    if current_ingress(obj) != want_ingress:
        status_patch["loadBalancer"] = (
            {"ingress": [{"ip": ip} for ip in want_ingress]} if want_ingress else {}
        )
    have_conds = (obj.get("status") or {}).get("conditions") or []
    want_conds = desired_conditions(decision, obj, now)
    if not _same_conditions(have_conds, want_conds) and not (
        not status_patch and _adopted(have_conds, want_conds)
    ):
        status_patch["conditions"] = want_conds or None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    # An out-of-pool IP keeps naming the pool it came from: the speakers keep announcing it
    # with that pool's advertisements while the pool object exists (no churn).
    want_pool = None
    if decision and decision.ips:
        want_pool = decision.pool or annotations.get(POOL_ANNOTATION)
    meta_patch = None
    if annotations.get(POOL_ANNOTATION) != want_pool:
        meta_patch = {"metadata": {"annotations": {POOL_ANNOTATION: want_pool}}}
    return ServicePatches({"status": status_patch} if status_patch else None, meta_patch)
