"""Parse MetalLB ``metallb.io`` custom resources into the config model.

Accepts exactly what MetalLB accepts (same kinds, fields and defaults), so a MetalLB user's
YAML works unchanged, and refuses loudly what ExaBGP cannot honour (VRF, unnumbered
peers, ``connectTime``) instead of dropping it. All objects are read before anything is
decided, and every problem of every object is reported in one pass. The kinds are read by
:mod:`~exalb.config.pools`, :mod:`~exalb.config.peers` and
:mod:`~exalb.config.advertisements`; cross-object rules live in
:mod:`exalb.config.crossrefs`. Every step is linear in the number of objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exalb.config.advertisements import PoolIndex, read_bgp_advertisement, read_l2_advertisement
from exalb.config.crossrefs import check_config
from exalb.config.limits import describe
from exalb.config.model import Config, LabelSelector
from exalb.config.objects import (
    GROUP,
    KINDS,
    LEGACY_SOURCE_ANNOTATION,
    is_metallb_object,
    metadata,
    object_label,
)
from exalb.config.peers import read_peer
from exalb.config.pools import (
    BFD_FIELDS,
    check_bfd_profile,
    read_aliases,
    read_bfd_profiles,
    read_pool,
)
from exalb.config.problems import ObjectRef, Problems
from exalb.config.result import ParseResult

_META = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def parse_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    namespace: str | None = None,
    source: str = "crd",
) -> ParseResult:
    """Parse MetalLB custom resources (JSON/YAML form) into a validated :class:`Config`.

    ``namespace``: MetalLB reads config only from its install namespace; objects elsewhere
    are ignored with a warning. ``None`` accepts any namespace (offline checks).
    """
    problems = Problems()
    by_kind = _sort_objects(objects, namespace, problems)
    bfd_profiles = read_bfd_profiles(by_kind["BFDProfile"], problems)
    pools = [p for o in by_kind["IPAddressPool"] if (p := read_pool(o, problems)) is not None]
    aliases = read_aliases(by_kind["Community"], problems)
    peers = [y for o in by_kind["BGPPeer"] if (y := read_peer(o, problems)) is not None]
    index = PoolIndex(pools)
    bgp_ads = [
        a
        for o in by_kind["BGPAdvertisement"]
        if (a := read_bgp_advertisement(o, index, aliases, problems)) is not None
    ]
    l2_ads = [
        w
        for o in by_kind["L2Advertisement"]
        if (w := read_l2_advertisement(o, index, problems)) is not None
    ]
    config = Config(
        pools=tuple(sorted(pools, key=lambda p: p.name)),
        peers=tuple(sorted(peers, key=lambda p: p.name)),
        bgp_advertisements=tuple(sorted(bgp_ads, key=lambda a: a.name)),
        l2_advertisements=tuple(sorted(l2_ads, key=lambda a: a.name)),
        community_aliases=tuple(sorted(aliases.items())),
        source="configmap" if source == "configmap" else "crd",
        bfd_profiles=tuple(sorted(bfd_profiles, key=lambda p: p.name)),
    )
    check_config(config, problems)
    return ParseResult.of(config, problems)


def _sort_objects(
    objects: Iterable[Mapping[str, Any]], namespace: str | None, problems: Problems
) -> dict[str, list[Mapping[str, Any]]]:
    """The objects to parse, by kind: ``metallb.io`` kinds and versions MetalLB serves,
    named, in the install namespace, each (kind, name) once."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {k: [] for k in KINDS}
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        label = object_label(obj)
        kind = _admitted_kind(obj, label, namespace, problems)
        if kind is None:
            continue
        if (kind, label.name) in seen:
            problems.error(label, "metadata.name", f"duplicate {kind} name {label.name!r}")
            continue
        seen.add((kind, label.name))
        for key in obj:
            if key not in _META:
                problems.error(label, describe(key) if not isinstance(key, str) else key,
                               "unknown field")  # fmt: skip
        by_kind[kind].append(obj)
    return by_kind


def _admitted_kind(
    obj: Mapping[str, Any], label: ObjectRef, namespace: str | None, problems: Problems
) -> str | None:
    """The object's kind when it is one to parse; otherwise the reason is recorded."""
    api, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api, str) or api.partition("/")[0] != GROUP:
        problems.warn(label, "apiVersion", f"{describe(api)} is not a {GROUP} object; ignored")
        return None
    version = api.partition("/")[2]
    if not isinstance(kind, str) or kind not in KINDS:
        problems.error(label, "kind", f"unknown kind {describe(kind)} in {GROUP}")
        return None
    if version not in KINDS[kind]:
        problems.error(
            label, "apiVersion", f"{api!r} is not served for {kind}; use {GROUP}/{KINDS[kind][0]}"
        )
        return None
    meta = metadata(obj)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.error(label, "metadata.name", "is required")
        return None
    ns = meta.get("namespace")
    if namespace is not None and ns not in (None, namespace):
        problems.warn(
            label,
            "metadata.namespace",
            f"{describe(ns)} is not the install namespace {namespace!r}; ignored",
        )
        return None
    return kind


__all__ = [
    "BFD_FIELDS",
    "GROUP",
    "LEGACY_SOURCE_ANNOTATION",
    "LabelSelector",
    "ObjectRef",
    "check_bfd_profile",
    "is_metallb_object",
    "object_label",
    "parse_objects",
]
