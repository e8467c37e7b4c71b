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
class ObjectRef:
    """The config object a problem is about, as fields, so a reader (the controller putting
    an event on it) never parses the display text back.

    ``legacy``: the object was converted from the legacy ConfigMap, and this is where in its
    ``config`` document it came from (``peers[0]``): the problem belongs on the ConfigMap.
    """

    kind: str
    name: str
    namespace: str = ""
    legacy: str | None = None

    def __str__(self) -> str:
        if self.kind == "ConfigMap":
            return f"ConfigMap {self.namespace}/{self.name}".replace(" /", " ")
        where = f"{self.kind}/{self.name}"
        return f"{where} (from {self.legacy})" if self.legacy else where


#: What a problem is about: a config object, or (a plain label) a document or file as a
#: whole, e.g. ``"config"`` or ``"file.yaml[2]"``.
Subject = ObjectRef | str


@dataclass(frozen=True)
class Problem:
    """One finding about one field of one object."""

    obj: Subject  # renders "IPAddressPool/prod", "BGPPeer/peer1 (from peers[0])", "config"
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

    def error(self, obj: Subject, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message))

    def warn(self, obj: Subject, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message, "warning"))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "warning")
