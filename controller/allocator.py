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

The pieces, each pure: :mod:`controller.decision` (what is decided: Decision, Flag, event
reasons), :mod:`controller.claims` (who holds which IP), :mod:`controller.families` (which
families a Service may hold), :mod:`controller.pool_rules` (which pool holds, may assign,
selects), :mod:`controller.new_allocation` (MetalLB's order for new IPs),
:mod:`controller.keeping` (trimming and flags for kept IPs). This module decides *when* an IP
may move: restore, keep, complete, or move on an explicit request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.claims import Claim, ClaimTable, PoolUsage, claim_of
from controller.decision import (
    ADDITIONAL_ASSIGN_FAILED,
    ALLOCATION_FAILED,
    EXTRA_IPS_RELEASED,
    FLAG_KINDS,
    IP_ALLOCATED,
    IP_CONFLICT,
    IP_MIGRATED,
    IP_OUT_OF_POOL,
    IP_WRONG_FAMILY,
    LOAD_BALANCER_FAILED,
    MIGRATABLE,
    NOT_ENOUGH_CLUSTER_IPS,
    NOT_SELECTED_BY_POOL,
    AllocationError,
    Decision,
    Flag,
)
from controller.families import families_of, family_of
from controller.keeping import blocked, flags_for, kept, trim
from controller.new_allocation import allocate_new, second_family
from controller.pool_rules import candidate_pools, outside, pool_name
from exalb.config.model import Config, Family, IPAddress, Pool
from exalb.contracts.service_status import FlagKind
from exalb.views import MIGRATE_ANNOTATION, ServiceView

# The allocator's public face: callers import these from here.
__all__ = [
    "ADDITIONAL_ASSIGN_FAILED",
    "ALLOCATION_FAILED",
    "EXTRA_IPS_RELEASED",
    "FLAG_KINDS",
    "IP_ALLOCATED",
    "IP_CONFLICT",
    "IP_MIGRATED",
    "IP_OUT_OF_POOL",
    "IP_WRONG_FAMILY",
    "LOAD_BALANCER_FAILED",
    "MIGRATABLE",
    "NOT_ENOUGH_CLUSTER_IPS",
    "NOT_SELECTED_BY_POOL",
    "Allocator",
    "Claim",
    "Decision",
    "Flag",
    "PoolUsage",
    "claim_of",
    "families_of",
]


class Allocator:
    """Holds who uses which IP and decides new assignments. Not thread-safe by design: the
    controller runs one reconcile loop."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config or Config()
        self._table = ClaimTable(self._config)

    # ----------------------------------------------------------------- config
    @property
    def config(self) -> Config:
        return self._config

    def set_config(self, config: Config) -> tuple[str, ...]:
        """Swap the config. No IP moves. Returns the Services whose pool status changed
        (became out-of-pool, came back, or now sit in another pool)."""

        def where(ips: tuple[IPAddress, ...]) -> tuple[str | None, tuple[IPAddress, ...]]:
            return pool_name(self._config, ips), outside(self._config, ips)

        before = {key: where(ips) for key, ips in self._table.holdings()}
        self._config = config
        self._table.rebuild(config)
        return tuple(sorted(k for k, ips in self._table.holdings() if where(ips) != before[k]))

    # ----------------------------------------------------------------- queries
    def assigned(self, key: str) -> tuple[IPAddress, ...]:
        return self._table.held(key) or ()

    def holders(self, ip: IPAddress) -> tuple[str, ...]:
        return self._table.holders(ip)

    def services(self) -> tuple[str, ...]:
        return self._table.services()

    def out_of_pool(self) -> dict[str, tuple[IPAddress, ...]]:
        """Services holding IPs no pool may assign (see :func:`controller.pool_rules.outside`),
        with those IPs."""
        out: dict[str, tuple[IPAddress, ...]] = {}
        for key, ips in self._table.holdings():
            lost = outside(self._config, ips)
            if lost:
                out[key] = lost
        return out

    def usage(self) -> tuple[PoolUsage, ...]:
        return self._table.usage()

    def services_per_pool(self) -> dict[str, int]:
        counts = {p.name: 0 for p in self._config.pools}
        for _key, ips in self._table.holdings():
            name = pool_name(self._config, ips)
            if name is not None:
                counts[name] += 1
        return counts

    def candidate_pools(self, svc: ServiceView, ns_labels: Mapping[str, str]) -> tuple[Pool, ...]:
        """Automatic order: pinned pools by priority (0 last) then name; then the rest."""
        return candidate_pools(self._config, svc, ns_labels)

    # ----------------------------------------------------------------- release
    def release(self, key: str) -> tuple[IPAddress, ...]:
        """Forget a Service (deleted, no longer LoadBalancer, or not ours any more)."""
        return self._table.release(key)

    # ----------------------------------------------------------------- restore
    def restore_all(self, services: Iterable[ServiceView]) -> dict[str, Decision]:
        """Claim every Service's status IPs, oldest Service first, before any allocation."""
        ordered = sorted(
            (s for s in services if s.assigned_ips), key=lambda s: (s.creation_timestamp, s.key)
        )
        return {s.key: self.restore(s) for s in ordered}

    def restore(self, svc: ServiceView) -> Decision:
        """Take the IPs a Service already has as given (at most one per family it may
        hold, see :func:`controller.keeping.trim`). Never moves them."""
        claim = claim_of(svc)
        ips = trim(self._config, svc, tuple(dict.fromkeys(svc.assigned_ips)))
        if self._table.held(svc.key) is not None:
            self.release(svc.key)
        conflict = blocked(
            self._config, self._table, ips, claim, "the sharing rules do not allow both"
        )
        if conflict is not None:
            return conflict
        self._table.hold(svc.key, ips, claim)
        return kept(self._config, svc, ips, None, changed=False)

    # ----------------------------------------------------------------- assign
    def assign(
        self, svc: ServiceView, namespace_labels: Mapping[str, str] | None = None
    ) -> Decision:
        """Converge one Service of type LoadBalancer that is ours."""
        ns_labels = namespace_labels or {}
        if svc.errors:
            held = self._table.held(svc.key)
            return Decision(
                svc.assigned_ips if held is None else held,
                reason=LOAD_BALANCER_FAILED,
                message="; ".join(svc.errors),
                warning=True,
            )
        if self._table.held(svc.key) is None and svc.assigned_ips:
            restored = self.restore(svc)
            if restored.reason == IP_CONFLICT:
                return self._move(svc, ns_labels, (), IP_MIGRATED) if svc.migrate else restored
        held = self._table.held(svc.key)
        if held is None:
            return self._fresh(svc, ns_labels)
        move = self._move_reason(svc, held, ns_labels)
        if move is not None:
            return self._move(svc, ns_labels, held, move)
        return self._refresh(svc, held, ns_labels)

    def _move_reason(
        self, svc: ServiceView, held: tuple[IPAddress, ...], ns_labels: Mapping[str, str]
    ) -> str | None:
        """The event reason when the user asked for other IPs than ``held``, else None."""
        if svc.requested_ips and set(svc.requested_ips) != set(held):
            return IP_ALLOCATED
        # The pool the IP came from, also when that pool was deleted meanwhile (the
        # annotation we wrote says it): an edited config is no request to move.
        current = pool_name(self._config, held) or svc.allocated_pool
        if svc.requested_pool and current != svc.requested_pool:
            return IP_ALLOCATED
        if svc.migrate and any(
            f.kind in MIGRATABLE for f in flags_for(self._config, svc, held, ns_labels)
        ):
            return IP_MIGRATED
        return None

    def _refresh(
        self, svc: ServiceView, held: tuple[IPAddress, ...], ns_labels: Mapping[str, str]
    ) -> Decision:
        """Keep the IPs; update sharing data in place; add a missing dual-stack family."""
        claim = claim_of(svc)
        conflict = blocked(
            self._config,
            self._table,
            held,
            claim,
            "the Service's sharing data (allow-shared-ip, ports, policy) no longer "
            "allows sharing it",
        )
        if conflict is not None:
            return conflict
        self.release(svc.key)
        held = trim(self._config, svc, held)  # the Service's families may have shrunk
        self._table.hold(svc.key, held, claim)
        if svc.family_policy == "RequireDualStack" and len(set(svc.cluster_ip_families)) < 2:
            return kept(
                self._config,
                svc,
                held,
                ns_labels,
                reason=NOT_ENOUGH_CLUSTER_IPS,
                message="RequireDualStack needs an IPv4 and an IPv6 cluster IP; the current "
                "IP is kept",
                warning=True,
            )
        wanted = families_of(svc)
        have = {family_of(ip) for ip in held}
        if len(wanted) < 2 or len(have) != 1 or svc.requested_ips:
            return kept(self._config, svc, held, ns_labels)
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
        pool = self._config.pool(pool_name(self._config, held) or "")
        extra, problem = second_family(
            self._config, self._table, svc, held, ns_labels, claim, missing, pool
        )
        if extra is not None and pool is not None:
            ips = tuple(sorted((*held, extra), key=lambda a: a.version != svc.primary_family))
            self.release(svc.key)
            self._table.hold(svc.key, ips, claim)
            return kept(
                self._config,
                svc,
                ips,
                ns_labels,
                changed=True,
                reason=IP_ALLOCATED,
                message=f"added {extra} from pool {pool.name} ({svc.family_policy})",
            )
        text = f"cannot add an IPv{missing} address for {svc.family_policy}: {problem}"
        if svc.family_policy != "RequireDualStack":
            return kept(
                self._config, svc, held, ns_labels, reason=ADDITIONAL_ASSIGN_FAILED, message=text
            )
        flag = Flag(
            FlagKind.MISSING_FAMILY,
            ADDITIONAL_ASSIGN_FAILED,
            f"{text}; the current IP is kept. Add IPv{missing} addresses to the pool, or set "
            f"annotation {MIGRATE_ANNOTATION}=true to move the Service to a pool with both",
            held,
        )
        return kept(self._config, svc, held, ns_labels, extra=(flag,))

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
            self._table.hold(svc.key, old, claim_of(svc))
            text = f"{decision.message}; the current IP {', '.join(map(str, old))} is kept"
            flag = Flag(FlagKind.REQUEST_NOT_MET, decision.reason, text, old)
            return kept(
                self._config, svc, old, ns_labels, reason=decision.reason, message=text,
                warning=True, extra=(flag,),
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
            pool, ips = allocate_new(self._config, self._table, svc, claim, ns_labels)
        except AllocationError as failure:
            return Decision((), None, bool(svc.assigned_ips), failure.reason, failure.message, True)
        self._table.hold(svc.key, ips, claim)
        return Decision(
            ips,
            pool.name,
            tuple(svc.assigned_ips) != ips,
            IP_ALLOCATED,
            f"Assigned IP {', '.join(map(str, ips))} from pool {pool.name}",
        )
