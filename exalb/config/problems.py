"""Config problems that name the object and the field path.

Every parser collects *all* problems of a config instead of stopping at the first one, so a
user fixes a broken config in one round trip. A problem renders as
``IPAddressPool/prod: spec.addresses[1]: "10.0.0.300/24" is not a CIDR or an a-b range``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    # Set on the line that stands for problems left out (:func:`capped`): how many, errors.
    omitted: tuple[int, int] | None = None

    def __str__(self) -> str:
        where = f"{self.obj}: {self.path}" if self.path else self.obj
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{where}: {self.message}"


class Problems:
    """A small collector handed through the parsers; keeps the order problems were found."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self._counted = 0  # items[:_counted] are reflected in _error_count
        self._error_count = 0

    def error(self, obj: Subject, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message))

    def warn(self, obj: Subject, path: str, message: str) -> None:
        self.items.append(Problem(obj, path, message, "warning"))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    @property
    def error_count(self) -> int:
        """How many errors so far, in amortised O(1): parsers ask before and after every
        object, and a config with 20,000 bad objects must not make that quadratic."""
        for p in self.items[self._counted :]:
            self._error_count += p.severity == "error"
        self._counted = len(self.items)
        return self._error_count

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.items if p.severity == "warning")


#: Problems handed on at most (to events, logs, ``/status``, the CLI); the rest are counted.
MAX_PROBLEMS = 500


def capped(problems: Sequence[Problem], limit: int = MAX_PROBLEMS) -> tuple[Problem, ...]:
    """The first ``limit`` problems and one line counting the others: a config with 100,000
    bad entries must not become 100,000 events. The cap is applied after validity was
    decided, so it never turns an invalid config into a valid one; capping capped problems
    again keeps the count right."""
    kept = [p for p in problems if p.omitted is None]
    omitted = [p.omitted for p in problems if p.omitted is not None]
    rest = kept[limit:]
    count = len(rest) + sum(n for n, _ in omitted)
    errors = sum(1 for p in rest if p.severity == "error") + sum(e for _, e in omitted)
    if not count:
        return tuple(kept)
    summary = Problem(
        "config",
        "",
        f"and {count} more problems ({errors} errors) not shown",
        "error" if errors else "warning",
        (count, errors),
    )
    return (*kept[:limit], summary)
