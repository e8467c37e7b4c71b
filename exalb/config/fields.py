"""Typed, path-aware reading of one YAML/JSON mapping.

The parsers read user objects through :class:`Fields` so every type error names the object
and the full field path, unknown keys are reported (a typo such as ``autoAsign`` must not be
silently ignored), and a bad field never stops the rest of the object from being checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from exalb.config.model import LabelSelector, SelectorRequirement
from exalb.config.problems import Problems, Subject

_MISSING = object()


class Fields:
    """One mapping at ``path`` inside object ``obj``; reads record problems, never raise."""

    def __init__(
        self,
        data: Any,
        obj: Subject,
        path: str,
        problems: Problems,
        known: frozenset[str] | None = None,
    ) -> None:
        self.obj = obj
        self.path = path
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.error(obj, path, f"must be a mapping, got {_type_name(data)}")
            data = {}
        self.data: Mapping[str, Any] = data
        if known is not None:
            for key in data:
                if key not in known:
                    problems.error(obj, self.sub(str(key)), "unknown field")

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.problems.error(self.obj, self.sub(key) if key else self.path, message)

    def warn(self, key: str, message: str) -> None:
        self.problems.warn(self.obj, self.sub(key) if key else self.path, message)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.error(key, "is required")
            return None
        if not isinstance(value, str):
            self.error(key, f"must be a string, got {_type_name(value)}")
            return None
        if required and not value:
            self.error(key, "must not be empty")
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {value!r}")
            return default
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        low: int | None = None,
        high: int | None = None,
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be an integer, got {value!r}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(key, f"{value} is out of range ({low}..{high})")
            return default
        return value

    def items(self, key: str) -> Iterator[tuple[str, Any]]:
        """Entries of a list field with their paths; a non-list is reported once."""
        value = self.data.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.error(key, f"must be a list, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            yield f"{self.sub(key)}[{i}]", item

    def strings(self, key: str, *, unique: bool = False) -> tuple[str, ...]:
        out: list[str] = []
        for path, item in self.items(key):
            if not isinstance(item, str) or not item:
                self.problems.error(self.obj, path, f"must be a non-empty string, got {item!r}")
                continue
            if unique and item in out:
                self.problems.error(self.obj, path, f"duplicate entry {item!r}")
                continue
            out.append(item)
        return tuple(out)

    def mapping(self, key: str, known: frozenset[str] | None = None) -> Fields:
        return Fields(self.data.get(key), self.obj, self.sub(key), self.problems, known)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def read_selector(
    data: Any, obj: Subject, path: str, problems: Problems, *, legacy: bool = False
) -> LabelSelector:
    """A label selector; ``legacy`` uses the ConfigMap spelling (``match-labels``)."""
    ml_key, me_key = (
        ("match-labels", "match-expressions") if legacy else ("matchLabels", "matchExpressions")
    )
    f = Fields(data, obj, path, problems, frozenset({ml_key, me_key}))
    labels: list[tuple[str, str]] = []
    ml = f.raw(ml_key)
    if ml is not None:
        if not isinstance(ml, Mapping):
            f.error(ml_key, "must be a mapping of label keys to values")
        else:
            for k, v in ml.items():
                if not isinstance(v, str | int | float | bool):
                    f.error(f"{ml_key}.{k}", "must be a string")
                    continue
                labels.append((str(k), str(v)))
    reqs: list[SelectorRequirement] = []
    seen: dict[tuple[str | None, str | None, tuple[str, ...]], str] = {}
    for epath, expr in f.items(me_key):
        e = Fields(expr, obj, epath, problems, frozenset({"key", "operator", "values"}))
        key = e.string("key", required=True)
        op = e.string("operator", required=True)
        # MetalLB refuses a value given twice in one expression, and one expression given
        # twice in a selector (values compared as sets): internal/config/config.go,
        # validateLabelSelectorMatchExpressions.
        values = e.strings("values", unique=True)
        ident = (key, op, tuple(sorted(values)))
        if ident in seen:
            problems.error(obj, epath, f"duplicates {seen[ident]} (same key, operator, values)")
            continue
        seen[ident] = epath.rsplit(".", 1)[-1]
        if op is not None and op not in _OPERATORS:
            e.error("operator", f"{op!r} is not one of {', '.join(_OPERATORS)}")
            continue
        if op in ("In", "NotIn") and not values:
            e.error("values", f"must not be empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            e.error("values", f"must be empty for operator {op}")
        if key is None or op is None:
            continue
        reqs.append(SelectorRequirement(key, op, values))  # type: ignore[arg-type]
    return LabelSelector(tuple(sorted(labels)), tuple(reqs))


def selector_identity(sel: LabelSelector) -> tuple[object, ...]:
    """What makes two selectors "the same" for MetalLB's duplicate check: the labels, and
    the expressions in their order with each one's values as a set."""
    return (
        sel.match_labels,
        tuple((r.key, r.operator, tuple(sorted(r.values))) for r in sel.match_expressions),
    )


def read_selectors(f: Fields, key: str, *, legacy: bool = False) -> tuple[LabelSelector, ...]:
    """A list of selectors. MetalLB refuses one selector listed twice
    (``internal/config/config.go``, ``validateLabelSelectorDuplicate``); so does this."""
    out: list[LabelSelector] = []
    seen: dict[tuple[object, ...], int] = {}
    for i, (path, item) in enumerate(f.items(key)):
        sel = read_selector(item, f.obj, path, f.problems, legacy=legacy)
        ident = selector_identity(sel)
        if ident in seen:
            f.problems.error(f.obj, path, f"duplicates {key}[{seen[ident]}]")
            continue
        seen[ident] = i
        out.append(sel)
    return tuple(out)
