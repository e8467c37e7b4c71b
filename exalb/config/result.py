"""The outcome of parsing a config: a model, or every reason it was refused."""

from __future__ import annotations

from dataclasses import dataclass

from exalb.config.model import Config
from exalb.config.problems import Problem, Problems, capped


@dataclass(frozen=True)
class ParseResult:
    """``config`` is set only when there are no errors; warnings never block a config.

    Callers keep their last good config when ``config`` is ``None`` (bad input must never
    lose state), and surface ``problems`` as events, status conditions and log lines.
    """

    config: Config | None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def of(cls, config: Config, problems: Problems) -> ParseResult:
        return cls(None if problems.error_count else config, capped(problems.items))

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")
