"""Typed, path-aware reading of one YAML/JSON mapping.

The parsers read user objects through :class:`Fields` so every type error names the object
and the full field path, unknown keys are reported (a typo such as ``autoAsign`` must not be
silently ignored), and a bad field never stops the rest of the object from being checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from exalb.config.limits import describe
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
            self.error(key, f"must be true or false, got {describe(value)}")
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
            self.error(key, f"must be an integer, got {describe(value)}")
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
                self.problems.error(
                    self.obj, path, f"must be a non-empty string, got {describe(item)}"
                )
                continue
            if unique and item in out:
                self.problems.error(self.obj, path, f"duplicate entry {describe(item)}")
                continue
            out.append(item)
        return tuple(out)

    def mapping(self, key: str, known: frozenset[str] | None = None) -> Fields:
        return Fields(self.data.get(key), self.obj, self.sub(key), self.problems, known)


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),  # before int: a bool is an int
    (int, "an integer"),
    (str, "a string"),
    (list, "a list"),
    (Mapping, "a mapping"),
)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
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
    labels = _match_labels(f, ml_key)
    reqs: list[SelectorRequirement] = []
    seen: dict[tuple[str | None, str | None, tuple[str, ...]], str] = {}
    for epath, expr in f.items(me_key):
        req = _requirement(Fields(expr, obj, epath, problems, _EXPRESSION_FIELDS), seen)
        if req is not None:
            reqs.append(req)
    return LabelSelector(tuple(sorted(labels)), tuple(reqs))


_EXPRESSION_FIELDS = frozenset({"key", "operator", "values"})


def _match_labels(f: Fields, key: str) -> list[tuple[str, str]]:
    ml = f.raw(key)
    if ml is None:
        return []
    if not isinstance(ml, Mapping):
        f.error(key, "must be a mapping of label keys to values")
        return []
    labels: list[tuple[str, str]] = []
    for k, v in ml.items():
        if not isinstance(v, str | int | float | bool):
            f.error(f"{key}.{k}", f"must be a string, got {describe(v)}")
            continue
        labels.append((str(k), str(v)))
    return labels


def _requirement(
    e: Fields, seen: dict[tuple[str | None, str | None, tuple[str, ...]], str]
) -> SelectorRequirement | None:
    """One ``matchExpressions`` entry. MetalLB refuses a value given twice in one
    expression, and one expression given twice in a selector (values compared as sets):
    internal/config/config.go, validateLabelSelectorMatchExpressions."""
    key = e.string("key", required=True)
    op = e.string("operator", required=True)
    values = e.strings("values", unique=True)
    ident = (key, op, tuple(sorted(values)))
    if ident in seen:
        e.problems.error(e.obj, e.path, f"duplicates {seen[ident]} (same key, operator, values)")
        return None
    seen[ident] = e.path.rsplit(".", 1)[-1]
    if op is not None and op not in _OPERATORS:
        e.error("operator", f"{describe(op)} is not one of {', '.join(_OPERATORS)}")
        return None
    if op in ("In", "NotIn") and not values:
        e.error("values", f"must not be empty for operator {op}")
    if op in ("Exists", "DoesNotExist") and values:
        e.error("values", f"must be empty for operator {op}")
    if key is None or op is None:
        return None
    return SelectorRequirement(key, op, values)  # type: ignore[arg-type]


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
