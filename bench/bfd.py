"""BFD benchmark: how fast the router drops a dead node's path, with BFD and without.

Runs ``containerlab/bgp-bfd`` (r1 = FRR with bgpd + bfdd and ``neighbor ... bfd profile
fast``, 300 ms x 3) in namespaces; root needed. n1 and n2 run ExaBGP (hold time 9 s) and FRR's
bfdd started by exalb's launcher (``speaker/bfd/launch.py``) from the config exalb renders
(``speaker/bfd/render.py``); n3 runs ExaBGP with hold time 3 s (the RFC 4271 minimum) and no
bfdd: the floor without BFD. Each announces the same /32; r1's kernel FIB holds 3 next hops.

Per trial a node "dies" while its link stays up, and the time from that moment until r1's
FIB has one next hop less is measured (netlink poll every 1 ms):

* ``freeze``: SIGSTOP of every process of the node (ExaBGP, its children, bfdd): TCP stays
  open, nothing is sent;
* ``drop``: an nftables table in the node's namespace drops every packet in and out;
* ``hold``: n3 frozen, no BFD: only the BGP hold time (3 s) takes its path away.

Then the node comes back (SIGCONT / table deleted) and the next trial waits for BFD and the
path. Prints median, p95, min and max.

Usage: ``sudo .venv/bin/python bench/bfd.py [--trials 20] [--hold-trials 5]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exalb.config.model import BFDProfile
from lab import netns
from lab.nsnet import forbid_host_dials
from lab.runner import Lab, unavailable_reason
from lab.topology import topology_path
from lab.wait import wait_for
from speaker.bfd.render import BfdPeer, BfdPlan

PREFIX = "203.0.113.99/32"
FAST = BFDProfile("fast", receive_interval=300, transmit_interval=300, detect_multiplier=3)
DROP_TABLE = "benchdrop"


def start_bfdd(lab: Lab, node: str) -> None:
    n = lab.node(node)
    assert n.bgp is not None
    peers = tuple(
        BfdPeer(f"r1-{node}", str(p.address), str(n.local_address_for(p.address)), False, "fast")
        for p in n.bgp.peers
    )
    conf = lab.node_dir(node) / "bfdd.conf"
    conf.write_text(BfdPlan((FAST,), peers).text)
    lab.popen(
        node,
        [sys.executable, "-m", "speaker.bfd.launch", "--config", str(conf),
         "--dir", str(lab.node_dir(node) / "bfdd")],
        name="bfdd",
    )  # fmt: skip


def bfd_up(lab: Lab, addresses: list[str]) -> bool:
    peers = {p["peer"]: p["status"] for p in lab.vtysh_json("r1", "show bfd peers json")}
    return all(peers.get(a) == "up" for a in addresses)


def nexthops(lab: Lab) -> int:
    route = lab.route("r1", PREFIX)
    return len(route.nexthops) if route else 0


def until_fewer(lab: Lab, since: float, timeout: float = 15.0) -> float:
    deadline = since + timeout
    while nexthops(lab) >= 3:
        if time.monotonic() > deadline:
            raise TimeoutError("the path never left r1's FIB")
        time.sleep(0.001)
    return time.monotonic() - since


def signal_node(lab: Lab, node: str, sig: signal.Signals) -> list[int]:
    pids = netns.pids(lab.ns(node))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def trial(lab: Lab, node: str, mode: str) -> float:
    """One death of ``node``; returns the seconds until r1 dropped its path."""
    if mode == "drop":
        rules = (
            f"table inet {DROP_TABLE} {{\n"
            "  chain in { type filter hook input priority -300; policy drop; }\n"
            "  chain out { type filter hook output priority -300; policy drop; }\n}\n"
        )
        t = time.monotonic()
        lab.exec(node, ["nft", "-f", "-"], input=rules)
        try:
            return until_fewer(lab, t)
        finally:
            lab.exec(node, ["nft", "delete", "table", "inet", DROP_TABLE], check=False)
    t = time.monotonic()
    pids = signal_node(lab, node, signal.SIGSTOP)
    try:
        return until_fewer(lab, t)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return "  ".join(f"{v * 1000:8.0f}" for v in (statistics.median(xs), p95, xs[0], xs[-1]))


def main() -> int:
    forbid_host_dials()  # lab addresses are reached from inside the namespaces only
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="per BFD mode")
    parser.add_argument("--hold-trials", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    results: dict[str, list[float]] = {"freeze": [], "drop": [], "hold": []}
    with Lab.up(topology_path("bgp-bfd")) as lab:
        for node, hold in (("n1", 9), ("n2", 9), ("n3", 3)):
            lab.start_exabgp_static(node, [PREFIX], hold_time=hold)
            if node != "n3":
                start_bfdd(lab, node)
        n1 = lab.node("n1")
        assert n1.bgp is not None
        n1_addresses = [str(n1.local_address_for(p.address)) for p in n1.bgp.peers]
        ready: Callable[[], bool] = lambda: nexthops(lab) == 3 and bfd_up(lab, n1_addresses)  # noqa: E731
        wait_for("3 paths and n1's BFD up", ready, 30, 0.05)
        plan = [("freeze", "n1")] * args.trials + [("drop", "n1")] * args.trials
        plan += [("hold", "n3")] * args.hold_trials
        for mode, node in plan:
            results[mode].append(trial(lab, node, "freeze" if mode == "hold" else mode))
            wait_for("back", ready, 60, 0.05)
            print(f"  {mode:6} {results[mode][-1] * 1000:6.0f} ms", file=sys.stderr)
    print("\nPath gone from r1's kernel FIB after the node died (link up), ms")
    print(f"{'how the node died':44} {'n':>3}  {'median':>8}  {'p95':>8}  {'min':>8}  {'max':>8}")
    rows = (
        ("freeze", "frozen (SIGSTOP), BFD 300 ms x 3"),
        ("drop", "drops every packet (nft), BFD 300 ms x 3"),
        ("hold", "frozen, no BFD: BGP hold time 3 s (floor)"),
    )
    for mode, label in rows:
        if results[mode]:
            print(f"{label:44} {len(results[mode]):3}  {stats(results[mode])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
