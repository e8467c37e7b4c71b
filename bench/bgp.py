"""BGP benchmark: announce latency through the real stack, 10,000 routes vs. the ExaBGP floor.

Runs the ``bgp-ecmp`` lab (FRR r1, nodes n1..n3 in namespaces; root needed) and prints a
table:

(a) **announce latency** over N Services (default 50): real kube-apiserver, three real
    ``exalb-speaker`` processes with their ExaBGP; clock from just before the Service's
    ``status.loadBalancer.ingress`` write (what the controller does) until the /32 is in
    r1's kernel FIB, with the first path and with all three paths;
(b) **10,000 routes** (198.19.0.0/16, /32 each) until all are in r1's kernel FIB:
    * floor: ExaBGP fed by a bare API script (``exabgp_feeder.py``), clock from its first
      write;
    * speaker: the speaker's own code path (cluster store → decide → render → driver → bridge →
      ExaBGP) in its own process, fed by a fixture (``speaker_inprocess.py``), clock from
      the moment the 10,000 Services are in its store. Feeding 10,000 Services and
      EndpointSlices through a kube-apiserver on 2 cores would take minutes and measure
      the apiserver, so (b) does not go through it (the output says so);
    rounds alternate floor / speaker in the same lab run; target: speaker <= 1.2 x floor;
(c) **RSS at 10,000 routes**: the speaker process of (b), ExaBGP (+ its bridge) next to it.

Usage: ``sudo .venv/bin/python bench/bgp.py [--services 50] [--routes 10000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import netns, rundir  # noqa: E402
from lab.binaries import find_controlplane_binaries  # noqa: E402
from lab.controlplane import ControlPlane  # noqa: E402
from lab.nsnet import forbid_host_dials  # noqa: E402
from lab.runner import Lab, unavailable_reason  # noqa: E402
from lab.topology import topology_path  # noqa: E402
from lab.wait import wait_for  # noqa: E402
from tests.lab.api_objects import advertisement, pool  # noqa: E402
from tests.lab.speaker_lab import (  # noqa: E402
    NODES,
    PY,
    SpeakerLab,
    bgp_peer,
    install_crds,
    nexthops,
    speaker_lab,
)

BENCH = Path(__file__).resolve().parent
#: Bulk routes come from 198.19.0.0/16: the lab's links use 198.18.0.0/24.
FIRST_IP = "198.19.0.1"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def runs(results: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['fib']:.2f}" for r in results)


def med(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def verdict(speaker: float, floor: float) -> str:
    return "met" if speaker <= 1.2 * floor else "MISSED"


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def descendants(pid: int, namespace: str) -> list[int]:
    return netns.children(pid, netns.pids(namespace))


def fib_count(lab: Lab, router: str = "r1") -> int:
    out = netns.run(["ip", "-4", "-n", lab.ns(router), "route", "show", "proto", "bgp"])
    return out.stdout.count("\n")


def wait_count(lab: Lab, n: int, timeout: float, interval: float = 0.01) -> float:
    deadline = time.monotonic() + timeout
    while True:
        if fib_count(lab) == n:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"r1 FIB has {fib_count(lab)} BGP routes, want {n}")
        time.sleep(interval)


# -- (a) --------------------------------------------------------------------------------------


def bench_latency(services: int) -> dict[str, list[float]]:
    binaries = find_controlplane_binaries()
    first: list[float] = []
    all3: list[float] = []
    with ControlPlane(binaries=binaries) as cp:
        install_crds(cp)
        with Lab.up(topology_path("bgp-ecmp")) as lab, speaker_lab(lab, cp) as sl:
            c = sl.cluster
            c.apply_config(
                pool("pool", ["203.0.113.0/24"]),
                *[bgp_peer(n) for n in NODES.values()],
                advertisement("ads", ["pool"]),
            )
            for n in NODES.values():
                c.node(n)
            sl.start()
            sl.wait_ready()
            wait_for("IPv4 sessions", lambda: len(lab.peer_states("r1")) and _v4_up(sl), 15, 0.05)
            for i in range(services):
                name, prefix = f"lat{i}", f"203.0.113.{100 + i}/32"
                c.service(name, [])
                c.endpoints(name, list(NODES))
                t0 = c.set_ingress(name, [prefix[:-3]])
                seen_first = None
                while True:
                    k = nexthops(lab, prefix)
                    now = time.monotonic()
                    if k and seen_first is None:
                        seen_first = now - t0
                    if k == 3:
                        all3.append(now - t0)
                        break
                    if now - t0 > 10:
                        raise TimeoutError(f"{prefix} not announced by all nodes")
                    time.sleep(0.0005)
                assert seen_first is not None
                first.append(seen_first)
    return {"first": first, "all": all3}


def _v4_up(sl: SpeakerLab) -> bool:
    states = sl.lab.peer_states("r1")
    return all(states.get(n.ipv4) == "Established" for n in NODES.values())


# -- (b)/(c) ----------------------------------------------------------------------------------


def floor_config(lab: Lab, n: int, trigger: Path, out: Path) -> str:
    node = NODES["n2"]
    feeder = BENCH / "exabgp_feeder.py"
    return (
        f"process feeder {{\n    run {PY} {feeder} {trigger} {out} {FIRST_IP} {n};\n"
        "    encoder json;\n}\n"
        f"neighbor {node.router4} {{\n    router-id {node.ipv4};\n"
        f"    local-address {node.ipv4};\n    local-as {node.asn};\n    peer-as 64500;\n"
        "    hold-time 9;\n    family { ipv4 unicast; }\n"
        "    api { processes [ feeder ]; neighbor-changes; }\n}\n"
    )


def run_floor(lab: Lab, n: int, round_: int) -> dict[str, float]:
    d = lab.node_dir("n2") / f"floor{round_}"
    d.mkdir()
    trigger, out = d / "go", d / "result.json"
    proc = lab.start_exabgp("n2", floor_config(lab, n, trigger, out))
    lab.wait_established("r1", [NODES["n2"].ipv4])
    time.sleep(0.3)  # let the feeder see the "up" event
    trigger.touch()
    t_fib = wait_count(lab, n, 120)
    res = json.loads(wait_for("feeder result", lambda: out.exists() and out.read_text(), 30))
    kids = descendants(proc.pid, lab.ns("n2"))
    rss = rss_mb([proc.pid, *kids])
    lab.stop_exabgp("n2")
    wait_count(lab, 0, 60)
    return {"fib": t_fib - res["t0"], "acked": res["acked"] - res["t0"], "exabgp_rss": rss}


def run_speaker(lab: Lab, n: int, round_: int) -> dict[str, float]:  # size: one timed run
    node = NODES["n1"]
    d = lab.node_dir("n1") / f"speaker{round_}"
    d.mkdir()
    sock, conf = d / "bridge.sock", d / "exabgp.conf"
    exabgp = lab.popen(
        "n1",
        [PY, "-m", "speaker.exabgp.launch", "--config", str(conf), "--root", str(d),
         "--pipename", f"{lab.ns('n1')}-{round_}"],
        name=f"exabgp-{round_}",
    )  # fmt: skip
    spec = {
        "node": {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": node.ipv4}]},
        },
        "namespace": "bench",
        "config_objects": [
            {
                **pool("bench", ["198.19.0.0/16"]),
                "metadata": {"name": "bench", "namespace": "bench"},
            },
            {**bgp_peer(node), "metadata": {"name": "r1-n1-v4", "namespace": "bench"}},
            {**advertisement("ads", ["bench"]), "metadata": {"name": "ads", "namespace": "bench"}},
        ],
        "socket": str(sock),
        "config": str(conf),
        "exabgp": str(Path(PY).with_name("exabgp")),
        "bridge": [str(Path(PY).with_name("exalb-exabgp-bridge")), "--socket", str(sock)],
        "first_ip": FIRST_IP,
    }
    spec_path = d / "spec.json"
    spec_path.write_text(json.dumps(spec))
    with (d / "speaker.log").open("ab") as log:
        helper = subprocess.Popen(
            netns.in_ns(lab.ns("n1"), [PY, str(BENCH / "speaker_inprocess.py"), str(spec_path)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
    lab.state.add_process(rundir.ProcessRecord("n1", "speaker-bench", helper.pid, rundir.STAGE_APP))
    try:
        assert helper.stdin is not None and helper.stdout is not None
        ready = json.loads(helper.stdout.readline() or "{}")
        assert ready.get("ready"), (d / "speaker.log").read_text()
        lab.wait_established("r1", [node.ipv4])
        rss_idle = rss_mb([helper.pid])
        helper.stdin.write(f"go {n}\n")
        helper.stdin.flush()
        t0 = json.loads(helper.stdout.readline())["t0"]
        t_fib = wait_count(lab, n, 120)
        acked = json.loads(helper.stdout.readline())
        kids = descendants(exabgp.pid, lab.ns("n1"))
        result = {
            "fib": t_fib - t0,
            "acked": acked["acked"] - t0,
            "decide": acked["decide_seconds"],
            "speaker_rss_idle": rss_idle,
            "speaker_rss": rss_mb([helper.pid]),
            "exabgp_rss": rss_mb([exabgp.pid, *kids]),
        }
        helper.stdin.write("quit\n")
        helper.stdin.flush()
        helper.wait(30)
    finally:
        if helper.poll() is None:
            netns.stop([helper.pid], [lab.ns("n1")], 2.0)
        lab.state.forget_process(helper.pid)
    lab.stop_process("n1", exabgp)
    for k in kids:
        if netns.alive(k):
            netns.stop([k], [lab.ns("n1")], 1.0)
    wait_count(lab, 0, 60)
    return result


def bench_bulk(n: int, rounds: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    floors, speakers = [], []
    with Lab.up(topology_path("bgp-ecmp")) as lab:
        for r in range(rounds):
            floors.append(run_floor(lab, n, r))
            print(f"  round {r + 1}: floor {floors[-1]['fib']:.2f}s", end="", flush=True)
            speakers.append(run_speaker(lab, n, r))
            print(f", speaker {speakers[-1]['fib']:.2f}s", flush=True)
    return floors, speakers


def main() -> int:  # size: flags, then the runs and the table in the order printed
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    forbid_host_dials()  # lab addresses are reached from inside the namespaces only
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONPATH", str(REPO))
    rows: list[tuple[str, str]] = []
    if not args.skip_latency:
        print(f"(a) announce latency, {args.services} Services, 3 speakers ...", flush=True)
        lat = bench_latency(args.services)
        for key, label in (("first", "first path"), ("all", "all 3 paths")):
            ms = [v * 1000 for v in lat[key]]
            rows.append(
                (
                    f"(a) status write -> r1 FIB, {label} (n={len(ms)})",
                    f"median {statistics.median(ms):.0f} ms, p95 {pct(ms, 0.95):.0f} ms, "
                    f"max {max(ms):.0f} ms",
                )
            )
    print(f"(b) {args.routes} routes, {args.rounds} rounds (floor, speaker) ...", flush=True)
    floors, speakers = bench_bulk(args.routes, args.rounds)
    f_fib = statistics.median(x["fib"] for x in floors)
    s_fib = statistics.median(x["fib"] for x in speakers)
    rows += [
        (
            f"(b) {args.routes} routes -> r1 FIB, floor: bare ExaBGP API script",
            f"median {f_fib:.2f} s (runs {runs(floors)}); "
            f"last ack {statistics.median(x['acked'] for x in floors):.2f} s",
        ),
        (
            f"(b) {args.routes} routes -> r1 FIB, speaker path (in-process fixture*)",
            f"median {s_fib:.2f} s (runs {runs(speakers)}); "
            f"last ack {statistics.median(x['acked'] for x in speakers):.2f} s; "
            f"decide+render {statistics.median(x['decide'] for x in speakers) * 1000:.0f} ms",
        ),
        (
            "(b) speaker / floor",
            f"{s_fib / f_fib:.2f}x (target <= 1.20x: {verdict(s_fib, f_fib)})",
        ),
        (
            f"(c) RSS at {args.routes} routes: speaker process",
            f"{statistics.median(x['speaker_rss'] for x in speakers):.0f} MB "
            f"(idle before the routes: {med(speakers, 'speaker_rss_idle'):.0f} MB)",
        ),
        (
            f"(c) RSS at {args.routes} routes: ExaBGP + bridge + CLI, next to the speaker",
            f"{statistics.median(x['exabgp_rss'] for x in speakers):.0f} MB "
            f"(floor's ExaBGP + feeder: {med(floors, 'exabgp_rss'):.0f} MB)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 60}")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    print(
        "\n* (b)/(c): the speaker's code path (informer handlers -> cluster store -> decide ->"
        "\n  render -> driver -> bridge -> ExaBGP) in its own process, fed by a fixture instead"
        "\n  of the kube-apiserver: 10,000 Services + EndpointSlices through an apiserver on 2"
        "\n  cores would take minutes and measure the apiserver. (a) goes through the apiserver."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
