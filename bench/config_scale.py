"""Config parsing at scale: how long a config with N pools and their advertisements takes.

For N = 1,000, 4,000 and 20,000: N IPAddressPools (each labelled with its name), N
BGPAdvertisements naming one pool each, N L2Advertisements selecting one pool each by a
label selector, and a BGPPeer; parsed as the controller and the speaker do
(``parse_documents`` over the objects as the API server sends them). Then the same pools as
one legacy ConfigMap (protocol bgp, one advertisement each), YAML text included. Each cell is
the best of ``--repeat`` runs. Resolving advertisements to pools, the cross-object checks and
the model's lookups must be linear: the time per pool stays flat from 1,000 to 20,000.

    python bench/config_scale.py [N ...] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exalb.config.documents import parse_documents
from exalb.config.model import Config

NS = "metallb-system"


def cidr(i: int) -> str:
    """The i-th /28 of 10.0.0.0/8 (data only; nothing is put on an interface)."""
    base = i * 16
    return f"10.{base >> 16 & 255}.{base >> 8 & 255}.{base & 255}/28"


def obj(kind: str, name: str, spec: dict[str, Any], version: str = "v1beta1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if kind == "IPAddressPool":
        meta["labels"] = {"pool": name}
    return {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": meta, "spec": spec}


def crd_objects(n: int) -> list[tuple[str, Any]]:
    objs = [obj("IPAddressPool", f"p{i}", {"addresses": [cidr(i)]}) for i in range(n)]
    objs += [obj("BGPAdvertisement", f"b{i}", {"ipAddressPools": [f"p{i}"]}) for i in range(n)]
    objs += [
        obj(
            "L2Advertisement",
            f"l{i}",
            {"ipAddressPoolSelectors": [{"matchLabels": {"pool": f"p{i}"}}]},
        )
        for i in range(n)
    ]
    peer = {"myASN": 64512, "peerASN": 64500, "peerAddress": "198.51.100.1"}
    objs.append(obj("BGPPeer", "r1", peer, "v1beta2"))
    return [("bench", o) for o in objs]


def legacy_configmap(n: int) -> list[tuple[str, Any]]:
    lines = ["peers:", "- peer-address: 198.51.100.1", "  peer-asn: 64500", "  my-asn: 64512"]
    lines.append("address-pools:")
    for i in range(n):
        lines += [f"- name: p{i}", "  protocol: bgp", f"  addresses: [{cidr(i)}]"]
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config", "namespace": NS},
        "data": {"config": "\n".join(lines) + "\n"},
    }
    return [("bench", cm)]


def best(repeat: int, fn: Callable[[], Config | None]) -> tuple[float, Config | None]:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def row(n: int, repeat: int) -> tuple[int, float, float]:
    docs = crd_objects(n)
    crd_s, config = best(repeat, lambda: parse_documents(docs, namespace=NS).config)
    assert config is not None and len(config.pools) == n and len(config.bgp_advertisements) == n
    assert all(ad.pools == (f"p{ad.name[1:]}",) for ad in config.l2_advertisements)
    cm = legacy_configmap(n)
    legacy_s, config = best(repeat, lambda: parse_documents(cm, namespace=NS).config)
    assert config is not None and len(config.bgp_advertisements) == n
    return n, crd_s, legacy_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[1000, 4000, 20000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'pools':>7} {'CRD objects s':>14} {'µs/pool':>9} {'legacy CM s':>12} {'µs/pool':>9}")
    for n in args.sizes:
        _, crd_s, legacy_s = row(n, args.repeat)
        print(
            f"{n:>7} {crd_s:>14.3f} {crd_s / n * 1e6:>9.0f} "
            f"{legacy_s:>12.3f} {legacy_s / n * 1e6:>9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
