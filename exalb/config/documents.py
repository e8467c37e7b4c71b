"""Turn documents as users write them into one config: the entry point of every component.

One file may hold ``metallb.io`` objects, a legacy ConfigMap manifest, a bare legacy config
document (``address-pools:`` at the top), or a ``kind: List``. The same selection rule
serves the controller and the offline CLI: CRD objects win; without any, the legacy
ConfigMap is used; both at once is refused, because MetalLB users migrating must not get a
silent mix of two configs.

**Nothing here raises on input.** The controller, the speaker and ``exalbctl`` all come
through :func:`parse_documents` (the CLI through :func:`parse_files` and
:func:`split_documents` too): every document is measured against the bounds of
:mod:`exalb.config.limits` before it is read, YAML is loaded by
:mod:`exalb.config.yamlsafe`, and any exception a parser still raises is turned into a
config error (:func:`guarded`), so a config no one foresaw keeps the last good one in force
and says so, instead of crash-looping the controller or freezing the speaker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from exalb.config.crd import is_metallb_object, parse_objects
from exalb.config.legacy import (
    CONFIG_KEY,
    Renamed,
    legacy_text_to_objects,
    legacy_to_objects,
    with_object_names,
)
from exalb.config.limits import InputError, check_shape, describe
from exalb.config.model import Config
from exalb.config.problems import ObjectRef, Problem, Problems, Subject, capped
from exalb.config.result import ParseResult
from exalb.config.yamlsafe import load_all

LEGACY_KEYS = frozenset({"peers", "address-pools", "bgp-communities", "bfd-profiles"})

T = TypeVar("T")


def internal_error(origin: Subject, exc: BaseException) -> Problem:
    """The problem an unforeseen parser exception becomes (a bug to report, never a crash)."""
    return Problem(
        origin,
        "",
        f"could not be parsed ({type(exc).__name__}: {describe(str(exc))}); this is a bug in "
        "exalb, please report it",
    )


def guarded(origin: Subject, fallback: Callable[[Problem], T], run: Callable[[], T]) -> T:
    """``run()``, or ``fallback(problem)`` when it raises anything but a stop request.

    ``RecursionError`` and ``MemoryError`` are included on purpose: they are what absurd
    input causes, and the caller's answer is the same (keep the last good config)."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 (the guarantee of this module: input never raises)
        return fallback(internal_error(origin, exc))


def split_documents(text: str, origin: str) -> tuple[list[Any], Problems]:
    """The documents of a YAML text, a ``kind: List`` flattened into its items."""

    def run() -> tuple[list[Any], Problems]:
        problems = Problems()
        try:
            docs = [d for d in load_all(text) if d is not None]
        except InputError as exc:
            problems.error(origin, exc.path, exc.message)
            return [], problems
        flat: list[Any] = []
        for i, doc in enumerate(docs):
            if isinstance(doc, Mapping) and doc.get("kind") == "List":
                items = doc.get("items")
                if isinstance(items, list):
                    flat.extend(items)
                elif items is not None:
                    where = f"{origin}[{i}]" if len(docs) > 1 else origin
                    problems.error(where, "items", f"must be a list, got {describe(items)}")
            else:
                flat.append(doc)
        return flat, problems

    def fallback(problem: Problem) -> tuple[list[Any], Problems]:
        problems = Problems()
        problems.extend([problem])
        return [], problems

    return guarded(origin, fallback, run)


def parse_documents(
    docs: Iterable[tuple[str, Any]], *, namespace: str | None = None
) -> ParseResult:
    """``docs``: (origin, document) pairs. Returns one validated config or every problem."""
    return guarded(
        "config",
        lambda problem: ParseResult(None, (problem,)),
        lambda: _parse_documents(docs, namespace),
    )


class _Sources:
    """The documents of one parse, sorted by what they are."""

    def __init__(self) -> None:
        self.problems = Problems()
        self.crd_objects: list[Mapping[str, Any]] = []
        self.legacy_objects: list[dict[str, Any]] = []
        self.legacy_sources = 0

    def add(self, origin: str, doc: Any) -> None:
        if not isinstance(doc, Mapping):
            self.problems.error(origin, "", f"a document must be a mapping, got {describe(doc)}")
            return
        try:
            check_shape(doc)
        except InputError as exc:
            self.problems.error(origin, exc.path, exc.message)
            return
        if is_metallb_object(doc):
            self.crd_objects.append(doc)
        elif doc.get("kind") == "ConfigMap":
            self._configmap(origin, doc)
        elif LEGACY_KEYS & set(doc):
            objs, p = legacy_to_objects(doc, origin=origin)
            self.problems.extend(p.items)
            self.legacy_objects.extend(objs)
            self.legacy_sources += 1
        else:
            kind = describe(doc.get("kind", "?"))
            self.problems.warn(origin, "", f"kind {kind} is not exalb configuration; ignored")

    def _configmap(self, origin: str, doc: Mapping[str, Any]) -> None:
        label, namespace, text = configmap_parts(doc, origin, self.problems)
        if text is None:
            return
        objs, p = legacy_text_to_objects(text, namespace=namespace, origin=label)
        self.problems.extend(p.items)
        self.legacy_objects.extend(objs)
        self.legacy_sources += 1


def configmap_parts(
    doc: Mapping[str, Any], origin: str, problems: Problems, namespace: str | None = None
) -> tuple[Subject, str, str | None]:
    """(the ConfigMap as a problem subject, its namespace, its ``config`` text or ``None``);
    a ConfigMap whose ``metadata`` or ``data`` is not a mapping is reported, not trusted."""
    meta = doc.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        problems.error(origin, "metadata", f"must be a mapping, got {describe(meta)}")
        return origin, "", None
    meta = meta or {}
    name, ns = meta.get("name"), meta.get("namespace")
    label = ObjectRef(
        "ConfigMap",
        name if isinstance(name, str) else "",
        ns if isinstance(ns, str) else "",
    )
    namespace = namespace or (ns if isinstance(ns, str) and ns else "metallb-system")
    data = doc.get("data")
    if data is not None and not isinstance(data, Mapping):
        problems.error(label, "data", f"must be a mapping, got {describe(data)}")
        return label, namespace, None
    text = (data or {}).get(CONFIG_KEY)
    if not isinstance(text, str):
        problems.warn(label, f"data.{CONFIG_KEY}", "missing; not a MetalLB config")
        return label, namespace, None
    return label, namespace, text


def _parse_documents(docs: Iterable[tuple[str, Any]], namespace: str | None) -> ParseResult:
    sources = _Sources()
    for origin, doc in docs:
        sources.add(origin, doc)
    problems = sources.problems
    if sources.crd_objects and sources.legacy_sources:
        problems.error(
            "config",
            "",
            "holds both metallb.io objects and a legacy ConfigMap "
            "config; use one (exalbctl config convert migrates)",
        )
    if sources.legacy_sources > 1:
        problems.error("config", "", "holds more than one legacy config document")
    if problems.error_count:
        return ParseResult(None, capped(problems.items))
    if sources.legacy_sources:
        result = parse_objects(sources.legacy_objects, source="configmap")
    elif sources.crd_objects:
        result = parse_objects(sources.crd_objects, namespace=namespace)
    else:
        return ParseResult(Config(), capped(problems.items))
    return ParseResult(result.config, capped((*problems.items, *result.problems)))


def parse_files(paths: Iterable[str], *, namespace: str | None = None) -> ParseResult:
    """Read YAML files (``-`` is not special here; the CLI handles stdin)."""
    problems = Problems()
    docs: list[tuple[str, Any]] = []
    for path in paths:
        text = read_text(path, problems)
        if text is None:
            continue
        found, p = split_documents(text, path)
        problems.extend(p.items)
        docs.extend((path, d) for d in found)
    result = parse_documents(docs, namespace=namespace)
    config = None if problems.error_count else result.config
    return ParseResult(config, capped((*problems.items, *result.problems)))


def read_text(path: str, problems: Problems) -> str | None:
    """A file's text, or ``None`` with the reason recorded (unreadable, not UTF-8)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        problems.error(path, "", f"cannot be read: {exc.strerror}")
    except UnicodeDecodeError as exc:
        problems.error(path, "", f"is not UTF-8 text: {exc.reason} at byte {exc.start}")
    return None


def convert_documents(
    docs: Iterable[Any], origin: str, namespace: str | None = None
) -> tuple[list[dict[str, Any]], tuple[Renamed, ...], Problems]:
    """Legacy ConfigMaps (or bare legacy documents) → ``metallb.io`` objects with names the
    API server accepts, for ``exalbctl config convert``. Never raises on input."""

    def run() -> tuple[list[dict[str, Any]], tuple[Renamed, ...], Problems]:
        problems = Problems()
        objects: list[dict[str, Any]] = []
        for doc in docs:
            if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
                label, ns, text = configmap_parts(doc, origin, problems, namespace)
                if text is None:
                    continue
                objs, p = legacy_text_to_objects(text, namespace=ns, origin=label)
            else:
                objs, p = legacy_to_objects(
                    doc, namespace=namespace or "metallb-system", origin=origin
                )
            problems.extend(p.items)
            objects.extend(objs)
        objects, renamed = with_object_names(objects, problems, origin)
        return objects, renamed, problems

    def fallback(problem: Problem) -> tuple[list[dict[str, Any]], tuple[Renamed, ...], Problems]:
        problems = Problems()
        problems.extend([problem])
        return [], (), problems

    return guarded(origin, fallback, run)
