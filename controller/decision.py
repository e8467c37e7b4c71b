"""What the allocator decides for one Service, and the event reasons it says it with.

Pure values: a :class:`Decision` is what a Service's status should hold plus what to tell its
owner; a :class:`Flag` is something about the kept IPs that stays true until the Service or the
config changes. The controller turns both into status, conditions, events and metrics
(:mod:`controller.status`, :mod:`controller.metrics`); ``exalbctl plan`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from exalb.config.model import IPAddress
from exalb.contracts.service_status import FlagKind

# Event reasons (MetalLB's, so tooling that greps them keeps working, plus exalb's own).
IP_ALLOCATED = "IPAllocated"
ALLOCATION_FAILED = "AllocationFailed"
LOAD_BALANCER_FAILED = "LoadBalancerFailed"
NOT_ENOUGH_CLUSTER_IPS = "not enough clusterips"
ADDITIONAL_ASSIGN_FAILED = "AdditionalAssignFailed"
IP_OUT_OF_POOL = "IPOutOfPool"
IP_CONFLICT = "IPConflict"
IP_MIGRATED = "IPMigrated"
IP_WRONG_FAMILY = "IPWrongFamily"
NOT_SELECTED_BY_POOL = "NotSelectedByPool"
EXTRA_IPS_RELEASED = "ExtraIPsReleased"

# The flags a Service can carry (the contract with readers of the Service), in the order
# their messages lead an event.
FLAG_KINDS: tuple[FlagKind, ...] = tuple(FlagKind)
# Flags that mean "kept although the current config would not give it": exalb.io/migrate
# asks to move such a Service into the current config.
MIGRATABLE: frozenset[FlagKind] = frozenset(
    {FlagKind.OUT_OF_POOL, FlagKind.WRONG_FAMILY, FlagKind.NOT_SELECTED_BY_POOL}
)


@dataclass(frozen=True)
class Flag:
    """Something about a Service's IPs that stays true until the Service or config changes.

    MetalLB would resolve each of these by clearing the IP; exalb keeps it, and the
    controller turns each flag into a condition, an event (``reason``) and a metric.
    """

    kind: FlagKind
    reason: str  # the event reason
    message: str
    ips: tuple[IPAddress, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What a Service has after one allocator call, and what to tell its owner.

    ``ips`` is what the Service's status should hold (empty: pending). ``reason`` is an
    event reason or empty when there is nothing new to say.
    """

    ips: tuple[IPAddress, ...]
    pool: str | None = None
    changed: bool = False
    reason: str = ""
    message: str = ""
    warning: bool = False
    flags: tuple[Flag, ...] = ()

    @property
    def pending(self) -> bool:
        return not self.ips

    def flag(self, kind: FlagKind) -> Flag | None:
        return next((f for f in self.flags if f.kind == kind), None)

    @property
    def out_of_pool(self) -> tuple[IPAddress, ...]:
        found = self.flag(FlagKind.OUT_OF_POOL)
        return found.ips if found else ()

    def events(self) -> tuple[tuple[str, str, bool], ...]:
        """(reason, message, warning) to record: the headline, then every flag it does not
        already say."""
        out: list[tuple[str, str, bool]] = []
        if self.reason:
            out.append((self.reason, self.message, self.warning))
        for f in self.flags:
            if (f.reason, f.message) != (self.reason, self.message):
                out.append((f.reason, f.message, True))
        return tuple(out)


class AllocationError(Exception):
    """A new allocation cannot be made; ``reason`` and ``message`` become the pending
    Service's event. Raised and caught inside the allocator only."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
