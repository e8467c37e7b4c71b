"""L2 benchmark: failover time, steady-state packet rate and memory of the garp sidecar.

Runs the lab of ``tests/lab/l2_topology.py`` (three nodes with the real ``exalb-garp``, one
client, in namespaces; root needed) and prints a table:

* failover time over N kills of the owner, three ways: SIGKILL of its sidecar (detection by
  silence), its link taken down (partition), SIGTERM (graceful hand-over with BYE). Time is
  measured from the action until the client's UDP traffic (one datagram per 5 ms per VIP)
  is answered by the standby, i.e. includes detection, the GARP/NA and the client's
  neighbour update; the worse of the IPv4 and IPv6 VIPs counts.
* frames per second each sidecar's node sends in steady state (no client traffic, bursts
  over), counted on the bridge ports, with 2 and with 32 L2 IPs, split into liveness probes
  (UDP) and ARP/NDP, and per IP;
* sidecar RSS and CPU in steady state.

Usage: ``sudo .venv/bin/python bench/l2.py [--kills 20] [--window 10]``
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lab/ is not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

from l2_topology import (
    NODES,
    PROBE_PORT,
    VIP4,
    VIP6,
    L2Lab,
    l2_lab,
    lab_skip_reason,
    netns,
    one_answer_within,
    service,
    traffic_switch,
    wait_for,
)

from exalb.config.model import Config, L2Advertisement, Pool

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    ms = [x * 1000 for x in (xs[0], statistics.median(xs), p95, xs[-1])]
    return " ".join(f"{v:8.1f}" for v in ms)


def _restore(lab: L2Lab, owner: str) -> None:
    if owner not in lab.sidecars:
        lab.start_sidecar(owner)
    lab.set_link(owner, up=True)
    wait_for(lambda: traffic_switch(lab, owner, lambda: None).keys() == {VIP4, VIP6}, 10)
    one_answer_within(lab, owner, timeout=5)


def failovers(lab: L2Lab, kind: str, n: int) -> list[float]:
    owner, standby, _ = lab.ranking()
    out: list[float] = []
    for _ in range(n):
        if kind == "link":
            took = traffic_switch(lab, standby, lambda: lab.set_link(owner, up=False))
        else:
            sig = signal.SIGKILL if kind == "sigkill" else signal.SIGTERM
            pid = lab.sidecars[owner].pid
            took = traffic_switch(lab, standby, lambda p=pid, g=sig: _signal(p, g))
            lab.stop_sidecar(owner)
        out.append(max(took.values()) if len(took) == 2 else float("inf"))
        _restore(lab, owner)
    return out


def _signal(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def count_frames(lab: L2Lab, window: float) -> dict[str, dict[str, int]]:
    """Frames each node sent into the bridge during ``window``, by kind."""
    socks: dict[socket.socket, str] = {}
    with netns(lab.br):
        for i, n in enumerate(NODES, start=1):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((f"p{i}", ETH_P_ALL))
            socks[s] = n
    counts = {n: {"probe": 0, "arp/ndp": 0, "other": 0} for n in NODES}
    end = time.monotonic() + window
    try:
        while (left := end - time.monotonic()) > 0:
            for s in select.select(list(socks), [], [], left)[0]:
                frame, addr = s.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue  # towards the node, not from it
                counts[socks[s]][_kind(frame)] += 1
    finally:
        for s in socks:
            s.close()
    return counts


def _kind(frame: bytes) -> str:
    etype = int.from_bytes(frame[12:14], "big")
    if etype == 0x0806:
        return "arp/ndp"
    if etype == 0x0800 and frame[23] == 17:
        ihl = (frame[14] & 0x0F) * 4
        if PROBE_PORT in (
            int.from_bytes(frame[14 + ihl + i : 16 + ihl + i], "big") for i in (0, 2)
        ):
            return "probe"
    if etype == 0x86DD:
        if frame[20] == 17 and PROBE_PORT in (
            int.from_bytes(frame[54:56], "big"),
            int.from_bytes(frame[56:58], "big"),
        ):
            return "probe"
        if frame[20] == 58 and frame[54] in (135, 136):
            return "arp/ndp"
    return "other"


def many_ips(lab: L2Lab, pairs: int) -> int:
    """``pairs`` dual-stack Services from a bench pool; returns the number of IPs."""
    pool = Pool("bench", cidrs=(ipaddress.ip_network("198.51.100.64/27"),
                                ipaddress.ip_network("2001:db8:50::100/120")))  # fmt: skip
    cfg = Config(pools=(pool,), l2_advertisements=(L2Advertisement("b", ("bench",)),))
    svcs = [
        service(
            ips=(
                ipaddress.ip_address(f"198.51.100.{64 + i}"),
                ipaddress.ip_address(f"2001:db8:50::{0x100 + i:x}"),
            ),
            name=f"s{i}",
        )
        for i in range(pairs)
    ]
    lab.apply(*svcs, config=cfg)
    return 2 * pairs


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady(lab: L2Lab, n_ips: int, window: float) -> list[str]:
    time.sleep(5.6)  # let every gratuitous burst (5 s) finish
    cpu0 = {n: _cpu_seconds(lab.sidecars[n].pid) for n in NODES}
    counts = count_frames(lab, window)
    rows = []
    owners = {e.owner for e in lab.elections}
    for n in NODES:
        c = counts[n]
        cpu = (_cpu_seconds(lab.sidecars[n].pid) - cpu0[n]) / window * 100
        role = "owner" if n in owners else "standby/other"
        total = (c["probe"] + c["arp/ndp"]) / window
        rows.append(
            f"  {n:3} {role:13} {n_ips:4} {c['probe'] / window:9.1f} {c['arp/ndp'] / window:8.2f}"
            f" {total / n_ips:8.2f} {c['other'] / window:7.2f} {lab.rss_kb(n) / 1024:7.1f}"
            f" {cpu:6.2f}"
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--window", type=float, default=10.0)
    args = ap.parse_args()
    reason = lab_skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    with l2_lab() as lab:
        owner, standby, _ = lab.ranking()
        traffic_switch(lab, owner, lambda: None)  # client neighbour entries exist
        results = {k: failovers(lab, k, args.kills) for k in ("sigkill", "link", "sigterm")}
        print(f"\nfailover owner {owner} -> standby {standby}, client traffic every 5 ms, "
              f"{args.kills} kills each (ms)")  # fmt: skip
        print(f"  {'how':26} {'min':>8} {'median':>8} {'p95':>8} {'max':>8}")
        names = {
            "sigkill": "SIGKILL owner sidecar",
            "link": "owner link down",
            "sigterm": "SIGTERM owner (BYE)",
        }
        for k, xs in results.items():
            print(f"  {names[k]:26} {_stats(xs)}")
        print(f"\nsteady state, {args.window:.0f} s window, frames/s sent by each node")
        print(f"  {'node':3} {'role':13} {'IPs':>4} {'probe/s':>9} {'arp+nd/s':>8}"
              f" {'/s per IP':>8} {'other/s':>7} {'RSS MiB':>7} {'CPU %':>6}")  # fmt: skip
        for row in steady(lab, 2, args.window):
            print(row)
        n = many_ips(lab, 16)
        for row in steady(lab, n, args.window):
            print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
