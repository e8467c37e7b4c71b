"""What every ``metallb.io`` object has: kind, version, metadata; read without trusting them.

The per-kind parsers (:mod:`~exalb.config.pools`, :mod:`~exalb.config.peers`,
:mod:`~exalb.config.advertisements`) and the legacy converter share these, so an object's
name, namespace, labels and legacy origin are read one way everywhere, and a malformed
``metadata`` (a string, a list of labels, a label whose value is a nested list) is a
problem naming the field, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exalb.config.fields import Fields
from exalb.config.limits import describe
from exalb.config.problems import ObjectRef, Problems

GROUP = "metallb.io"
KINDS: dict[str, tuple[str, ...]] = {
    "IPAddressPool": ("v1beta1",),
    "BGPPeer": ("v1beta2", "v1beta1"),
    "BGPAdvertisement": ("v1beta1",),
    "L2Advertisement": ("v1beta1",),
    "Community": ("v1beta1",),
    "BFDProfile": ("v1beta1",),
}
# Object origin annotation set by the legacy converter, so errors point at the legacy field.
LEGACY_SOURCE_ANNOTATION = "exalb.io/legacy-source"
# On a BGPAdvertisement: "true" = weighted ECMP for Local Services (BGPAdvertisement.weighted_ecmp).
# An annotation, not a spec field: the object stays a valid MetalLB object (MetalLB ignores
# annotations, so the same YAML simply gives equal ECMP there).
WEIGHTED_ECMP_ANNOTATION = "exalb.io/weighted-ecmp"


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _text(value: Any, default: str) -> str:
    """A metadata value as text: strings as they are, anything else shown, never expanded."""
    if value is None:
        return default
    return value if isinstance(value, str) else describe(value)


def object_label(obj: Mapping[str, Any]) -> ObjectRef:
    """The object's kind and name, plus the legacy origin when the object was converted
    (renders ``Kind/name (from peers[0])``)."""
    meta = metadata(obj)
    ann = meta.get("annotations")
    legacy = ann.get(LEGACY_SOURCE_ANNOTATION) if isinstance(ann, Mapping) else None
    return ObjectRef(
        kind=_text(obj.get("kind"), "?"),
        name=_text(meta.get("name"), "?"),
        namespace=_text(meta.get("namespace") or None, ""),
        legacy=legacy if isinstance(legacy, str) and legacy else None,
    )


def is_metallb_object(obj: Mapping[str, Any]) -> bool:
    api = obj.get("apiVersion")
    return isinstance(api, str) and api.split("/")[0] == GROUP


def spec_fields(obj: Mapping[str, Any], problems: Problems, known: frozenset[str]) -> Fields:
    return Fields(obj.get("spec"), object_label(obj), "spec", problems, known)


def name_of(obj: Mapping[str, Any]) -> str:
    """The name, checked to be a non-empty string before an object is parsed."""
    return str(metadata(obj)["name"])


def namespace_of(obj: Mapping[str, Any]) -> str | None:
    ns = metadata(obj).get("namespace")
    return ns if isinstance(ns, str) and ns else None


def labels_of(obj: Mapping[str, Any], problems: Problems) -> tuple[tuple[str, str], ...]:
    """``metadata.labels`` as sorted pairs; a value that is not text is refused (a YAML file
    may hold anything there, the API server only strings)."""
    labels = metadata(obj).get("labels")
    if labels is None:
        return ()
    if not isinstance(labels, Mapping):
        problems.error(object_label(obj), "metadata.labels", f"must be a mapping, got "
                       f"{describe(labels)}")  # fmt: skip
        return ()
    out: list[tuple[str, str]] = []
    for key, value in labels.items():
        if not isinstance(value, str | int | float | bool) or isinstance(key, list | Mapping):
            problems.error(
                object_label(obj),
                f"metadata.labels.{_text(key, '?')}",
                f"must be a string, got {describe(value)}",
            )
            continue
        out.append((str(key), str(value)))
    return tuple(sorted(out))


def flag_annotation(obj: Mapping[str, Any], name: str, problems: Problems) -> bool:
    """An exalb on/off annotation: absent = off; "true"/"false"; anything else is an error
    (a typo must not silently leave a feature off)."""
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = ann.get(name) if isinstance(ann, Mapping) else None
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    path = f"metadata.annotations[{name}]"
    problems.error(object_label(obj), path, f'must be "true" or "false", got {value!r}')
    return False
