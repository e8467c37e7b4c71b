"""The config model as plain data, for ``-o json`` output and for human summaries."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from exalb.config.model import Config


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "password"
        }
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network,
    ):
        return str(value)
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """JSON-ready form. Passwords are never printed (only whether one is set)."""
    data: dict[str, Any] = _plain(config)
    for peer, model in zip(data["peers"], config.peers, strict=True):
        peer["password_set"] = model.password is not None
    return data


def summary_lines(config: Config) -> list[str]:
    lines = [f"source: {config.source}"]
    for p in config.pools:
        caps = ", ".join(f"IPv{f}: {p.capacity(f)}" for f in sorted(p.families()))
        extra = "" if p.auto_assign else " (autoAssign: false)"
        lines.append(f"pool {p.name}: {', '.join(map(str, p.cidrs))} [{caps}]{extra}")
    for peer in config.peers:
        asn = peer.peer_asn if peer.peer_asn is not None else peer.dynamic_asn
        hold = 90 if peer.hold_time is None else peer.hold_time
        lines.append(
            f"peer {peer.name}: {peer.peer_address} AS {asn} (local AS "
            f"{peer.session_local_asn}, hold {f'{hold}s' if hold else 'disabled'})"
        )
    for ad in config.bgp_advertisements:
        attrs = [f"/{ad.aggregation_length}", f"/{ad.aggregation_length_v6}"]
        if ad.local_pref:
            attrs.append(f"localPref {ad.local_pref}")
        attrs += [f"community {c}" for c in ad.communities]
        attrs += [f"large-community {c}" for c in ad.large_communities]
        if ad.weighted_ecmp:
            attrs.append("weighted ECMP (Local Services)")
        peers = ", ".join(ad.peers) or "all peers"
        lines.append(
            f"bgp advertisement {ad.name}: pools {', '.join(ad.pools)} -> {peers} "
            f"({' '.join(attrs)})"
        )
    for l2 in config.l2_advertisements:
        ifaces = ", ".join(l2.interfaces) or "all interfaces"
        lines.append(f"l2 advertisement {l2.name}: pools {', '.join(l2.pools)} on {ifaces}")
    return lines
