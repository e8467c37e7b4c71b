"""What the controller writes on a Service for others to read: conditions, flags, annotations.

The controller writes them (:mod:`controller.status`), ``kubectl exalb`` reads them
(:mod:`exalbctl.report`); both take the names from here, so the two can never drift apart.

* **Flags** are the allocator's "kept, but not what the current config would give"
  findings (an IP is a contract: exalb keeps it and says so, where MetalLB would move it).
* **Conditions** (``status.conditions``, type prefix ``exalb.io/``): ``IPAllocated`` (True
  with an IP, False while pending), ``IPConflict``, and one per flag, True while the flag
  holds and absent otherwise.
"""

from __future__ import annotations

from enum import StrEnum

CONDITION_PREFIX = "exalb.io/"
#: Which pool an IP was allocated from (MetalLB's annotation, written by the controller).
POOL_ANNOTATION = "metallb.io/ip-allocated-from-pool"


class FlagKind(StrEnum):
    """A Service's IP is kept although the current config would not give it (or a request
    cannot be met); in the order their messages lead an event."""

    OUT_OF_POOL = "outOfPool"
    WRONG_FAMILY = "wrongFamily"
    NOT_SELECTED_BY_POOL = "notSelectedByPool"
    REQUEST_NOT_MET = "requestNotMet"
    MISSING_FAMILY = "missingFamily"


class Condition(StrEnum):
    ALLOCATED = "exalb.io/IPAllocated"
    CONFLICT = "exalb.io/IPConflict"
    OUT_OF_POOL = "exalb.io/OutOfPool"
    WRONG_FAMILY = "exalb.io/WrongFamily"
    NOT_SELECTED_BY_POOL = "exalb.io/NotSelectedByPool"
    REQUEST_NOT_MET = "exalb.io/RequestNotMet"
    MISSING_FAMILY = "exalb.io/MissingFamily"


#: The condition that says a flag holds.
FLAG_CONDITIONS: dict[FlagKind, Condition] = {
    FlagKind.OUT_OF_POOL: Condition.OUT_OF_POOL,
    FlagKind.WRONG_FAMILY: Condition.WRONG_FAMILY,
    FlagKind.NOT_SELECTED_BY_POOL: Condition.NOT_SELECTED_BY_POOL,
    FlagKind.REQUEST_NOT_MET: Condition.REQUEST_NOT_MET,
    FlagKind.MISSING_FAMILY: Condition.MISSING_FAMILY,
}
