"""Allocator benchmark: allocate, restore and release N Services (mixed IPv4/IPv6).

Pools: an IPv4 /12 and an IPv6 /64 (data only; nothing is put on an interface). Prints one
row per N with the time per operation and the peak memory traced during allocation.
Targets (issue 2): 100,000 allocations under 10 s, and the per-allocation time at 100,000
within 2x of the time at 1,000.

    python bench/allocator.py [N ...]
"""

from __future__ import annotations

import ipaddress
import sys
import time
import tracemalloc
from collections.abc import Callable

from controller.allocator import Allocator
from exalb.config.model import Config, Pool
from exalb.views import ServiceView

CONFIG = Config(
    pools=(
        Pool("v4", (ipaddress.ip_network("10.16.0.0/12"),)),
        Pool("v6", (ipaddress.ip_network("2001:db8:ffff::/64"),)),
    )
)


def services(n: int) -> list[ServiceView]:
    return [
        ServiceView(
            namespace=f"ns{i % 50}",
            name=f"svc-{i}",
            ports=(("TCP", 80),),
            cluster_ip_families=(6,) if i % 2 else (4,),
        )
        for i in range(n)
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(n: int) -> dict[str, float]:
    views = services(n)
    al = Allocator(CONFIG)
    t_alloc = timed(lambda: [al.assign(v) for v in views])
    assert all(al.assigned(v.key) for v in views)
    restored = [ServiceView(**{**v.__dict__, "assigned_ips": al.assigned(v.key)}) for v in views]
    fresh = Allocator(CONFIG)
    t_restore = timed(lambda: fresh.restore_all(restored))
    assert fresh.usage() == al.usage()
    t_release = timed(lambda: [al.release(v.key) for v in views])
    tracemalloc.start()
    probe = Allocator(CONFIG)
    for v in views:
        probe.assign(v)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n": n,
        "alloc": t_alloc,
        "restore": t_restore,
        "release": t_release,
        "peak_mib": peak / 2**20,
    }


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1_000, 10_000, 100_000]
    rows = [run(n) for n in sizes]
    print(
        f"{'N':>8} {'allocate total':>15} {'µs/alloc':>9} {'restore total':>14} "
        f"{'µs/restore':>11} {'release total':>14} {'µs/release':>11} {'peak MiB':>9}"
    )
    for r in rows:
        n = r["n"]
        print(
            f"{n:>8,} {r['alloc']:>14.3f}s {r['alloc'] / n * 1e6:>9.1f} "
            f"{r['restore']:>13.3f}s {r['restore'] / n * 1e6:>11.1f} "
            f"{r['release']:>13.3f}s {r['release'] / n * 1e6:>11.1f} {r['peak_mib']:>9.1f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = (last["alloc"] / last["n"]) / (first["alloc"] / first["n"])
        print(
            f"per-allocation time at {last['n']:,} vs {first['n']:,}: {ratio:.2f}x "
            f"(target <= 2x); {last['n']:,} allocations in {last['alloc']:.2f}s "
            "(target < 10s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
