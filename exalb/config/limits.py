"""The bounds every config input is held to, and the checks that never raise on absurd input.

Why bounds at all: config is written by people and tools exalb does not control, and a
component that crashes or hangs on it stops doing its job for *every* Service (the
controller crash-loops, the speaker stops announcing new routes). So config is data to be
measured before it is used: its YAML text (:mod:`exalb.config.yamlsafe`) and the documents
the API server sends (:func:`check_shape`) are bounded in size, nesting and number length;
anything beyond a bound is a config error naming the field, and the last good config stays
in force. The bounds are far above any real MetalLB config (the largest sensible ones:
tens of thousands of pools, nesting about a dozen levels deep) and far below what hurts.

:func:`describe` is how a value is shown in an error message: bounded in length and cost
whatever the value is (a 5,000-digit integer, a list nested 5,000 deep, a shared sub-list
expanding to billions of entries), so reporting a problem can never become the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Size of one YAML text (a legacy ConfigMap's ``config`` value, a file given to exalbctl).
#: The API server keeps a ConfigMap under 1 MiB; files may be dumps of a large cluster.
MAX_TEXT_BYTES = 32 << 20
#: Values (mappings, lists, scalars) in one text or document, aliases counted as expanded.
MAX_NODES = 2_000_000
#: Nesting of mappings and lists. A CRD object is about a dozen levels deep.
MAX_DEPTH = 64
#: YAML aliases (``*name``) in one text: a few are a convenience, many are an alias bomb.
MAX_ALIASES = 100
#: Characters of one scalar. The API server keeps all annotations of an object under 256 KiB
#: and a ConfigMap under 1 MiB; a file may hold a larger legacy config as one string.
MAX_SCALAR = 4 << 20
#: Characters of a number (an int64 has 19 digits; Python refuses > 4,300 with ValueError).
MAX_NUMBER_CHARS = 40

_SHOW = 80  # characters of a value shown in a message


class InputError(ValueError):
    """Input exalb refuses before using it (beyond a bound, not valid YAML, a duplicate key);
    ``path`` names the field (``address-pools[0].addresses``), empty for the whole text."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def describe(value: Any) -> str:
    """A short, safe rendering of ``value`` for error messages (see the module docstring)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHOW else repr(value[:_SHOW]) + "..."
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} entries" if value else "{}"
    if isinstance(value, list | tuple):
        return _describe_list(value)
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _describe_list(value: list[Any] | tuple[Any, ...]) -> str:
    """A short list of plain values as written, anything longer or deeper by its length."""
    if len(value) <= 8 and all(_small(v) for v in value):
        text = repr(list(value))
        if len(text) <= _SHOW:
            return text
    return f"a list of {len(value)} entries" if value else "[]"


def _small(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _SHOW
    if isinstance(value, int):
        return value.bit_length() <= 128
    return value is None or isinstance(value, float)


def check_shape(doc: Any, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`InputError` when ``doc`` (a decoded JSON or YAML document) is nested
    deeper than ``max_depth``, holds more than ``max_nodes`` values (shared sub-values
    counted each time they appear) or a scalar beyond the bounds. Iterative, so depth
    never costs stack, and it stops at the first value over budget; the path of a value is
    kept as a linked chain of (parent, key) and only spelled out for the error. Every
    document the controller and the speaker parse passes here, so the common JSON types
    are told apart by ``type`` (an ABC check costs several times more)."""
    stack: list[tuple[Any, int, Trail]] = [(doc, 0, None)]
    nodes = 0
    while stack:
        value, depth, trail = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise InputError(spell(trail), f"holds more than {max_nodes:,} values")
        kind = type(value)
        if kind in _SCALARS:
            _check_scalar(value, trail)
        elif kind is dict or kind is list or isinstance(value, Mapping | list | tuple):
            if depth >= max_depth:
                raise InputError(spell(trail), f"is nested deeper than {max_depth} levels")
            if kind is dict or isinstance(value, Mapping):
                for key, item in value.items():
                    _check_scalar(key, trail)
                    stack.append((item, depth + 1, (trail, key)))
            else:
                stack.extend((item, depth + 1, (trail, i)) for i, item in enumerate(value))


_SCALARS = frozenset({str, int, float, bool, type(None)})


#: Where a value sits: ``None`` at the top, else (the parent's trail, key or list index).
Trail = tuple[Any, Any] | None


def spell(trail: Trail) -> str:
    """``(((None, "spec"), "addresses"), 1)`` → ``spec.addresses[1]``; a path too long to
    read (5,000 levels of nesting) is cut, saying how deep it went."""
    parts: list[Any] = []
    while trail is not None:
        trail, key = trail
        parts.append(key)
    out = ""
    for key in reversed(parts):
        if isinstance(key, int) and not isinstance(key, bool):
            out += f"[{key}]"
        else:
            text = str(key) if isinstance(key, str) else describe(key)
            out += f".{text}" if out else text
        if len(out) > _SHOW:
            return f"{out[:_SHOW]}... ({len(parts)} levels)"
    return out


def _check_scalar(value: Any, trail: Trail) -> None:
    kind = type(value)
    if kind is str:
        if len(value) > MAX_SCALAR:
            raise InputError(
                spell(trail), f"a string of {len(value):,} characters (at most {MAX_SCALAR:,})"
            )
    elif kind is int and value.bit_length() > 128:
        raise InputError(spell(trail), f"{describe(value)} is not a number exalb can use")
