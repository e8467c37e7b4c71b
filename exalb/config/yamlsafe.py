"""YAML text to plain data, within the bounds of :mod:`exalb.config.limits`.

Why not ``yaml.safe_load``: "safe" there means "constructs no arbitrary objects", not "costs
little". A kilobyte of anchors and aliases expands to billions of values as soon as anything
walks the result (a 1.2 KB alias bomb took a parse to 1.5 GiB; one under ``metadata.labels``
took over a minute); 5,000 nested brackets raise ``RecursionError`` from its composer; a
5,000-digit number raises ``ValueError`` (not a ``YAMLError``) from its constructor; and a
key given twice silently keeps the last value (a legacy config with two ``address-pools:``
keys drops the first list of pools).

So this module builds the data itself from libyaml's event stream (C scanning and parsing,
as fast as ``CSafeLoader``), iteratively (depth costs no stack), and measures as it goes:
every value counts against :data:`~exalb.config.limits.MAX_NODES`, an alias counts as the
size of what it repeats (aliases still share one object, as PyYAML does, so the budget is
never spent in memory), and the first bound crossed stops the load with an
:class:`~exalb.config.limits.InputError` naming the field. Scalars are resolved and built by
PyYAML's own resolver and safe constructors (the same types ``safe_load`` gives: ``yes`` is
``True``, ``0x10`` is 16, dates are dates); tags beyond those (``!!python/...``, ``!!set``)
are refused. Merge keys (``<<: *defaults``) work as in PyYAML: explicit keys win, then the
merged mappings in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from exalb.config.limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_NUMBER_CHARS,
    MAX_SCALAR,
    MAX_TEXT_BYTES,
    InputError,
    Trail,
    describe,
    spell,
)

_TAG = "tag:yaml.org,2002:"
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"
_NUMBERS = frozenset({_TAG + "int", _TAG + "float"})
_NO_KEY = object()
_MERGE_KEY = object()
_Parser: Any = getattr(yaml, "CBaseLoader", None) or yaml.BaseLoader  # libyaml when installed


@dataclass
class _Anchor:
    value: Any
    size: int  # values it stands for, expanded
    height: int  # nesting levels it adds (0 for a scalar)


@dataclass
class _Open:
    """A mapping or list being built."""

    container: Any
    trail: Trail
    nodes_before: int
    anchor: str | None
    height: int = 1
    key: Any = _NO_KEY
    key_line: int = 0
    lines: dict[Any, int] = field(default_factory=dict)
    merges: list[Any] = field(default_factory=list)


class _Builder:
    """One text's values; see the module docstring. Anchors are per document, the node and
    alias budgets per text (many small documents must not add up to a bomb)."""

    def __init__(self) -> None:
        self.resolver = Resolver()
        self.constructor = SafeConstructor()
        self.nodes = 0
        self.aliases = 0
        self.anchors: dict[str, _Anchor] = {}
        self.open: list[_Open] = []
        self.documents: list[Any] = []

    # -- events -----------------------------------------------------------------------------
    def feed(self, event: Any) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._count(1)
            value = self._scalar(event)
            self._remember(event.anchor, value, 1, 0)
            self._add(value, 0, event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self._start(event)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            self._end()
        elif isinstance(event, yaml.DocumentStartEvent):
            self.anchors = {}

    def _count(self, n: int) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise InputError(self._where(), f"holds more than {MAX_NODES:,} values")

    def _where(self, key: Any = _NO_KEY) -> str:
        if not self.open:
            return ""
        top = self.open[-1]
        if isinstance(top.container, list):
            return spell((top.trail, len(top.container)))
        key = top.key if key is _NO_KEY else key
        return spell(top.trail if key in (_NO_KEY, _MERGE_KEY) else (top.trail, key))

    def _scalar(self, event: Any) -> Any:
        value: str = event.value
        if len(value) > MAX_SCALAR:
            raise InputError(
                self._where(), f"a string of {len(value):,} characters (at most {MAX_SCALAR:,})"
            )
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
        if tag == _MERGE:
            return _MERGE_KEY
        if tag in _NUMBERS and len(value) > MAX_NUMBER_CHARS:
            raise InputError(
                self._where(),
                f"a number of {len(value):,} characters (at most {MAX_NUMBER_CHARS})",
            )
        build = SafeConstructor.yaml_constructors.get(tag)
        if build is None or tag in (_SEQ, _MAP):
            raise InputError(self._where(), f"the tag {tag!r} is not supported")
        node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        return build(self.constructor, node)

    def _alias(self, event: Any) -> None:
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            if any(o.anchor == event.anchor for o in self.open):
                raise InputError(self._where(), f"alias *{event.anchor} refers to itself")
            raise InputError(self._where(), f"alias *{event.anchor} is not defined")
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise InputError(self._where(), f"more than {MAX_ALIASES} YAML aliases")
        if len(self.open) + anchor.height > MAX_DEPTH:
            raise InputError(self._where(), f"is nested deeper than {MAX_DEPTH} levels")
        self._count(anchor.size)
        self._add(anchor.value, anchor.height, event)

    def _start(self, event: Any) -> None:
        mapping = isinstance(event, yaml.MappingStartEvent)
        if event.tag not in (None, "!", _MAP if mapping else _SEQ):
            raise InputError(self._where(), f"the tag {event.tag!r} is not supported")
        if len(self.open) >= MAX_DEPTH:
            raise InputError(self._where(), f"is nested deeper than {MAX_DEPTH} levels")
        trail: Trail = None
        if self.open:
            top = self.open[-1]
            if isinstance(top.container, list):
                trail = (top.trail, len(top.container))
            elif top.key is _NO_KEY:
                raise InputError(self._where(), "a key must be a plain value, not a collection")
            elif top.key is not _MERGE_KEY:
                trail = (top.trail, top.key)
            else:
                trail = top.trail
        self._count(1)
        container: Any = {} if mapping else []
        self.open.append(_Open(container, trail, self.nodes - 1, event.anchor))

    def _end(self) -> None:
        done = self.open.pop()
        value = done.container
        if isinstance(value, dict):
            for merged in done.merges:
                for key, item in merged.items():
                    value.setdefault(key, item)
        self._remember(done.anchor, value, self.nodes - done.nodes_before, done.height)
        self._add(value, done.height, None)

    def _remember(self, anchor: str | None, value: Any, size: int, height: int) -> None:
        if anchor is not None:
            self.anchors[anchor] = _Anchor(value, size, height)

    def _add(self, value: Any, height: int, event: Any) -> None:
        """Put a finished value into the open collection (or make it a document)."""
        top = self.open[-1] if self.open else None
        in_key_position = top is not None and isinstance(top.container, dict) and top.key is _NO_KEY
        if value is _MERGE_KEY and not in_key_position:
            value = "<<"  # a merge key only merges in key position; elsewhere it is text
        if top is None:
            self.documents.append(value)
            return
        top.height = max(top.height, height + 1)
        if isinstance(top.container, list):
            top.container.append(value)
        elif top.key is _NO_KEY:
            self._key(top, value, event)
        elif top.key is _MERGE_KEY:
            top.merges.extend(self._merged(value))
            top.key = _NO_KEY
        else:
            top.container[top.key] = value
            top.key = _NO_KEY

    def _key(self, top: _Open, key: Any, event: Any) -> None:
        line = event.start_mark.line + 1 if event is not None else 0
        if key is not _MERGE_KEY:
            try:
                first = top.lines.get(key)
            except TypeError:
                raise InputError(self._where(), "a key must be a plain value") from None
            if first is not None:
                raise InputError(
                    self._where(key),
                    f"the key {describe(key)} is given twice (lines {first} and {line}); "
                    "the second would silently replace the first",
                )
            top.lines[key] = line
        top.key = key

    def _merged(self, value: Any) -> list[dict[Any, Any]]:
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, dict) for v in values):
            raise InputError(self._where(), "<< must merge a mapping or a list of mappings")
        return values


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (an empty one is ``None``); raises :class:`InputError`."""
    if len(text) > MAX_TEXT_BYTES:
        raise InputError("", f"is {len(text) / (1 << 20):.0f} MiB long (at most "
                         f"{MAX_TEXT_BYTES >> 20} MiB)")  # fmt: skip
    builder = _Builder()
    try:
        parser = _Parser(text)  # reads the stream: may already refuse it (control chars)
    except yaml.YAMLError as exc:
        raise InputError("", f"is not valid YAML: {exc}") from None
    try:
        while parser.check_event():
            builder.feed(parser.get_event())
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own bound, hit while reading ahead
            raise InputError(
                builder._where(), f"is nested deeper than {MAX_DEPTH} levels"
            ) from None
        raise InputError(builder._where(), f"is not valid YAML: {exc}") from None
    finally:
        parser.dispose()
    return builder.documents


def load_one(text: str) -> Any:
    """The single document of ``text`` (``None`` when empty); more than one is refused."""
    docs = load_all(text)
    if len(docs) > 1:
        raise InputError("", f"holds {len(docs)} YAML documents, expected one")
    return docs[0] if docs else None
