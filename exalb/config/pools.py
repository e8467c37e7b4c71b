"""IPAddressPool, Community and BFDProfile objects: the kinds that stand on their own.

Each reader checks one object, records every problem of it, and returns the model value
only when the object had no error, so one bad pool never hides the problems of the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exalb.config.fields import Fields, read_selectors
from exalb.config.model import BFDProfile, IPNetwork, Pool, ServiceAllocation
from exalb.config.objects import labels_of, name_of, spec_fields
from exalb.config.problems import Problems, Subject
from exalb.config.values import parse_addresses, parse_community

_POOL_FIELDS = frozenset({"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"})
_ALLOC_FIELDS = frozenset({"priority", "namespaces", "namespaceSelectors", "serviceSelectors"})


def read_pool(obj: Mapping[str, Any], problems: Problems) -> Pool | None:
    spec = spec_fields(obj, problems, _POOL_FIELDS)
    errors_before = problems.error_count
    cidrs: list[IPNetwork] = []
    groups: list[tuple[IPNetwork, ...]] = []
    entries = list(spec.items("addresses"))
    if not entries:
        spec.error("addresses", "is required and must not be empty")
    for path, item in entries:
        try:
            group = parse_addresses(item)
        except ValueError as exc:
            problems.error(spec.obj, path, str(exc))
            continue
        cidrs.extend(group)
        groups.append(group)
    pool = Pool(
        name=name_of(obj),
        cidrs=tuple(cidrs),
        auto_assign=spec.boolean("autoAssign", True),
        avoid_buggy_ips=spec.boolean("avoidBuggyIPs", False),
        service_allocation=_allocation(spec),
        labels=labels_of(obj, problems),
        entries=tuple(groups),
    )
    return pool if problems.error_count == errors_before else None


def _allocation(spec: Fields) -> ServiceAllocation | None:
    if not spec.has("serviceAllocation"):
        return None
    sa = spec.mapping("serviceAllocation", _ALLOC_FIELDS)
    return ServiceAllocation(
        priority=sa.integer("priority", 0, low=0, high=2**31 - 1) or 0,
        namespaces=sa.strings("namespaces", unique=True),
        namespace_selectors=read_selectors(sa, "namespaceSelectors"),
        service_selectors=read_selectors(sa, "serviceSelectors"),
    )


_COMMUNITY_FIELDS = frozenset({"communities"})


def read_aliases(objs: list[Mapping[str, Any]], problems: Problems) -> dict[str, str]:
    """Community alias name → value (``a:b`` or ``large:a:b:c``), unique across objects."""
    aliases: dict[str, str] = {}
    owner: dict[str, Subject] = {}
    for obj in objs:
        spec = spec_fields(obj, problems, _COMMUNITY_FIELDS)
        for path, item in spec.items("communities"):
            f = Fields(item, spec.obj, path, problems, frozenset({"name", "value"}))
            name = f.string("name", required=True)
            value = f.string("value", required=True)
            if name is None or value is None:
                continue
            try:
                parse_community(value)
            except ValueError as exc:
                f.error("value", str(exc))
                continue
            if name in aliases:
                f.error("name", f"alias {name!r} is already defined by {owner[name]}")
                continue
            aliases[name] = value
            owner[name] = spec.obj
    return aliases


# MetalLB's BFDProfile rules (``internal/config/config.go``, ``bfdProfileFromCR``): each
# value is optional; a given one must lie in its range, so a config valid here is valid
# there and a profile MetalLB would refuse is refused here too (BFD itself: docs/bfd.md).
BFD_RANGES: dict[str, tuple[int, int]] = {
    "receiveInterval": (10, 60000),
    "transmitInterval": (10, 60000),
    "echoInterval": (10, 60000),
    "detectMultiplier": (2, 255),
    "minimumTtl": (1, 254),
}
BFD_FLAGS = ("echoMode", "passiveMode")
BFD_FIELDS = (*BFD_RANGES, *BFD_FLAGS)


#: CRD field -> :class:`~exalb.config.model.BFDProfile` attribute.
_BFD_ATTRS = {
    "receiveInterval": "receive_interval",
    "transmitInterval": "transmit_interval",
    "echoInterval": "echo_interval",
    "detectMultiplier": "detect_multiplier",
    "minimumTtl": "minimum_ttl",
    "echoMode": "echo_mode",
    "passiveMode": "passive_mode",
}


def check_bfd_profile(spec: Fields, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check one BFD profile's values; ``names`` maps the CRD field names to another
    spelling (the legacy ConfigMap's ``receive-interval``, ...). Returns the values as
    :class:`~exalb.config.model.BFDProfile` keyword arguments (an invalid one left out)."""
    names = names or {}
    out: dict[str, Any] = {}
    for key, (low, high) in BFD_RANGES.items():
        out[_BFD_ATTRS[key]] = spec.integer(names.get(key, key), None, low=low, high=high)
    for key in BFD_FLAGS:
        out[_BFD_ATTRS[key]] = spec.boolean(names.get(key, key), False)
    return out


def read_bfd_profiles(objs: list[Mapping[str, Any]], problems: Problems) -> list[BFDProfile]:
    """The BFD profiles (MetalLB's ranges checked; the node's bfdd runs them)."""
    return [
        BFDProfile(
            name_of(obj), **check_bfd_profile(spec_fields(obj, problems, frozenset(BFD_FIELDS)))
        )
        for obj in objs
    ]
