# size: a benchmark with two parts and their tables, read top to bottom
"""L2 sidecar cost versus the number of IPs, and a junk flood (issue 12, point 2).

Two parts, both printed as tables:

1. **Cost per input, in process** (no root). The sidecar's own handlers
   (``ProbeChannel.on_udp``, ``Responder.handle``, one loop pass) are driven with fake sockets
   at 10, 100, 1,000 and 10,000 IPs on three nodes (ranks rotate, so this node owns a
   third, is standby for a third and third for a third). This is the code the real loop
   runs per datagram and per frame, minus the syscalls (which do not depend on the number
   of IPs). Columns: a genuine probe from a lower-ranked peer (verified, acked), a genuine
   ack from a better-ranked one, junk from an unknown address, a forged datagram from a
   peer's address (fails the tag), an ARP request for an unknown IP and for an answered IP
   (answered), and one loop pass with nothing to do (timers, liveness, deadlines).
2. **Junk flood in namespaces** (root). The lab of ``containerlab/l2-segment`` (three
   nodes with the real ``exalb-garp``, a client, one bridge) with 5,000 IPv4 Service IPs.
   After a quiet baseline window, the client sends 10,000 frames/s for ``--flood``
   seconds: half UDP junk at one node's probe port (random bytes and old-format probes
   from addresses that are no peer's, and probes with a wrong key from a peer's address),
   half ARP requests for unknown IPs (broadcast: every node's sidecar reads them). Then
   the same flood while every node's desired state is rewritten every 2 s (one Service
   more, one less: every sidecar re-reads 5,000 IPs at the same moment). Counted from the
   sidecars' logs: IPs taken over and peers declared dead (all must stay 0: every sidecar
   is alive), plus each sidecar's CPU and its rejected-datagram counters; a sample of IPs
   is asked who answers during each window (a wrong answer = a non-owner answered).

Usage: ``python bench/l2_scale.py [--only cost|flood] [--ips 5000] [--pps 10000]
[--flood 20]`` (the flood needs root; it is skipped otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import math
import os
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exalb.config.model import Config, IPAddress, L2Advertisement, Pool  # noqa: E402
from exalb.contracts.l2_state import (  # noqa: E402
    Candidate,
    DesiredState,
    IPState,
    encode,
)
from exalb.filechannel import write_atomic  # noqa: E402
from exalb.views import EndpointsView, ServiceView  # noqa: E402
from garp import packets as pk  # noqa: E402
from garp import probe  # noqa: E402
from garp.links import Link  # noqa: E402
from garp.main import Sidecar, configure_logging, parse_args  # noqa: E402
from lab.nsnet import forbid_host_dials, in_netns  # noqa: E402
from lab.runner import unavailable_reason  # noqa: E402
from lab.wait import wait_for  # noqa: E402
from speaker.l2.election import elect  # noqa: E402
from speaker.l2.publisher import desired_state  # noqa: E402
from tests.lab.l2_attacker import raw_socket, udp4_frame  # noqa: E402
from tests.lab.l2_lab import (  # noqa: E402
    CLIENT,
    CLIENT_IP4,
    IFACE,
    METRICS_PORT,
    NODE_IP4,
    NODES,
    PROBE_PORT,
    L2Lab,
    l2_lab,
    node_views,
    service,
)

NODES3 = ("n1", "n2", "n3")
ADDR = {n: ipaddress.ip_address(f"198.51.100.{11 + i}") for i, n in enumerate(NODES3)}
SIZES = (10, 100, 1_000, 10_000)
BATCHES = 15
COLUMNS = ("probe", "ack", "junk", "forged", "arp unknown", "arp answered", "loop pass")


# --------------------------------------------------------------------------- 1. cost


class _FakeUDP:
    def __init__(self) -> None:
        self.queue: list[tuple[bytes, tuple[str, int]]] = []
        self.sent = 0

    def recvfrom(self, _n: int) -> tuple[bytes, tuple[str, int]]:
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop()

    def sendto(self, _data: bytes, _addr: object) -> None:
        self.sent += 1


class _FakeRaw:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, _frame: bytes) -> None:
        self.sent += 1


def _state(n_ips: int) -> DesiredState:
    ips = []
    for i in range(n_ips):
        ip = ipaddress.ip_address(int(ipaddress.ip_address("198.18.0.0")) + i)
        order = NODES3[i % 3 :] + NODES3[: i % 3]
        ips.append(IPState(ip, tuple(Candidate(n, ADDR[n]) for n in order)))
    return DesiredState("n2", 1, tuple(ips))


def _sidecar(tmp: Path) -> Sidecar:
    (tmp / "key").write_bytes(secrets.token_bytes(32))
    args = parse_args(
        [
            "--state",
            str(tmp / "state.json"),
            "--node",
            "n2",
            "--metrics-port",
            "0",
            "--key-dir",
            str(tmp),
        ]
    )
    sc = Sidecar(args)
    assert sc.probes.load_keys()
    sc.write_status = lambda: None  # type: ignore[method-assign]  # no disk in the figures
    return sc


def _best(prepare: Callable[[int], Any], run: Callable[[Any], object], reps: int) -> float:
    """Mean seconds of ``run(prepare(i))`` (only ``run`` timed), best batch of ``BATCHES``
    (a shared 2-core machine adds noise, never removes it, so the least disturbed batch is
    the truest figure)."""
    best = math.inf
    for b in range(BATCHES):
        total = 0.0
        for i in range(reps):
            arg = prepare(b * reps + i)
            t = time.perf_counter()
            run(arg)
            total += time.perf_counter() - t
        best = min(best, total / reps)
    return best


class _CostRig:
    """The sidecar of n2 holding ``n_ips`` IPs, with one fake link and one fake probe
    socket, at a fixed ``NOW``: the inputs of each column and the handlers they go to."""

    NOW = 1.0

    def __init__(self, tmp: Path, n_ips: int) -> None:
        self.sc = sc = _sidecar(tmp)
        assert sc.probes.keys is not None
        self.keys = sc.probes.keys
        sc.engine.apply_state(_state(n_ips), 0.9)
        self.link = Link("eth0", 2, b"\x02\x00\x00\x00\x00\x02", _FakeRaw(), _FakeRaw())  # type: ignore[arg-type]
        sc.responder.links["eth0"] = self.link
        sc.report(sc.engine.tick(self.NOW), self.NOW)
        self.udp = _FakeUDP()
        self.seq = iter(range(1, 10**9))

    def deliver(self, item: tuple[bytes, str]) -> None:
        self.udp.queue.append((item[0], (item[1], probe.DEFAULT_PORT)))
        self.sc.probes.on_udp(self.udp, self.NOW)  # type: ignore[arg-type]

    def frame(self, frame: bytes) -> None:
        self.sc.responder.handle(self.link, frame, 1, self.NOW)

    def genuine_probe(self, _i: int) -> tuple[bytes, str]:
        """A genuine probe from n3 (ranked below us for some IPs, it probes us; acked)."""
        msg = probe.Message(probe.PROBE, "n3", 5, next(self.seq))
        return probe.encode(msg, self.keys), str(ADDR["n3"])

    def genuine_ack(self, _i: int) -> tuple[bytes, str]:
        """A genuine ack from n1, to a new challenge of ours each time (made untimed)."""
        engine = self.sc.engine
        engine._next_probe = 0.0
        (echo,) = [m.seq for a, m in engine.probes_due(self.NOW) if a == ADDR["n1"]]
        msg = probe.Message(probe.ACK, "n1", 6, next(self.seq), 0, engine.session, echo)
        return probe.encode(msg, self.keys), str(ADDR["n1"])

    def loop_pass(self, _arg: None) -> None:
        sc, now = self.sc, self.NOW
        sc.report(sc.engine.tick(now), now)
        sc.engine.probes_due(now)
        sc.engine.announcements_due(now)
        sc.engine.next_deadline(now)


def cost(n_ips: int, reps: int) -> dict[str, float]:
    """Mean seconds per input for each column, measured in ``COLUMNS`` order (each on the
    state the ones before left)."""
    with tempfile.TemporaryDirectory() as tmp:
        rig = _CostRig(Path(tmp), n_ips)
        out = {
            "probe": _best(rig.genuine_probe, rig.deliver, reps),
            "ack": _best(rig.genuine_ack, rig.deliver, reps),
        }
        junk = os.urandom(60)
        out["junk"] = _best(lambda i: (junk, f"198.51.100.{100 + i % 100}"), rig.deliver, reps)
        wrong = probe.Keyring((secrets.token_bytes(32),))
        forged = probe.encode(probe.Message(probe.BYE, "n1", 6, 10**9), wrong)
        out["forged"] = _best(lambda i: (forged, str(ADDR["n1"])), rig.deliver, reps)
        client = b"\x02\x00\x00\x00\x00\x99"
        src = ipaddress.IPv4Address("198.51.100.20")
        unknown = [
            pk.arp_request(client, src, ipaddress.IPv4Address(f"203.0.113.{i % 250 + 1}"))
            for i in range(250)
        ]
        out["arp unknown"] = _best(lambda i: unknown[i % 250], rig.frame, reps)
        answered = sorted(rig.sc.engine.answering, key=int)
        known = [pk.arp_request(client, src, ip) for ip in answered[:250]]  # type: ignore[arg-type]
        out["arp answered"] = _best(lambda i: known[i % len(known)], rig.frame, reps)
        rig.sc.engine.announcements_due(rig.NOW)  # the start-up bursts are work, not overhead
        out["loop pass"] = _best(lambda i: None, rig.loop_pass, reps)
        return out


def cost_table() -> None:
    configure_logging("critical")  # the in-process sidecar's own log lines are not figures
    print(f"\ncost per input, in process (µs, best of {BATCHES} batches; fake sockets)")
    print(f"  {'IPs':>6} " + " ".join(f"{c:>12}" for c in COLUMNS))
    rows = {}
    for n in SIZES:
        rows[n] = cost(n, 200)
        print(f"  {n:>6} " + " ".join(f"{rows[n][c] * 1e6:12.1f}" for c in COLUMNS))
    ratio = {c: rows[SIZES[-1]][c] / rows[SIZES[0]][c] for c in COLUMNS}
    print(
        f"  {'ratio':>6} "
        + " ".join(f"{ratio[c]:11.2f}x" for c in COLUMNS)
        + f"   ({SIZES[-1]:,} vs {SIZES[0]} IPs)"
    )


# --------------------------------------------------------------------------- 2. flood


def _log_events(path: Path, start: int) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = []
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rejected(lab: L2Lab, node: str, metrics_port: int) -> dict[str, float]:
    with in_netns(lab.lab.ns(node)):
        conn = http.client.HTTPConnection(str(NODE_IP4[node]), metrics_port, timeout=5)
        conn.connect()
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("exalb_l2_probe_rejected_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def _flood_frames(lab: L2Lab, target: str, n: int) -> list[bytes]:
    wrong = probe.Keyring((secrets.token_bytes(32),))
    peers = [p for p in NODE_IP4 if p != target]
    rnd = random.Random(7)
    frames = []
    for i in range(n):
        if i % 2:  # ARP for an IP nobody has: every sidecar reads and drops it
            ip = ipaddress.IPv4Address(f"203.0.113.{rnd.randrange(1, 255)}")
            frames.append(pk.arp_request(lab.client_mac, CLIENT_IP4, ip))
            continue
        kind = (i // 2) % 3
        if kind == 0:  # random bytes from an address that is no peer's
            src = ipaddress.IPv4Address(f"198.51.100.{rnd.randrange(100, 250)}")
            payload = rnd.randbytes(rnd.randrange(8, 120))
        elif kind == 1:  # an old-format probe (what used to be acked, at O(IPs) each)
            src = CLIENT_IP4
            payload = b"XLB1\x01\x00\x00\x02" + rnd.randbytes(8) + b"n9"
        else:  # a probe in today's format from a peer's address, with a wrong key
            peer = peers[i % len(peers)]
            src = NODE_IP4[peer]
            msg = probe.Message(probe.PROBE, peer, rnd.getrandbits(32), rnd.getrandbits(40))
            payload = probe.encode(msg, wrong)
        frames.append(
            udp4_frame(
                lab.mac[target],
                lab.client_mac,
                src,
                NODE_IP4[target],
                PROBE_PORT,
                PROBE_PORT,
                payload,
            )
        )
    return frames


class _Flooder(threading.Thread):
    def __init__(self, sock: socket.socket, frames: list[bytes], pps: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.frames, self.pps = sock, frames, pps
        self.stop = threading.Event()
        self.sent = 0
        self.errors = 0

    def run(self) -> None:
        tick = 0.01
        per_tick = self.pps * tick
        due = 0.0
        t = time.monotonic()
        k = 0
        while not self.stop.is_set():
            due += per_tick
            while due >= 1.0:
                try:
                    self.sock.send(self.frames[k % len(self.frames)])
                    self.sent += 1
                except OSError:
                    self.errors += 1
                k += 1
                due -= 1.0
            t += tick
            time.sleep(max(0.0, t - time.monotonic()))


def _watch(lab: L2Lab, starts: dict[str, int], ignore: str) -> dict[str, dict[str, int]]:
    """IPs taken over / given up and peers declared dead, from each sidecar's log since
    ``starts`` (one line per change listing its IPs; older sidecars wrote one per IP)."""

    def ips(e: dict[str, Any]) -> int:
        listed = e.get("ips") or ([e["ip"]] if "ip" in e else [])
        return sum(1 for ip in listed if ip != ignore)

    out = {}
    for n in NODES:
        events = _log_events(lab.lab.node_dir(n) / "garp.log", starts[n])
        out[n] = {
            "takeovers": sum(
                ips(e)
                for e in events
                if e.get("event") == "answering" and e.get("reason") == "takeover"
            ),
            "stopped": sum(ips(e) for e in events if e.get("event") == "stopped answering"),
            "peer deaths": sum(
                1 for e in events if e.get("event") == "peer" and e.get("alive") is False
            ),
        }
    return out


_Service = tuple[ServiceView, EndpointsView]


def _flood_services(n_ips: int) -> tuple[Config, list[_Service], IPAddress]:
    """The config, ``n_ips`` one-IP Services and the IP of the one the rewrites add."""
    pool = Pool("flood", cidrs=(ipaddress.ip_network("198.18.0.0/18"),))
    cfg = Config(pools=(pool,), l2_advertisements=(L2Advertisement("f", pools=("flood",)),))
    first = int(ipaddress.ip_address("198.18.0.1"))
    svcs = [service(ips=(ipaddress.ip_address(first + i),), name=f"s{i}") for i in range(n_ips)]
    return cfg, svcs, ipaddress.ip_address(first + n_ips)


class _FloodRun:
    """The lab with every sidecar settled on its share of the IPs, and the windows measured
    on it one after another."""

    def __init__(self, lab: L2Lab, n_ips: int, seconds: float) -> None:
        self.lab = lab
        cfg, svcs, self.extra_ip = _flood_services(n_ips)
        t0 = time.monotonic()
        self.owned = self._start(cfg, svcs)
        print(
            f"\njunk flood: {n_ips:,} IPs on 3 nodes (owned {[len(self.owned[n]) for n in NODES]}),"
            f" settled in {time.monotonic() - t0:.1f} s"
        )
        time.sleep(6.0)  # every gratuitous burst (5 s) over
        self.target = NODES[0]
        self.sample = [ip for n in NODES for ip in sorted(self.owned[n], key=int)[:4]]
        self.rewrites = self._rewrites(cfg, svcs, seconds)
        self.applied = 0

    def _start(self, cfg: Config, svcs: list[_Service]) -> dict[str, set[IPAddress]]:
        """Apply the Services, start every sidecar, wait until each answers for its IPs."""
        lab = self.lab
        lab.apply(*svcs, config=cfg)
        owned: dict[str, set[IPAddress]] = {n: set() for n in NODES}
        for e in lab.elections:
            if e.owner is not None:
                owned[e.owner].add(e.ip)
        for n in NODES:
            lab.start_sidecar(n)

        def settled() -> bool:
            sts = {n: lab.status(n) for n in NODES}
            return all(s is not None and set(s.answering) == owned[n] for n, s in sts.items())

        wait_for("every sidecar answers for its IPs", settled, 120, 0.1)
        return owned

    def _rewrites(
        self, cfg: Config, svcs: list[_Service], seconds: float
    ) -> list[dict[str, bytes]]:
        """State rewrites: one Service more, then one less, written to every node at once, as
        the speakers do. Prepared beforehand, so that this process computing elections does
        not compete with the sidecars for the CPU during the window (real speakers run on
        their own nodes)."""
        lab = self.lab
        extra = service(ips=(self.extra_ip,), name="extra")
        variants = [lab.elections, elect(cfg, (*svcs, extra), node_views())]
        return [
            {
                n: encode(desired_state(n, variants[(k + 1) % 2], node_views(),
                                        generation=lab.generation + 1 + k))
                for n in NODES
            }
            for k in range(int(seconds / 2.0) + 1)
        ]  # fmt: skip

    def churn(self) -> None:
        docs = self.rewrites[self.applied % len(self.rewrites)]
        self.applied += 1
        for n in NODES:
            write_atomic(self.lab.state_path(n), docs[n])

    def window(
        self, label: str, dur: float, flooder: _Flooder | None, churn_every: float = 0.0
    ) -> None:
        """Run ``dur`` seconds (flooding, churning if asked), then print what it did."""
        lab = self.lab
        starts = {n: (lab.lab.node_dir(n) / "garp.log").stat().st_size for n in NODES}
        pids = {n: lab.sidecars[n].pid for n in NODES}
        cpu0 = {n: _cpu(p) for n, p in pids.items()}
        rej0 = {n: _rejected(lab, n, METRICS_PORT) for n in NODES}
        t = time.monotonic()
        if flooder is not None:
            flooder.start()
        wrong_answers, missing = self._ask(t, dur, churn_every)
        if flooder is not None:
            flooder.stop.set()
            flooder.join()
        elapsed = time.monotonic() - t
        seen = _watch(lab, starts, str(self.extra_ip))
        sent = f"{flooder.sent / elapsed:,.0f} frames/s sent" if flooder else "no flood"
        changes = f", {self.applied} state rewrites" if churn_every else ""
        print(
            f"\n  {label}: {elapsed:.1f} s, {sent}{changes}; ARP checks with a wrong "
            f"answer: {wrong_answers} (none seen: {missing})"
        )
        print(
            f"  {'node':4} {'takeovers':>9} {'stopped':>8} {'peer deaths':>11} "
            f"{'CPU %':>6}  rejected datagrams/s by reason"
        )
        for n in NODES:
            cpu = (_cpu(pids[n]) - cpu0[n]) / elapsed * 100
            rej = _rejected(lab, n, METRICS_PORT)
            rates = {r: (v - rej0[n].get(r, 0.0)) / elapsed for r, v in rej.items()}
            text = ", ".join(f"{r} {v:,.0f}" for r, v in sorted(rates.items()) if v >= 0.5)
            s = seen[n]
            tag = " (target)" if n == self.target and flooder else ""
            print(
                f"  {n:4} {s['takeovers']:9} {s['stopped']:8} {s['peer deaths']:11}"
                f" {cpu:6.1f}  {text or '-'}{tag}"
            )

    def _ask(self, t: float, dur: float, churn_every: float) -> tuple[int, int]:
        """Until ``t + dur``, ask who answers for three sample IPs every 0.5 s (and rewrite
        the states every ``churn_every``); wrong answers and checks with none seen."""
        wrong_answers = missing = 0
        next_churn = t + churn_every
        while time.monotonic() - t < dur:
            time.sleep(0.5)
            if churn_every and time.monotonic() >= next_churn:
                self.churn()
                next_churn += churn_every
            for ip in random.sample(self.sample, 3):
                who = self.lab.who_answers(ip, 0.05)
                owner = next(n for n in NODES if ip in self.owned[n])
                wrong_answers += any(w != owner for w in who)
                missing += not who  # under the flood the client may miss the answer
        return wrong_answers, missing


def flood(n_ips: int, pps: int, seconds: float, baseline: float) -> None:
    reason = unavailable_reason(bgp=False)
    if reason:
        print(f"\njunk flood: skipped ({reason})")
        return
    with l2_lab(start=False) as lab:
        run = _FloodRun(lab, n_ips, seconds)
        run.window("baseline", baseline, None)
        frames = _flood_frames(lab, run.target, 4000)
        with in_netns(lab.lab.ns(CLIENT)):
            sock = raw_socket(IFACE)
        try:
            run.window("flood", seconds, _Flooder(sock, frames, pps))
            run.window("flood + state rewrites", seconds, _Flooder(sock, frames, pps), 2.0)
        finally:
            sock.close()
        print(f"  RSS MiB: {', '.join(f'{n} {lab.rss_kb(n) / 1024:.1f}' for n in NODES)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("cost", "flood"))
    ap.add_argument("--ips", type=int, default=5000)
    ap.add_argument("--pps", type=int, default=10_000)
    ap.add_argument("--flood", type=float, default=20.0)
    ap.add_argument("--baseline", type=float, default=10.0)
    args = ap.parse_args()
    forbid_host_dials()  # lab addresses are reached from inside the namespaces only
    if args.only != "flood":
        cost_table()
    if args.only != "cost":
        flood(args.ips, args.pps, args.flood, args.baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
