"""The legacy MetalLB ConfigMap (MetalLB ≤ v0.12), read by converting it to CRD objects.

Conversion first, then the one CRD parser: the two formats can never drift apart in what
they accept, and ``exalbctl config convert`` prints the objects exalb itself uses. Names
follow MetalLB's own converter (``peer1…N``, ``bgpadvertisementN``, ``l2advertisementN``,
one ``Community`` named ``communities``, and pool and BFD profile names made valid object
names by :func:`with_object_names`, which only the converter applies) so a later switch to
CRDs keeps the names. Every generated object carries its legacy origin, so messages from the
CRD parser still point at the legacy field ("BGPPeer/peer1 (from peers[0]): spec.myASN: is
required").
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exalb.config.crd import parse_objects
from exalb.config.fields import Fields
from exalb.config.limits import InputError, describe
from exalb.config.objects import GROUP, LEGACY_SOURCE_ANNOTATION
from exalb.config.pools import BFD_FIELDS, check_bfd_profile
from exalb.config.problems import Problems, Subject, capped
from exalb.config.result import ParseResult
from exalb.config.yamlsafe import load_one

CONFIG_KEY = "config"

_TOP = frozenset({"peers", "address-pools", "bgp-communities", "bfd-profiles"})
_PEER_KEYS: dict[str, str] = {
    "peer-address": "peerAddress",
    "peer-asn": "peerASN",
    "my-asn": "myASN",
    "peer-port": "peerPort",
    "hold-time": "holdTime",
    "keepalive-time": "keepaliveTime",
    "router-id": "routerID",
    "source-address": "sourceAddress",
    "password": "password",
    "bfd-profile": "bfdProfile",
    "ebgp-multihop": "ebgpMultiHop",
}
_POOL_KEYS = frozenset(
    {
        "name",
        "protocol",
        "addresses",
        "auto-assign",
        "avoid-buggy-ips",
        "bgp-advertisements",
    }
)
_BFD_KEYS = {key: re.sub("([A-Z])", r"-\1", key).lower() for key in BFD_FIELDS}
_AD_KEYS: dict[str, str] = {
    "aggregation-length": "aggregationLength",
    "aggregation-length-v6": "aggregationLengthV6",
    "localpref": "localPref",
    "communities": "communities",
}


def parse_legacy_text(
    text: str, *, namespace: str = "metallb-system", origin: Subject = "config"
) -> ParseResult:
    """Parse the YAML text under the ConfigMap's ``config`` key."""
    objects, problems = legacy_text_to_objects(text, namespace=namespace, origin=origin)
    if problems.error_count:
        return ParseResult(None, capped(problems.items))
    result = parse_objects(objects, source="configmap")
    return ParseResult(result.config, capped((*problems.items, *result.problems)))


def legacy_text_to_objects(
    text: str, *, namespace: str = "metallb-system", origin: Subject = "config"
) -> tuple[list[dict[str, Any]], Problems]:
    """The objects of a legacy ``config`` text; its YAML is loaded within the bounds of
    :mod:`exalb.config.limits` (the text is the one input here that is not JSON from the
    API server: aliases, duplicate keys and absurd nesting are possible)."""
    problems = Problems()
    try:
        doc = load_one(text) if text.strip() else {}
    except InputError as exc:
        problems.error(origin, exc.path, exc.message)
        return [], problems
    return legacy_to_objects(doc, namespace=namespace, origin=origin, problems=problems)


def legacy_to_objects(
    doc: Any,
    *,
    namespace: str = "metallb-system",
    origin: Subject = "config",
    problems: Problems | None = None,
) -> tuple[list[dict[str, Any]], Problems]:
    """Convert a legacy config document to ``metallb.io`` objects (dicts, CRD form)."""
    problems = problems if problems is not None else Problems()
    converter = _Converter(namespace, origin, problems)
    top = Fields(doc, origin, "", problems, _TOP)
    converter.peers(top)
    converter.communities(top)
    converter.bfd_profiles(top)
    converter.pools(top)
    return converter.objects, problems


class _Converter:
    """Collects the objects one legacy document becomes; each section has its method."""

    def __init__(self, namespace: str, origin: Subject, problems: Problems) -> None:
        self.namespace = namespace
        self.origin = origin
        self.problems = problems
        self.objects: list[dict[str, Any]] = []
        self.bgp_count = 0
        self.l2_count = 0

    def make(self, kind: str, version: str, name: str, source: str, spec: dict[str, Any]) -> None:
        self.objects.append(
            {
                "apiVersion": f"{GROUP}/{version}",
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "annotations": {LEGACY_SOURCE_ANNOTATION: source},
                },
                "spec": spec,
            }
        )

    def peers(self, top: Fields) -> None:
        known = frozenset(_PEER_KEYS) | {"node-selectors"}
        for i, (path, item) in enumerate(top.items("peers"), start=1):
            peer = Fields(item, self.origin, path, self.problems, known)
            spec = {_PEER_KEYS[k]: v for k, v in peer.data.items() if k in _PEER_KEYS}
            if peer.has("node-selectors"):
                spec["nodeSelectors"] = [
                    _selector(sel, self.origin, spath, self.problems)
                    for spath, sel in peer.items("node-selectors")
                ]
            self.make("BGPPeer", "v1beta2", f"peer{i}", path, spec)

    def communities(self, top: Fields) -> None:
        communities = top.raw("bgp-communities")
        if communities is None:
            return
        if not isinstance(communities, Mapping):
            top.error("bgp-communities", "must be a mapping of alias names to a:b values")
            return
        entries = [{"name": str(k), "value": v} for k, v in communities.items()]
        self.make("Community", "v1beta1", "communities", "bgp-communities",
                  {"communities": entries})  # fmt: skip

    def bfd_profiles(self, top: Fields) -> None:
        names: dict[str, str] = {}
        known = frozenset({"name", *_BFD_KEYS.values()})
        for path, item in top.items("bfd-profiles"):
            profile = Fields(item, self.origin, path, self.problems, known)
            name = profile.string("name", required=True)
            if name is not None and name in names:
                profile.error("name", f"duplicate BFD profile name {name!r} ({names[name]})")
            elif name is not None:
                names[name] = path
            check_bfd_profile(profile, _BFD_KEYS)
            if name is not None and names.get(name) == path:
                spec = {k: profile.raw(v) for k, v in _BFD_KEYS.items() if profile.has(v)}
                self.make("BFDProfile", "v1beta1", name, path, spec)

    def pools(self, top: Fields) -> None:
        for path, item in top.items("address-pools"):
            pool = Fields(item, self.origin, path, self.problems, _POOL_KEYS)
            name = pool.string("name", required=True)
            protocol = pool.raw("protocol")
            if protocol is None:
                pool.error("protocol", "missing the protocol field (layer2 or bgp)")
            elif protocol not in ("layer2", "bgp"):
                pool.error("protocol", f"unknown protocol {describe(protocol)} (layer2 or bgp)")
                protocol = None
            if name is None:
                continue
            pool_spec: dict[str, Any] = {"addresses": pool.raw("addresses")}
            if pool.has("auto-assign"):
                pool_spec["autoAssign"] = pool.raw("auto-assign")
            if pool.has("avoid-buggy-ips"):
                pool_spec["avoidBuggyIPs"] = pool.raw("avoid-buggy-ips")
            self.make("IPAddressPool", "v1beta1", name, path, pool_spec)
            if protocol == "layer2":
                self._l2_advertisement(pool, name, path)
            elif protocol == "bgp":
                self._bgp_advertisements(pool, name, path)

    def _l2_advertisement(self, pool: Fields, name: str, path: str) -> None:
        if pool.has("bgp-advertisements"):
            pool.error("bgp-advertisements", "is only allowed in pools with protocol bgp")
        self.l2_count += 1
        self.make("L2Advertisement", "v1beta1", f"l2advertisement{self.l2_count}", path,
                  {"ipAddressPools": [name]})  # fmt: skip

    def _bgp_advertisements(self, pool: Fields, name: str, path: str) -> None:
        ads = list(pool.items("bgp-advertisements")) or [(path, {})]
        for apath, ad in ads:
            af = Fields(ad, self.origin, apath, self.problems, frozenset(_AD_KEYS))
            ad_spec: dict[str, Any] = {_AD_KEYS[k]: v for k, v in af.data.items() if k in _AD_KEYS}
            ad_spec["ipAddressPools"] = [name]
            self.bgp_count += 1
            self.make("BGPAdvertisement", "v1beta1", f"bgpadvertisement{self.bgp_count}", apath,
                      ad_spec)  # fmt: skip


# MetalLB's converter leaves a legacy name alone when it matches this, and otherwise makes
# one (``configmaptocrs/main.go``, ``convertNamesToK8S``/``formatToK8S``): cut to 63
# characters, lower-cased, ``_`` to ``-``, everything before the first letter dropped.
_KEEP_NAME = re.compile(r"^[a-z][-a-z0-9]{0,61}[a-z0-9]$")
# What the API server accepts as an object name (an RFC 1123 subdomain).
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def object_name(legacy: str) -> str | None:
    """The object name MetalLB's converter gives a legacy pool or BFD profile name; ``None``
    when even that is not a name the API server accepts (``formatToK8S`` does not check its
    result)."""
    if _KEEP_NAME.match(legacy):
        return legacy
    name = legacy[:63].lower().replace("_", "-")
    first = re.search("[a-z]", name)
    if first is None:
        return None
    name = name[first.start() :]
    return name if len(name) <= 253 and _OBJECT_NAME.match(name) else None


@dataclass(frozen=True)
class Renamed:
    """A legacy pool or BFD profile that got another name as an object."""

    legacy: str
    name: str
    source: str  # the legacy field, e.g. ``address-pools[1]``
    kind: str  # ``IPAddressPool`` or ``BFDProfile``


# The kinds whose legacy names MetalLB's converter turns into object names, each with the
# words a message uses for it.
_RENAMED_KINDS = {"IPAddressPool": ("an", "pool"), "BFDProfile": ("a", "BFD profile")}


def with_object_names(
    objects: list[dict[str, Any]], problems: Problems, origin: Subject = "config"
) -> tuple[list[dict[str, Any]], tuple[Renamed, ...]]:
    """``objects`` (from :func:`legacy_to_objects`) with pool and BFD profile names the API
    server accepts.

    The legacy format had no such rule, so ``Capitalized-AddressPool`` or
    ``underscored_bfd_profile`` was fine there; as an object name it is refused. Every
    reference follows: the advertisements' ``ipAddressPools`` and the peers' ``bfdProfile``
    (a peer naming no profile of the config has its reference converted the same way, as
    MetalLB's converter does). Only ``exalbctl config convert`` needs this: exalb reading a
    legacy ConfigMap keeps its names, so the Services' ``address-pool`` annotations keep
    matching.
    """
    pools = _object_names(objects, "IPAddressPool", problems, origin)
    profiles = _object_names(objects, "BFDProfile", problems, origin)
    defined = {_legacy_name(obj) for obj in objects if obj["kind"] == "BFDProfile"}
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        renames = {"IPAddressPool": pools, "BFDProfile": profiles}.get(obj["kind"], {})
        if obj["metadata"]["name"] in renames:
            obj["metadata"]["name"] = renames[obj["metadata"]["name"]].name
        refs = obj["spec"].get("ipAddressPools")
        if isinstance(refs, list):
            obj["spec"]["ipAddressPools"] = [pools[p].name if p in pools else p for p in refs]
        if obj["kind"] == "BGPPeer":
            _follow_bfd_profile(obj, profiles, defined, problems, origin)
        out.append(obj)
    return out, (*pools.values(), *profiles.values())


def _legacy_name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _legacy_source(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("annotations", {}).get(LEGACY_SOURCE_ANNOTATION, ""))


def _object_names(
    objects: list[dict[str, Any]], kind: str, problems: Problems, origin: Subject
) -> dict[str, Renamed]:
    """The ``kind`` objects whose legacy name must change, by that name; a name that cannot
    be made valid, or that becomes the name another one has, is an error."""
    renames: dict[str, Renamed] = {}
    owner: dict[str, str] = {}
    for obj in objects:
        if obj["kind"] != kind:
            continue
        legacy, source = _legacy_name(obj), _legacy_source(obj)
        name = object_name(legacy)
        if name is None:
            article, noun = _RENAMED_KINDS[kind]
            problems.error(
                origin,
                f"{source}.name",
                f"{legacy!r} cannot be turned into {article} {kind} name (lower-case letters, "
                f"digits and '-', starting with a letter); rename the {noun}",
            )
            continue
        if name in owner:
            problems.error(
                origin,
                f"{source}.name",
                f"{legacy!r} becomes {kind} {name!r}, as {owner[name]!r} does; rename one of them",
            )
            continue
        owner[name] = legacy
        if name != legacy:
            renames[legacy] = Renamed(legacy, name, source, kind)
    return renames


def _follow_bfd_profile(
    peer: dict[str, Any],
    profiles: Mapping[str, Renamed],
    defined: set[str],
    problems: Problems,
    origin: Subject,
) -> None:
    """The peer's ``bfdProfile`` after the profiles' renames. A reference to no profile of
    the config is converted on its own, as MetalLB's converter does (the config check
    still reports it as missing); one that cannot be converted is an error."""
    ref = peer["spec"].get("bfdProfile")
    if not isinstance(ref, str) or not ref or (ref in defined and ref not in profiles):
        return
    name = profiles[ref].name if ref in profiles else object_name(ref)
    if name is None:
        problems.error(
            origin,
            f"{_legacy_source(peer)}.bfd-profile",
            f"{ref!r} cannot be turned into a BFDProfile name (lower-case letters, digits "
            "and '-', starting with a letter)",
        )
        return
    peer["spec"]["bfdProfile"] = name


def _selector(data: Any, origin: Subject, path: str, problems: Problems) -> dict[str, Any]:
    f = Fields(data, origin, path, problems, frozenset({"match-labels", "match-expressions"}))
    out: dict[str, Any] = {}
    if f.has("match-labels"):
        out["matchLabels"] = f.raw("match-labels")
    if f.has("match-expressions"):
        out["matchExpressions"] = f.raw("match-expressions")
    return out
