"""``/status`` under load: does reading a speaker's status slow its route changes down?

Runs the ``bgp-ecmp`` lab (FRR r1, nodes n1..n3 in namespaces, a real kube-apiserver, three
real ``exalb-speaker`` processes with their ExaBGP; root needed) and prints a table:

* **route change → r1's FIB**: a Service's ``status.loadBalancer.ingress`` is written (what
  the controller does) and the clock runs until r1's kernel FIB holds the path via n1,
  the speaker under load; one change at a time, ``--changes`` of them, with a few
  ``--services`` already announced so that every ``/status`` carries a real document and
  ExaBGP's adj-rib-out is not empty;
* measured twice: **idle**, and with **``--readers`` concurrent ``/status`` readers** on
  n1's speaker. The readers run in a child process (so their CPU is not the bench's own
  timing loop's) and use the speaker's ``--status-socket`` (a unix socket every version
  of the speaker serves ``/status`` on); each one loops: connect, ``GET /status``, read
  the whole answer, close. Their request rate, answer codes and read latency are printed
  too;
* the speaker's own view: ``exabgp_converged`` seconds from n1's log (speaker decision →
  every line acked by ExaBGP), idle and under load; and the CPU the loaded speaker process
  used meanwhile (what the readers cost it; the readers' own CPU is the machine's).

Usage: ``sudo .venv/bin/python bench/status_load.py [--changes 20] [--readers 200]
[--services 50]``. Figures move with the machine's load (2 cores shared); compare the two
columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.binaries import find_controlplane_binaries  # noqa: E402
from lab.controlplane import ControlPlane  # noqa: E402
from lab.nsnet import forbid_host_dials  # noqa: E402
from lab.runner import Lab, unavailable_reason  # noqa: E402
from lab.topology import topology_path  # noqa: E402
from lab.wait import wait_for  # noqa: E402
from tests.lab.api_objects import advertisement, pool  # noqa: E402
from tests.lab.speaker_lab import NODES, ROUTER, SpeakerLab, bgp_peer, install_crds, speaker_lab  # noqa: E402

LOADED = "n1"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# -- the readers (child process) ----------------------------------------------------------


async def _reader(
    path: str, stats: Counter[str], latencies: list[float], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        t = time.monotonic()
        try:
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=1 << 24), 30)
            w.write(b"GET /status HTTP/1.0\r\nHost: speaker\r\n\r\n")
            await w.drain()
            data = await asyncio.wait_for(r.read(), 60)
            w.close()
        except (OSError, TimeoutError) as exc:
            stats[f"error {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        code = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "?"
        stats[code] += 1
        if code == "200":
            latencies.append(time.monotonic() - t)
        else:
            await asyncio.sleep(0.01)  # a refused reader comes back, as a client would


async def _readers(path: str, n: int) -> None:
    stats: Counter[str] = Counter()
    latencies: list[float] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    started = time.monotonic()
    tasks = [asyncio.create_task(_reader(path, stats, latencies, stop)) for _ in range(n)]
    print(json.dumps({"started": n}), flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    seconds = time.monotonic() - started
    out = {
        "seconds": seconds,
        "answers": dict(stats),
        "per_second": sum(stats.values()) / seconds,
        "ok_p50": pct(latencies, 0.5) if latencies else None,
        "ok_p95": pct(latencies, 0.95) if latencies else None,
    }
    print(json.dumps(out), flush=True)


# -- the measurement ----------------------------------------------------------------------


def path_via(lab: Lab, prefix: str, gateway: str) -> bool:
    route = lab.route(ROUTER, prefix)
    return route is not None and gateway in route.gateways


def change(sl: SpeakerLab, name: str, prefix: str) -> float:
    """One Service gets its IP; seconds until r1's FIB has the path via the loaded node."""
    c, gateway = sl.cluster, NODES[LOADED].ipv4
    c.service(name, [])
    c.endpoints(name, list(NODES))
    time.sleep(0.3)  # the Service and its endpoints are known before the IP is written
    t0 = c.set_ingress(name, [prefix.split("/", maxsplit=1)[0]])
    while not path_via(sl.lab, prefix, gateway):
        if time.monotonic() - t0 > 60:
            raise TimeoutError(f"{prefix} via {gateway} not in r1's FIB after 60 s")
        time.sleep(0.0005)
    return time.monotonic() - t0


def converged_seconds(sl: SpeakerLab, since: int) -> tuple[list[float], int]:
    """``exabgp_converged`` seconds logged by the loaded speaker since byte ``since``."""
    logs = sorted(sl.lab.node_dir(LOADED).glob("speaker-*.log"))
    text = logs[-1].read_bytes() if logs else b""
    out = []
    for line in text[since:].decode(errors="replace").splitlines():
        if '"exabgp_converged"' in line:
            m = re.search(r'"seconds": ([0-9.e-]+)', line)
            if m:
                out.append(float(m.group(1)))
    return out, len(text)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(sl: SpeakerLab, tag: str, first: int, changes: int) -> dict[str, list[float]]:
    _, mark = converged_seconds(sl, 0)
    speaker = sl.procs[LOADED].speaker
    assert speaker is not None
    cpu, started = cpu_seconds(speaker.pid), time.monotonic()
    fib = [change(sl, f"{tag}{i}", f"203.0.113.{first + i}/32") for i in range(changes)]
    load = (cpu_seconds(speaker.pid) - cpu) / (time.monotonic() - started)
    acked, _ = converged_seconds(sl, mark)
    return {"fib": fib, "acked": acked, "cpu": [load]}


def start_readers(sl: SpeakerLab, n: int) -> subprocess.Popen[str]:
    sock = str(sl.status_socket(LOADED))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-readers", sock, str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())  # started
    time.sleep(3)  # every reader has connected at least once
    return proc


def stop_readers(proc: subprocess.Popen[str]) -> dict[str, object]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(args: argparse.Namespace) -> None:
    binaries = find_controlplane_binaries()
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
            v4 = [n.ipv4 for n in NODES.values()]
            wait_for("IPv4 sessions", lambda: all(
                lab.peer_states(ROUTER).get(a) == "Established" for a in v4), 30, 0.05)  # fmt: skip
            for i in range(args.services):
                prefix = f"203.0.113.{10 + i}/32"
                c.service(f"bg{i}", [prefix[:-3]])
                c.endpoints(f"bg{i}", list(NODES))
            last = f"203.0.113.{10 + args.services - 1}/32"
            wait_for("background routes", lambda: path_via(lab, last, NODES[LOADED].ipv4), 60)
            idle = phase(sl, "idle", 100, args.changes)
            readers = start_readers(sl, args.readers)
            try:
                loaded = phase(sl, "load", 100 + args.changes, args.changes)
            finally:
                stats = stop_readers(readers)
            report(args, idle, loaded, stats)


def report(
    args: argparse.Namespace,
    idle: dict[str, list[float]],
    loaded: dict[str, list[float]],
    stats: dict[str, object],
) -> None:
    def ms(values: list[float], q: float) -> str:
        return f"{pct(values, q) * 1000:8.1f}" if values else "       -"

    print(f"\n/status load: {args.readers} readers on {LOADED}'s speaker, {args.changes} route "
          f"changes per column, {args.services} routes announced before")  # fmt: skip
    print(f"{'':44} {'idle':>17} {'under load':>17}")
    print(f"{'':44} {'p50 ms':>8} {'p95 ms':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for key, what in (("fib", "ingress written -> path via n1 in r1's FIB"),
                      ("acked", "speaker: converge -> every line acked")):  # fmt: skip
        print(f"{what:44} {ms(idle[key], 0.5)} {ms(idle[key], 0.95)} "
              f"{ms(loaded[key], 0.5)} {ms(loaded[key], 0.95)}")  # fmt: skip
    print(f"{'max, ingress -> FIB':44} {'':8} {max(idle['fib']) * 1000:8.1f} "
          f"{'':8} {max(loaded['fib']) * 1000:8.1f}")  # fmt: skip
    print(f"{'n1 speaker CPU (% of one core)':44} {'':8} {idle['cpu'][0] * 100:8.1f} "
          f"{'':8} {loaded['cpu'][0] * 100:8.1f}")  # fmt: skip
    p50, p95 = stats.get("ok_p50"), stats.get("ok_p95")
    print(
        f"readers: {stats['per_second']:.0f} requests/s, answers {stats['answers']}, "
        f"a 200 took p50 {float(p50 or 0) * 1000:.0f} ms, p95 {float(p95 or 0) * 1000:.0f} ms"
    )
    print(
        f"median ingress -> FIB: idle {statistics.median(idle['fib']) * 1000:.1f} ms, "
        f"under load {statistics.median(loaded['fib']) * 1000:.1f} ms"
    )


def main() -> int:
    forbid_host_dials()  # lab addresses are reached from inside the namespaces only
    if len(sys.argv) == 4 and sys.argv[1] == "--child-readers":
        asyncio.run(_readers(sys.argv[2], int(sys.argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--readers", type=int, default=200)
    p.add_argument("--services", type=int, default=50)
    args = p.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"status_load: {reason}", file=sys.stderr)
        return 1
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
