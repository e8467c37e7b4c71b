"""What the doctor reports: findings with severity, evidence and fix, per check (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Evidence lines kept per finding; the rest is summarised as "... and N more".
MAX_EVIDENCE = 12


class Severity(StrEnum):
    """``error``: traffic is (or will be) lost or wrong; the command exits 1.
    ``warning``: likely a mistake, or the doctor could not look. ``info``: worth knowing."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    title: str
    evidence: tuple[str, ...] = ()
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": str(self.severity),
            "title": self.title,
            "evidence": list(self.evidence),
            "fix": self.fix,
        }


def evidence(lines: Iterable[str], limit: int = MAX_EVIDENCE) -> tuple[str, ...]:
    """At most ``limit`` lines, the cut ones counted (a finding about 5,000 Services stays
    readable)."""
    items = list(lines)
    if len(items) <= limit:
        return tuple(items)
    return (*items[: limit - 1], f"... and {len(items) - limit + 1} more")


@dataclass(frozen=True)
class CheckResult:
    check: str
    title: str  # what the check looks at
    findings: tuple[Finding, ...] = ()
    skipped: str | None = None  # why it could not run (an input could not be read)

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        return "findings" if self.findings else "ok"


@dataclass(frozen=True)
class Report:
    namespace: str
    results: tuple[CheckResult, ...]

    @property
    def findings(self) -> list[Finding]:
        found = [f for r in self.results for f in r.findings]
        return sorted(found, key=lambda f: RANK[f.severity])  # stable: check order kept

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def exit_code(self) -> int:
        """1 when anything is an error (scripts and CI gate on it), else 0."""
        return 1 if self.count(Severity.ERROR) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "summary": {str(s): self.count(s) for s in Severity},
            "findings": [f.to_json() for f in self.findings],
            "checks": [_check_json(r) for r in self.results],
        }


def _check_json(r: CheckResult) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.check, "title": r.title, "status": r.status}
    if r.skipped is not None:
        out["skipped"] = r.skipped
    return out


def names(items: Sequence[str], limit: int = 8) -> str:
    """``a, b, c`` or ``a, b, ... (12)`` for titles."""
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, ... ({len(items)})"
