"""Config problems that name the object and the field path.

Every parser collects *all* problems of a config instead of stopping at the first one, so a
user fixes a broken config in one round trip. A problem renders as
``IPAddressPool/prod: spec.addresses[1]: "10.0.0.300/24" is not a CIDR or an a-b range``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding about one field of one object."""

    obj: str  # "IPAddressPool/prod", "BGPPeer/peer1 (from peers[0])", "config"
    path: str  # "spec.addresses[1]"; empty when the whole object is meant
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.obj}: {self.path}" if self.path else self.obj
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{where}: {self.message}"


class Problems:
    """A small collector handed through the parsers; keeps the order problems were found."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def error(self, obj: str, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message))

    def warn(self, obj: str, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message, "warning"))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "warning")
