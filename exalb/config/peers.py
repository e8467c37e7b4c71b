"""BGPPeer objects (v1beta2 and v1beta1) into :class:`~exalb.config.model.Peer`.

MetalLB's fields and defaults (``bfdProfile`` too: FRR's bfdd runs next to ExaBGP,
docs/bfd.md), with what ExaBGP cannot honour refused loudly (VRF, unnumbered peers,
``connectTime``) instead of dropped, and timers held to what BGP itself
allows: RFC 4271 carries the hold time in 16 bits and allows 0 (no keepalives) or 3 s and
more. A ``holdTime: 1000000s`` passed MetalLB's CRD rule; ExaBGP then refused the whole
rendered file, freezing every peer of the node, so it is refused here, on its field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal, cast

from exalb.config.fields import Fields, read_selectors
from exalb.config.model import IPAddress, Peer, SecretRef
from exalb.config.objects import name_of, namespace_of, spec_fields
from exalb.config.problems import Problems
from exalb.config.values import parse_asn, parse_duration, parse_ip

#: RFC 4271 section 4.2: the hold time is two octets, zero or at least three seconds.
MAX_HOLD_TIME = 65535
MIN_HOLD_TIME = 3

_PEER_FIELDS = frozenset(
    {
        "myASN",
        "peerASN",
        "dynamicASN",
        "peerAddress",
        "interface",
        "sourceAddress",
        "routerID",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "connectTime",
        "nodeSelectors",
        "password",
        "passwordSecret",
        "bfdProfile",
        "enableGracefulRestart",
        "ebgpMultiHop",
        "vrf",
        "disableMP",
        "dualStackAddressFamily",
        "localASN",
    }
)


def read_peer(obj: Mapping[str, Any], problems: Problems) -> Peer | None:
    spec = spec_fields(obj, problems, _PEER_FIELDS)
    before = problems.error_count
    my_asn, peer_asn, local_asn, dynamic = _asns(spec)
    address = _peer_address(spec)
    source = _optional_ip(spec, "sourceAddress")
    router_id = _optional_ip(spec, "routerID")
    if router_id is not None and not isinstance(router_id, ipaddress.IPv4Address):
        spec.error("routerID", f"{router_id} must be an IPv4 address")
        router_id = None
    port = spec.integer("peerPort", 179, low=1, high=16384) or 179
    hold, keepalive = read_timers(spec)
    _unsupported(spec)
    password, secret = _password(spec, namespace_of(obj))
    multihop = spec.boolean("ebgpMultiHop", False)
    graceful = spec.boolean("enableGracefulRestart", False)
    bfd_profile = spec.string("bfdProfile") or None  # checked against the BFDProfiles later
    selectors = read_selectors(spec, "nodeSelectors")
    if problems.error_count != before or my_asn is None or address is None:
        return None
    peer = Peer(
        name=name_of(obj),
        my_asn=my_asn,
        peer_address=address,
        peer_asn=peer_asn,
        dynamic_asn=dynamic,
        peer_port=port,
        source_address=source,
        router_id=router_id,
        hold_time=hold,
        keepalive_time=keepalive,
        ebgp_multihop=multihop,
        password=password,
        password_secret=secret,
        node_selectors=selectors,
        enable_graceful_restart=graceful,
        local_asn=local_asn,
        bfd_profile=bfd_profile,
    )
    return peer if _consistent(spec, peer) else None


Dynamic = Literal["internal", "external"]


def _asns(spec: Fields) -> tuple[int | None, int | None, int | None, Dynamic | None]:
    my_asn = _asn(spec, "myASN", required=True)
    peer_asn = _asn(spec, "peerASN", required=False)
    local_asn = _asn(spec, "localASN", required=False)
    dynamic = spec.string("dynamicASN")
    if dynamic is not None and dynamic not in ("internal", "external"):
        spec.error("dynamicASN", f"{dynamic!r} must be internal or external")
    if peer_asn is not None and dynamic is not None:
        spec.error("dynamicASN", "peerASN and dynamicASN are mutually exclusive")
    if peer_asn is None and dynamic is None:
        spec.error("peerASN", "one of peerASN or dynamicASN is required")
    return my_asn, peer_asn, local_asn, cast("Dynamic | None", dynamic)


def _peer_address(spec: Fields) -> IPAddress | None:
    if spec.has("interface"):
        spec.error("interface", "unnumbered BGP peers are not supported by ExaBGP; use peerAddress")
    if spec.has("peerAddress"):
        return _optional_ip(spec, "peerAddress")
    if not spec.has("interface"):
        spec.error("peerAddress", "is required")
    return None


def _unsupported(spec: Fields) -> None:
    """Fields ExaBGP cannot honour are errors; ``disableMP`` is harmless and ignored."""
    if spec.has("connectTime"):
        spec.error("connectTime", "ExaBGP 5.0 has no connect-retry setting; remove the field")
    if spec.string("vrf"):
        spec.error("vrf", "VRFs are not supported; run the speaker inside the VRF instead")
    if spec.boolean("dualStackAddressFamily", False):
        spec.error(
            "dualStackAddressFamily",
            "exalb announces each family over its own session; configure an IPv6 peer instead",
        )
    # The CRD defaults disableMP to false, so every BGPPeer carries it: only true is news.
    if spec.boolean("disableMP", False):
        spec.warn("disableMP", "deprecated and without effect: each family has its own session")


def _password(spec: Fields, namespace: str | None) -> tuple[str | None, SecretRef | None]:
    password = spec.string("password") or None
    secret: SecretRef | None = None
    if spec.has("passwordSecret"):
        ps = spec.mapping("passwordSecret", frozenset({"name", "namespace"}))
        sname = ps.string("name", required=True)
        sns = ps.string("namespace") or namespace or ""
        if sname:
            secret = SecretRef(sname, sns)
        if password:
            spec.error("passwordSecret", "password and passwordSecret are mutually exclusive")
    return password, secret


def _consistent(spec: Fields, peer: Peer) -> bool:
    """Rules that need the whole peer (its iBGP-ness, its address family)."""
    if peer.ebgp_multihop and peer.is_ibgp:
        spec.error("ebgpMultiHop", "is only valid for eBGP peers (peer AS equals local AS)")
        return False
    source = peer.source_address
    if source is not None and source.version != peer.peer_address.version:
        spec.error("sourceAddress", f"{source} is not of the same family as {peer.peer_address}")
        return False
    return True


def _asn(spec: Fields, key: str, *, required: bool) -> int | None:
    if not spec.has(key):
        if required:
            spec.error(key, "is required")
        return None
    value = spec.raw(key)
    if key == "peerASN" and value == 0:
        return None  # MetalLB's omitempty: 0 means unset
    try:
        return parse_asn(value)
    except ValueError as exc:
        spec.error(key, str(exc))
        return None


def _optional_ip(spec: Fields, key: str) -> IPAddress | None:
    if not spec.has(key):
        return None
    try:
        return parse_ip(spec.raw(key))
    except ValueError as exc:
        spec.error(key, str(exc))
        return None


def read_timers(spec: Fields) -> tuple[int | None, int | None]:
    """holdTime/keepaliveTime: one given derives the other; ExaBGP only has hold time (and
    sends keepalives every hold/3), so a keepalive that is not hold/3 is refused."""
    hold = _seconds(spec, "holdTime")
    keepalive = _seconds(spec, "keepaliveTime")
    if hold is not None and not _valid_hold(hold):
        spec.error("holdTime", f"{hold}s is out of range: {_HOLD_RULE}")
        return None, None
    if hold is not None and keepalive is not None and keepalive > hold:
        spec.error("keepaliveTime", f"{keepalive}s must not exceed holdTime {hold}s")
        return None, None
    if keepalive is not None:
        derived_hold = hold if hold is not None else keepalive * 3
        if not _valid_hold(derived_hold):
            spec.error(
                "keepaliveTime",
                f"{keepalive}s makes a hold time of {derived_hold}s (3 x keepalive), out of "
                f"range: {_HOLD_RULE}",
            )
            return None, None
        if derived_hold // 3 != keepalive:
            spec.error(
                "keepaliveTime",
                f"ExaBGP always uses holdTime/3 as keepalive ({derived_hold // 3}s); "
                f"set keepaliveTime to that or remove it",
            )
            return None, None
        hold = derived_hold
    return hold, (hold // 3 if hold is not None else None)


_HOLD_RULE = f"BGP allows 0 or {MIN_HOLD_TIME}..{MAX_HOLD_TIME} seconds (RFC 4271)"


def _valid_hold(seconds: int) -> bool:
    return seconds == 0 or MIN_HOLD_TIME <= seconds <= MAX_HOLD_TIME


def _seconds(spec: Fields, key: str) -> int | None:
    if not spec.has(key):
        return None
    try:
        return round(parse_duration(spec.raw(key)))
    except ValueError as exc:
        spec.error(key, str(exc))
        return None
