"""Turn YAML documents as users write them into one config.

One file may hold ``metallb.io`` objects, a legacy ConfigMap manifest, a bare legacy config
document (``address-pools:`` at the top), or a ``kind: List``. The same selection rule
serves the controller and the offline CLI: CRD objects win; without any, the legacy
ConfigMap is used; both at once is refused, because MetalLB users migrating must not get a
silent mix of two configs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from exalb.config.crd import is_metallb_object, parse_objects
from exalb.config.legacy import CONFIG_KEY, legacy_text_to_objects, legacy_to_objects
from exalb.config.model import Config
from exalb.config.problems import ObjectRef, Problems
from exalb.config.result import ParseResult

LEGACY_KEYS = frozenset({"peers", "address-pools", "bgp-communities", "bfd-profiles"})


def split_documents(text: str, origin: str) -> tuple[list[Any], Problems]:
    problems = Problems()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        problems.error(origin, "", f"is not valid YAML: {exc}")
        return [], problems
    flat: list[Any] = []
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "List":
            flat.extend(doc.get("items") or [])
        else:
            flat.append(doc)
    return flat, problems


def parse_documents(
    docs: Iterable[tuple[str, Any]], *, namespace: str | None = None
) -> ParseResult:
    """``docs``: (origin, document) pairs. Returns one validated config or every problem."""
    problems = Problems()
    crd_objects: list[Mapping[str, Any]] = []
    legacy_objects: list[dict[str, Any]] = []
    legacy_sources = 0
    for origin, doc in docs:
        if not isinstance(doc, Mapping):
            problems.error(origin, "", "a document must be a mapping")
            continue
        if is_metallb_object(doc):
            crd_objects.append(doc)
        elif doc.get("kind") == "ConfigMap":
            meta = doc.get("metadata") or {}
            label = ObjectRef(
                "ConfigMap", str(meta.get("name", "")), str(meta.get("namespace", ""))
            )
            text = (doc.get("data") or {}).get(CONFIG_KEY)
            if not isinstance(text, str):
                problems.warn(label, f"data.{CONFIG_KEY}", "missing; not a MetalLB config")
                continue
            objs, p = legacy_text_to_objects(
                text, namespace=str(meta.get("namespace") or "metallb-system"), origin=label
            )
            problems.items.extend(p.items)
            legacy_objects.extend(objs)
            legacy_sources += 1
        elif LEGACY_KEYS & set(doc):
            objs, p = legacy_to_objects(doc, origin=origin)
            problems.items.extend(p.items)
            legacy_objects.extend(objs)
            legacy_sources += 1
        else:
            kind = doc.get("kind", "?")
            problems.warn(origin, "", f"kind {kind!r} is not exalb configuration; ignored")
    if crd_objects and legacy_sources:
        problems.error(
            "config",
            "",
            "holds both metallb.io objects and a legacy ConfigMap "
            "config; use one (exalbctl config convert migrates)",
        )
    if legacy_sources > 1:
        problems.error("config", "", "holds more than one legacy config document")
    if problems.errors:
        return ParseResult(None, tuple(problems.items))
    if legacy_sources:
        result = parse_objects(legacy_objects, source="configmap")
    elif crd_objects:
        result = parse_objects(crd_objects, namespace=namespace)
    else:
        return ParseResult(Config(), tuple(problems.items))
    return ParseResult(result.config, tuple(problems.items) + result.problems)


def parse_files(paths: Iterable[str], *, namespace: str | None = None) -> ParseResult:
    """Read YAML files (``-`` is not special here; the CLI handles stdin)."""
    problems = Problems()
    docs: list[tuple[str, Any]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            problems.error(path, "", f"cannot be read: {exc.strerror}")
            continue
        found, p = split_documents(text, path)
        problems.items.extend(p.items)
        docs.extend((path, d) for d in found)
    result = parse_documents(docs, namespace=namespace)
    if problems.errors:
        return ParseResult(None, tuple(problems.items) + result.problems)
    return ParseResult(result.config, tuple(problems.items) + result.problems)
