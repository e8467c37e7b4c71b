"""What the migration test gives MetalLB to allocate: pools, a peer, advertisements, and 200
Services across the pools, with shared IPs and requested IPs (pure: manifests out).

Pools (namespace ``metallb-system``)::

    bgp-a     203.0.113.0/26      autoAssign      8 Services request 203.0.113.50-57 by
                                                  spec.loadBalancerIP, the rest auto
    bgp-b     198.18.64.0/24      autoAssign
    bgp-c     203.0.113.128/27    by annotation   20 pairs, each sharing one IP
                                                  (allow-shared-ip, ports 80 and 443)
    reserved  203.0.113.192/28    by request      16 Services, metallb.io/loadBalancerIPs
    l2        198.51.100.240-250  by annotation   4 Services, announced by ARP (L2)

Every Service selects the same backend (``app=mig``, three pods, one per node), so each has
endpoints on every node; 12 of the automatic ones are ``externalTrafficPolicy: Local``.
Requested and annotated Services come first: MetalLB allocates in the order it sees them.
"""

from __future__ import annotations

from typing import Any

NS = "metallb-system"
APP = "mig-app"
BACKEND = "mig"
PEER = {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1", "holdTime": "9s"}
POOLS: dict[str, tuple[list[str], bool]] = {  # name -> (addresses, autoAssign)
    "bgp-a": (["203.0.113.0/26"], True),
    "bgp-b": (["198.18.64.0/24"], True),
    "bgp-c": (["203.0.113.128/27"], False),
    "reserved": (["203.0.113.192/28"], False),
    "l2": (["198.51.100.240-198.51.100.250"], False),
}
BGP_POOLS = ["bgp-a", "bgp-b", "bgp-c", "reserved"]
AUTO, LOCAL_EVERY = 132, 11

JSON = dict[str, Any]


def _obj(kind: str, name: str, spec: JSON, version: str = "v1beta1") -> JSON:
    return {"apiVersion": f"metallb.io/{version}", "kind": kind,
            "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip


def config_objects() -> list[JSON]:
    """The metallb.io objects: five pools, one peer, one BGP and one L2 advertisement."""
    pools = [
        _obj("IPAddressPool", name, {"addresses": addrs, "autoAssign": auto})
        for name, (addrs, auto) in POOLS.items()
    ]
    return [
        *pools,
        _obj("BGPPeer", "r1", dict(PEER), "v1beta2"),
        _obj("BGPAdvertisement", "bgp", {"ipAddressPools": BGP_POOLS}),
        _obj("L2Advertisement", "l2", {"ipAddressPools": ["l2"]}),
    ]


def legacy_config_map() -> JSON:
    """The same config in MetalLB's legacy ConfigMap (the format before v0.13)."""
    lines = [
        "peers:",
        f"- peer-address: {PEER['peerAddress']}",
        f"  peer-asn: {PEER['peerASN']}",
        f"  my-asn: {PEER['myASN']}",
        f"  hold-time: {PEER['holdTime']}",
        "address-pools:",
    ]
    for name, (addrs, auto) in POOLS.items():
        lines += [
            f"- name: {name}",
            f"  protocol: {'layer2' if name == 'l2' else 'bgp'}",
            f"  auto-assign: {str(auto).lower()}",
            "  addresses:",
            *(f"  - {a}" for a in addrs),
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": NS},
            "data": {"config": "\n".join(lines) + "\n"}}  # fmt: skip


def _svc(name: str, *, port: int = 80, local: bool = False, annotations: JSON | None = None,
         load_balancer_ip: str | None = None) -> JSON:  # fmt: skip
    spec: JSON = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Local" if local else "Cluster",
        "selector": {"app": BACKEND},
        "ports": [{"name": "http", "port": port, "targetPort": 8080}],
    }
    if load_balancer_ip:
        spec["loadBalancerIP"] = load_balancer_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": APP, "annotations": annotations or {}},
            "spec": spec}  # fmt: skip


def services() -> list[JSON]:
    """The 200 Services, in the order they are created."""
    out = [
        _svc(f"req-{i:02d}", annotations={"metallb.io/loadBalancerIPs": f"203.0.113.{192 + i}"})
        for i in range(16)
    ]
    out += [_svc(f"lbip-{i}", load_balancer_ip=f"203.0.113.{50 + i}") for i in range(8)]
    for i in range(20):
        share = {"metallb.io/address-pool": "bgp-c", "metallb.io/allow-shared-ip": f"s{i:02d}"}
        out += [_svc(f"share-{i:02d}-http", annotations=share),
                _svc(f"share-{i:02d}-https", port=443, annotations=share)]  # fmt: skip
    out += [_svc(f"l2-{i}", annotations={"metallb.io/address-pool": "l2"}) for i in range(4)]
    out += [_svc(f"auto-{i:03d}", local=i % LOCAL_EVERY == 0) for i in range(AUTO)]
    return out
