"""Zero-loss benchmark: client traffic through speaker rolling upgrades and node drains, and
weighted ECMP's weight error, on the real lab cluster (``containerlab/k8s-bgp``; root).

Brings the cluster up, installs the chart with helm, puts 3 backend pods behind a
Cluster-policy Service and prints, per scenario, new connections failed / total (20/s from
the client ``c``), long-lived connections broken / opened (30 echo connections, one byte
every 200 ms) and r1's ECMP set changes (its kernel FIB, sampled every 5 ms):

(a) ``helm upgrade`` rolling the speaker DaemonSet, drain 5 s (the chart's default);
(b) the same with ``speaker.drain.seconds: 0`` (withdraw at once, MetalLB's behaviour);
(c) the same with graceful restart and ``withdrawOnExit: false`` (routes kept through the
    restart: the router's ECMP set does not change at all);
(d) ``kubectl drain n2`` with the node opted in to drain-on-cordon, then n2 powers off
    (link down, kubelet gone), and (e) the same without the opt-in (n2 announces until the
    router's hold time expires);
(f) weighted ECMP: for several pod placements of a Local Service, r1's kernel weights vs
    the endpoint counts (error in percentage points of the traffic share);
(g) what re-hashing costs: 1,000 flows looked up with ``ip route get`` (r1's layer-4 hash)
    before and after one of three next hops leaves and comes back, for the kernel's
    hash-threshold multipath (what FRR 8.4 installs) and a resilient next-hop group (which
    FRR 8.4 cannot use for BGP routes), in a scratch table of the client's namespace.

Usage: ``sudo .venv/bin/python bench/rolling.py [--skip a,b,...] [--run NAME]``; with
``--run`` it uses a cluster already up (``scripts/lab up k8s-bgp --run NAME``) and leaves it
up, which helps on a machine so busy that a fresh cluster's nodes are slow to get Ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import netns, rollout  # noqa: E402
from lab.cluster.cluster import Cluster  # noqa: E402
from lab.cluster.workloads import backend_deployment, dump, load_balancer  # noqa: E402
from lab.nsnet import forbid_host_dials  # noqa: E402
from lab.rollout import ALL_NODES, Outcome, measured, paths, wait_paths  # noqa: E402
from lab.runner import Lab, unavailable_reason  # noqa: E402
from lab.wait import WaitTimeoutError, wait_for  # noqa: E402

APP = "bench"
PLACEMENTS = [(3, 1, 0), (1, 1, 1), (2, 1, 1), (5, 3, 1), (7, 2, 1), (1, 0, 6)]


def scenario_roll(lab: Lab, cluster: Cluster, ip: str, values: dict, name: str) -> Outcome:  # type: ignore[type-arg]
    with measured(lab, ip, name) as outcome:
        rollout.roll_speakers(cluster, values, outcome)
        wait_paths(lab, ip, ALL_NODES)
    return outcome


def scenario_drain(lab: Lab, cluster: Cluster, ip: str, opt_in: bool) -> Outcome:
    how = "opted in to drain-on-cordon" if opt_in else "not opted in"
    name = f"kubectl drain n2 ({how}), then n2 powers off"
    rollout.opt_in_drain_on_cordon(cluster, "n2", opt_in)
    try:
        with measured(lab, ip, name) as outcome:
            rollout.drain_then_power_off(lab, cluster, ip, "n2", opt_in, outcome)
    finally:
        rollout.power_on(cluster, "n2")
        cluster.kubectl("uncordon", "n2")
        rollout.opt_in_drain_on_cordon(cluster, "n2", False)
    wait_paths(lab, ip, ALL_NODES, timeout=120)
    # the evicted pods were rescheduled on n1/n3: put one back on every node, and wait until
    # the old ones are gone (they would close the next scenario's long-lived connections)
    cluster.kubectl("rollout", "restart", "-n", APP, "deploy/web")
    cluster.kubectl("rollout", "status", "-n", APP, "deploy/web", "--timeout=180s", timeout=200)
    wait_for("only the 3 new backend pods",
             lambda: len(cluster.get_json("pods", "-n", APP, "-l", "app=web")["items"]) == 3,
             120, 0.5)  # fmt: skip
    return outcome


def weight_error(lab: Lab, cluster: Cluster) -> list[str]:
    image = cluster.images["backend"].ref
    pods = {"svc": "wt"}
    cluster.apply(dump(
        *(backend_deployment(f"wt-{n}", APP, image, 0, {"kubernetes.io/hostname": n},
                             pod_labels=pods) for n in ("n1", "n2", "n3")),
        load_balancer("wt", APP, local=True, selector_labels=pods),
    ))  # fmt: skip
    ip = str(wait_for("wt: IP", lambda: rollout.ingress(cluster, APP, "wt"), 120, 0.2))
    lines = []
    worst = 0.0
    for placement in PLACEMENTS:
        for node, count in zip(("n1", "n2", "n3"), placement, strict=True):
            cluster.kubectl("scale", "-n", APP, f"deploy/wt-{node}", f"--replicas={count}")
        total = sum(placement)
        started = time.monotonic()
        with contextlib.suppress(WaitTimeoutError):  # then report what is there
            wait_for(f"weights for {placement}", lambda p=placement: _settled(lab, cluster, ip, p),
                     180, 0.1)  # fmt: skip
        took = time.monotonic() - started
        w = paths(lab, ip)
        s = sum(w.values()) or 1
        errs = [abs(w.get(n, 0) / s - c / total) * 100
                for n, c in zip(("n1", "n2", "n3"), placement, strict=True)]  # fmt: skip
        worst = max(worst, *errs)
        lines.append(f"  pods {placement}: FIB weights {[w.get(n, 0) for n in ('n1', 'n2', 'n3')]}"
                     f"  max error {max(errs):.1f} pp  (settled in {took:.1f} s)")  # fmt: skip
    lines.append(f"  worst error over all placements: {worst:.1f} percentage points "
                 "(FRR maps bandwidth to integer weights 1..100)")  # fmt: skip
    cluster.kubectl("delete", "-n", APP, "deploy/wt-n1", "deploy/wt-n2", "deploy/wt-n3", "svc/wt")
    return lines


def _settled(lab: Lab, cluster: Cluster, ip: str, placement: tuple[int, ...]) -> bool:
    """Every wt pod is ready where it should be and r1's weights are what FRR makes of the
    link bandwidths (``bandwidth * 100 // total``, its documented mapping): no intermediate
    state of the scaling is mistaken for the result."""
    for node, count in zip(("n1", "n2", "n3"), placement, strict=True):
        if rollout.ready_pods(cluster, APP, f"wt-{node}") != count:
            return False
    want = {n: c * 100 // sum(placement)
            for n, c in zip(("n1", "n2", "n3"), placement, strict=True) if c}  # fmt: skip
    return paths(lab, ip) == want


# -- (g) re-hashing in the kernel -----------------------------------------------------------

SCRATCH = "198.18.65.1"  # a prefix of the client's namespace only, never used for traffic
GATEWAYS = ("198.18.64.11", "198.18.64.12", "198.18.64.13")
FLOWS = 1000


def _lookups(ns: str) -> list[str]:
    """The gateway each of FLOWS TCP flows (source ports 20000+) is hashed to."""
    batch = "".join(f"route get {SCRATCH} ipproto tcp sport {20000 + i} dport 80\n"
                    for i in range(FLOWS))  # fmt: skip
    out = netns.run(["ip", "-n", ns, "-j", "-batch", "-"], input=batch).stdout
    gws: list[str] = []
    for line in out.splitlines():
        for r in json.loads(line) if line.strip().startswith("[") else []:
            gws.append(str(r.get("gateway")))
    return gws


def _moved(a: list[str], b: list[str], removed: str | None = None) -> tuple[float, float]:
    """Share of flows on another gateway, and of those the share that did not have to move
    (their gateway did not leave)."""
    moved = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    needless = [m for m in moved if m[0] != removed] if removed else moved
    return len(moved) / len(a) * 100, len(needless) / len(a) * 100


#: (name, `ip nexthop` group arguments): what FRR 8.4 installs, and resilient groups without
#: and with an idle timer (60 s; unbalanced_timer 0 = never force a rebalance)
HASHING = (
    ("hash-threshold", ()),
    ("resilient, idle 0", ("type", "resilient", "buckets", "128", "idle_timer", "0")),
    ("resilient, idle 60 s", ("type", "resilient", "buckets", "128", "idle_timer", "60",
                              "unbalanced_timer", "0")),
)  # fmt: skip


def rehash(lab: Lab) -> list[str]:
    """Per hashing kind, each of the three next hops leaves and comes back in turn; the
    share of the 1,000 flows that move, averaged over the three. The lookups themselves use
    the buckets, so with an idle timer every bucket counts as active."""
    ns = lab.ns(rollout.CLIENT)

    def ip(*args: str) -> None:
        netns.run(["ip", "-n", ns, *args])

    ip("link", "add", "hash0", "type", "veth", "peer", "name", "hash1")
    lines = []
    try:
        ip("link", "set", "hash0", "up")
        ip("link", "set", "hash1", "up")
        ip("addr", "add", "198.18.64.1/24", "dev", "hash0")
        ip("route", "del", "198.18.64.0/24", "dev", "hash0")  # the scratch route owns it
        netns.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                   "net.ipv4.fib_multipath_hash_policy=1"])  # fmt: skip
        ids = [str(9001 + i) for i in range(len(GATEWAYS))]
        for nh, gw in zip(ids, GATEWAYS, strict=True):
            ip("nexthop", "add", "id", nh, "via", gw, "dev", "hash0", "onlink")
        for kind, args in HASHING:
            out_all, out_needless, back_all = [], [], []
            for leaving in range(len(GATEWAYS)):
                three = "/".join(ids)
                two = "/".join(x for i, x in enumerate(ids) if i != leaving)
                ip("nexthop", "add", "id", "9100", "group", three, *args)
                ip("route", "add", f"{SCRATCH}/32", "nhid", "9100")
                before = _lookups(ns)
                ip("nexthop", "replace", "id", "9100", "group", two, *args)
                removed = _lookups(ns)
                ip("nexthop", "replace", "id", "9100", "group", three, *args)
                back = _lookups(ns)
                ip("route", "del", f"{SCRATCH}/32")
                ip("nexthop", "del", "id", "9100")
                moved, needless = _moved(before, removed, GATEWAYS[leaving])
                out_all.append(moved)
                out_needless.append(needless)
                back_all.append(_moved(removed, back)[0])
            lines.append(
                f"  {kind:21s} a next hop leaves: {_mean(out_all):4.1f}% of flows move "
                f"({_mean(out_needless):4.1f}% that were not on it); it comes back: "
                f"{_mean(back_all):4.1f}% move"
            )
    finally:
        for i in range(len(GATEWAYS)):
            netns.run(["ip", "-n", ns, "nexthop", "del", "id", str(9001 + i)], check=False)
        netns.run(["ip", "-n", ns, "link", "del", "hash0"], check=False)
    return lines


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip", default="", help="comma-separated scenario letters to skip")
    ap.add_argument("--run", help="use this running k8s-bgp lab (scripts/lab up) instead")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    forbid_host_dials()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    report: list[str] = []
    started = time.monotonic()
    with rollout.k8s_bgp_lab(args.run) as (lab, cluster):
        print(f"cluster up in {time.monotonic() - started:.0f} s", flush=True)
        values = rollout.release_values(cluster)
        rollout.helm(cluster, "install", values)
        ip = rollout.deploy_backend(cluster, APP)
        wait_paths(lab, ip, ALL_NODES)
        steps: list[tuple[str, Callable[[], list[str]]]] = [
            ("a", lambda: scenario_roll(lab, cluster, ip, values,
                                        "(a) rolling upgrade, drain 5 s").lines()),
            ("b", lambda: _with(cluster, rollout.release_values(cluster, drain_seconds=0),
                                lambda v: scenario_roll(lab, cluster, ip, v,
                                                        "(b) rolling upgrade, drain 0 s").lines())),
            ("c", lambda: _with(cluster, rollout.release_values(cluster, graceful_restart=True),
                                lambda v: scenario_roll(lab, cluster, ip, v, "(c) rolling "
                                                        "upgrade, graceful restart").lines())),
            ("d", lambda: ["(d) " + "\n".join(scenario_drain(lab, cluster, ip, True).lines())]),
            ("e", lambda: ["(e) " + "\n".join(scenario_drain(lab, cluster, ip, False).lines())]),
            ("f", lambda: ["(f) weighted ECMP, Local Service, pods per node (n1, n2, n3):",
                           *weight_error(lab, cluster)]),
            ("g", lambda: ["(g) re-hashing of 1,000 flows in the kernel:", *rehash(lab)]),
        ]  # fmt: skip
        for letter, step in steps:
            if letter in skip:
                continue
            t = time.monotonic()
            lines = step()
            print("\n".join(lines), flush=True)
            print(f"  [{time.monotonic() - t:.0f} s]", flush=True)
            report += lines
        cluster.helm("uninstall", "exalb", "-n", rollout.NS, "--wait", check=False)
    print("\n== summary\n" + "\n".join(report))
    return 0


def _with(cluster: Cluster, values: dict, run: Callable[[dict], list[str]]) -> list[str]:  # type: ignore[type-arg]
    """Switch the release to ``values`` (a roll of its own, not measured), run, switch back."""
    rollout.helm(cluster, "upgrade", values)
    try:
        return run(values)
    finally:
        rollout.helm(cluster, "upgrade", rollout.release_values(cluster))


if __name__ == "__main__":
    sys.exit(main())
