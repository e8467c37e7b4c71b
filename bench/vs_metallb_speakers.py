"""Speaker scenarios of ``vs_metallb.py`` on the ``bgp-ecmp`` lab (FRR r1, nodes n1..n3).

One implementation at a time on the same lab run and the same apiserver:

* **exalb**: per node ExaBGP (through ``speaker.exabgp.launch``, with the bridge as its API
  process), ``exalb-speaker`` and the ``exalb-garp`` sidecar: the processes of one speaker pod
  of the chart's default install;
* **MetalLB**: per node MetalLB's ``speaker`` in native BGP mode (``METALLB_BGP_TYPE=native``),
  memberlist off (no ``--ml-bindaddr``), with a Pod object of its own name bound to the node;
* **floor**: per node a bare ExaBGP whose API process copies lines from a FIFO
  (``exabgp_line_feeder.py``); the bench writes the ``announce`` itself.

The same config for both (one pool, one BGPPeer per node selected by hostname, one
BGPAdvertisement), the same Services: for each, create it and its EndpointSlice (one ready
endpoint per node), then write ``status.loadBalancer.ingress`` as the controller would and
time until the /32 is in r1's kernel FIB with one path and with all three. Processes run
inside the node namespaces and reach the apiserver through the lab's loopback relay.

Memory per node, idle after those Services and again with ``routes`` more (10,000 by
default: Services with an IP in 198.19.0.0/16, created 8 at a time through the API, until r1
holds them all), two ways: the distinct physical pages the node's processes have resident
(``/proc/<pid>/pagemap``: a page mapped by exalb's four Python processes, such as the
interpreter's and libcrypto's, counts once, as it is once in the node's memory), and the
plain sum of their RSS (which counts such a page once per process). For MetalLB's one
process both are its RSS. Per process kind both are printed too. PSS would mislead here:
the lab's three nodes share one kernel, so it would divide every page of the binaries
between nodes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from node_memory import node_mib, role, rss_mib
from vs_metallb_bulk import BULK_POOL, bulk_routes, delete_bulk

from lab import netns
from lab.controlplane import ControlPlane
from lab.nsnet import ApiRelay
from lab.runner import Lab
from tests.lab.api_objects import Cluster, advertisement, pool
from tests.lab.speaker_lab import NODES, PY, SpeakerLab, bgp_peer, nexthops

BENCH = Path(__file__).resolve().parent
GARP = str(Path(PY).with_name("exalb-garp"))
POOL = "203.0.113.0/24"
FIRST_HOST = 100


@dataclass
class SpeakerRun:
    first: list[float] = field(default_factory=list)
    all3: list[float] = field(default_factory=list)
    resets: int = 0
    rss_mib: list[float] = field(default_factory=list)  # one per node, idle
    node_mib: list[float] = field(default_factory=list)
    bulk_rss_mib: list[float] = field(default_factory=list)  # one per node, with the routes
    bulk_node_mib: list[float] = field(default_factory=list)
    bulk_seconds: float = 0.0  # first bulk write → r1 holds every route
    kicks: int = 0  # extra events the warm-up Service needed before it was announced
    bulk_kicks: int = 0  # bulk Services that needed a second event (see _wait_bulk)
    per_process: dict[str, list[float]] = field(default_factory=dict)  # RSS by program


def _note_memory(run: SpeakerRun, pids: list[int], bulk: bool) -> None:
    (run.bulk_rss_mib if bulk else run.rss_mib).append(rss_mib(pids))
    (run.bulk_node_mib if bulk else run.node_mib).append(node_mib(pids))
    for pid in pids:
        key = f"{role(pid)}{' (routes)' if bulk else ''}"
        run.per_process.setdefault(key, []).append(rss_mib([pid]))


def _tree(lab: Lab, node: str, pids: list[int]) -> list[int]:
    """``pids`` and their descendants inside the node's namespace."""
    inside = netns.pids(lab.ns(node))
    return sorted({*pids, *(c for p in pids for c in netns.children(p, inside))})


def _drops(lab: Lab) -> int:
    """Sessions r1 has dropped so far, over the nodes' IPv4 peers."""
    total = 0
    for n in NODES.values():
        nb = lab.vtysh_json("r1", f"show bgp neighbors {n.ipv4} json").get(n.ipv4, {})
        total += int(nb.get("connectionsDropped", 0))
    return total


def _v4_established(lab: Lab) -> bool:
    states = lab.peer_states("r1")
    return all(states.get(n.ipv4) == "Established" for n in NODES.values())


def _wait(what: str, cond: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f}s\n{logs()}")
        time.sleep(0.05)


def _fib_bgp_routes(lab: Lab) -> int:
    """IPv4 BGP routes in r1's kernel FIB."""
    return len(lab.fib("r1").prefixes(4))


_NOISE = ("Shutdown signal", "All workers finished", "Stopping and waiting", "start reconcile",
          "end reconcile")  # fmt: skip


def _lab_logs(lab: Lab) -> str:
    """The last meaningful lines of every log in the nodes (shutdown chatter left out)."""
    out = []
    for node in NODES:
        for f in sorted(lab.node_dir(node).glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()
            keep = [x[:400] for x in lines if not any(n in x for n in _NOISE)][-25:]
            out.append(f"--- {node}/{f.name}\n" + "\n".join(keep))
    return "\n".join(out)


def _warm_up(lab: Lab, announce: Callable[[int, str], float], kick: Callable[[], None]) -> int:
    """One Service (203.0.113.99, not measured) until r1 has it over all three nodes: the
    implementation has its config, Nodes and caches. Returns how many extra events it took:
    if it is not announced within 20 s, ``kick`` (a label on the Service) is tried twice."""
    prefix = f"203.0.113.{FIRST_HOST - 1}/32"
    announce(-1, prefix[:-3])
    for kicks in range(3):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if nexthops(lab, prefix) == 3:
                return kicks
            time.sleep(0.01)
        kick()
    raise RuntimeError(f"warm-up {prefix}: not at r1 over 3 paths\n{_lab_logs(lab)}")


def _measure(
    lab: Lab, services: int, announce: Callable[[int, str], float], run: SpeakerRun
) -> None:
    """Per Service: ``announce(i, ip)`` returns the send time; poll r1's FIB until 3 paths."""
    for i in range(services):
        ip = f"203.0.113.{FIRST_HOST + i}"
        prefix = f"{ip}/32"
        t0 = announce(i, ip)
        seen_first = None
        while True:
            k = nexthops(lab, prefix)
            now = time.monotonic()
            if k and seen_first is None:
                seen_first = now - t0
            if k == 3:
                run.all3.append(now - t0)
                break
            if now - t0 > 15:
                raise RuntimeError(f"{prefix}: {k} paths at r1 after 15 s\n{_lab_logs(lab)}")
            time.sleep(0.0005)
        assert seen_first is not None
        run.first.append(seen_first)


def _settle_down(lab: Lab) -> None:
    """Between implementations: r1 has no BGP route and no IPv4 session is up."""
    _wait("r1 FIB empty", lambda: _fib_bgp_routes(lab) == 0, 60, lambda: _lab_logs(lab))
    _wait(
        "sessions down",
        lambda: not any(lab.peer_states("r1").get(n.ipv4) == "Established" for n in NODES.values()),
        60,
        lambda: _lab_logs(lab),
    )


def _cluster(cp: ControlPlane) -> Cluster:
    c = Cluster(cp)
    c.apply_config(
        pool("pool", [POOL]),
        pool("bulk", [BULK_POOL]),
        *[bgp_peer(n) for n in NODES.values()],
        advertisement("ads", ["pool", "bulk"]),
    )
    for n in NODES.values():
        c.node(n)
    return c


def _service_announcer(c: Cluster) -> Callable[[int, str], float]:
    def announce(i: int, ip: str) -> float:
        name = f"lat{i}" if i >= 0 else "warm"
        c.service(name, [])
        c.endpoints(name, list(NODES))
        return c.set_ingress(name, [ip])

    return announce


def _kicker(c: Cluster) -> Callable[[], None]:
    n = [0]

    def kick() -> None:
        n[0] += 1
        path = f"/api/v1/namespaces/{c.app_ns}/services/warm"
        c.cp.api("PATCH", path, {"metadata": {"labels": {"kick": str(n[0])}}},
                 content_type="application/merge-patch+json")  # fmt: skip

    return kick


def run_exalb(lab: Lab, cp: ControlPlane, services: int, routes: int) -> SpeakerRun:
    run = SpeakerRun()
    c = _cluster(cp)
    made: list[int] = []
    sl = SpeakerLab(lab, cp, c)
    garps: dict[str, Popen[bytes]] = {}
    key_dir = lab.directory / "garp-key"  # the probe key, as the chart's Secret mounts it
    key_dir.mkdir(mode=0o700, exist_ok=True)
    (key_dir / "key").write_text(secrets.token_urlsafe(48))
    try:
        for node in NODES:
            state = sl.dir(node) / "l2-state.json"
            sl.start_exabgp(node)
            sl.start_speaker(node, "--l2-state", str(state))
            garps[node] = lab.popen(
                node,
                [GARP, "--state", str(state), "--node", node, "--metrics-addr", "127.0.0.1",
                 "--metrics-port", "7475", "--key-dir", str(key_dir)],
                name="garp",
            )  # fmt: skip
        sl.wait_ready()
        _wait("sessions", lambda: _v4_established(lab), 60, lambda: _lab_logs(lab))
        run.kicks = _warm_up(lab, _service_announcer(c), _kicker(c))
        drops = _drops(lab)
        _measure(lab, services, _service_announcer(c), run)
        run.resets = _drops(lab) - drops

        def memory(bulk: bool) -> None:
            for node in NODES:
                if garps[node].poll() is not None:  # a sidecar that exited would weigh 0
                    raise RuntimeError(f"{node}: exalb-garp exited\n{_lab_logs(lab)}")
                p = sl.procs[node]
                assert p.exabgp is not None and p.speaker is not None
                pids = [p.exabgp.pid, p.speaker.pid, garps[node].pid]
                _note_memory(run, _tree(lab, node, pids), bulk)

        memory(bulk=False)
        if routes:
            run.bulk_seconds, run.bulk_kicks = bulk_routes(
                lab, c, routes, made, lambda: _lab_logs(lab)
            )
            memory(bulk=True)
    finally:
        for node in NODES:
            sl.stop_speaker(node)
            if node in garps:
                lab.stop_process(node, garps[node])
            ex = sl.procs[node].exabgp
            if ex is not None:
                kids = _tree(lab, node, [ex.pid])
                lab.stop_process(node, ex)
                netns.stop([k for k in kids if netns.alive(k)], [lab.ns(node)], 1.0)
        sl.close()
        delete_bulk(c, made)
        c.cleanup()
    _settle_down(lab)
    return run


def run_metallb(lab: Lab, cp: ControlPlane, services: int, routes: int, binary: Path) -> SpeakerRun:
    run = SpeakerRun()
    c = _cluster(cp)
    made: list[int] = []
    relay = ApiRelay(cp.apiserver_port, [lab.ns(n) for n in NODES])
    procs: dict[str, Popen[bytes]] = {}
    try:
        sa = f"/api/v1/namespaces/{c.config_ns}/serviceaccounts"
        cp.api("POST", sa, {"metadata": {"name": "default"}})
        c.created.append(f"{sa}/default")
        for node in NODES:
            pod = f"speaker-{node}"
            path = f"/api/v1/namespaces/{c.config_ns}/pods"
            resp = cp.api(
                "POST",
                path,
                {
                    "metadata": {"name": pod, "labels": {"app": "metallb", "component": "speaker"}},
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": "speaker", "image": "metallb/speaker"}],
                    },
                },
            )
            assert resp.ok, resp.message
            c.created.append(f"{path}/{pod}")
            procs[node] = lab.popen(
                node,
                [str(binary), "--node-name", node, "--namespace", c.config_ns,
                 "--pod-name", pod, "--port=0", "--log-level=info"],
                name="metallb-speaker",
                env={"KUBECONFIG": str(cp.kubeconfig), "METALLB_BGP_TYPE": "native"},
            )  # fmt: skip
        _wait("sessions", lambda: _v4_established(lab), 90, lambda: _lab_logs(lab))
        run.kicks = _warm_up(lab, _service_announcer(c), _kicker(c))
        drops = _drops(lab)
        _measure(lab, services, _service_announcer(c), run)
        run.resets = _drops(lab) - drops
        for n in NODES:
            _note_memory(run, _tree(lab, n, [procs[n].pid]), bulk=False)
        if routes:
            run.bulk_seconds, run.bulk_kicks = bulk_routes(
                lab, c, routes, made, lambda: _lab_logs(lab)
            )
            for n in NODES:
                _note_memory(run, _tree(lab, n, [procs[n].pid]), bulk=True)
    finally:
        for node, p in procs.items():
            lab.stop_process(node, p, grace=10)
        relay.close()
        delete_bulk(c, made)
        for plural in ("servicebgpstatuses", "configurationstates", "servicel2statuses"):
            cp.api("DELETE", f"/apis/metallb.io/v1beta1/namespaces/{c.config_ns}/{plural}")
        c.cleanup()
    _settle_down(lab)
    return run


def _floor_config(node: str, fifo: Path) -> str:
    n = NODES[node]
    feeder = BENCH / "exabgp_line_feeder.py"
    return (
        f"process feeder {{\n    run {PY} {feeder} {fifo};\n    encoder json;\n}}\n"
        f"neighbor {n.router4} {{\n    router-id {n.ipv4};\n    local-address {n.ipv4};\n"
        f"    local-as {n.asn};\n    peer-as {n.router_asn};\n    hold-time 9;\n"
        "    family { ipv4 unicast; }\n    api { processes [ feeder ]; }\n}\n"
    )


def _open_feeders(lab: Lab, fifos: dict[str, Path], fds: dict[str, int]) -> None:
    """Open each node's feeder FIFO for writing (into ``fds``, so the caller closes what was
    opened even on failure) once its feeder reads it, then make the writes blocking."""

    def opened() -> bool:
        for node, fifo in fifos.items():
            if node not in fds:
                with contextlib.suppress(OSError):  # ENXIO until the feeder reads
                    fds[node] = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        return len(fds) == len(fifos)

    _wait("feeders", opened, 30, lambda: _lab_logs(lab))
    for fd in fds.values():
        os.set_blocking(fd, True)


def run_floor(lab: Lab, services: int, round_: int) -> SpeakerRun:
    run = SpeakerRun()
    fds: dict[str, int] = {}
    started: list[str] = []
    try:
        fifos = {}
        for node in NODES:
            fifo = lab.node_dir(node) / f"floor{round_}.fifo"
            os.mkfifo(fifo)
            fifos[node] = fifo
            # no CLI process, as exalb's ExaBGP runs: the floor's memory is ExaBGP + feeder
            lab.start_exabgp(node, _floor_config(node, fifo), env={"exabgp.api.cli": "false"})
            started.append(node)
        _wait("sessions", lambda: _v4_established(lab), 60, lambda: _lab_logs(lab))
        _open_feeders(lab, fifos, fds)

        def announce(_i: int, ip: str) -> float:
            line = f"announce route {ip}/32 next-hop self\n".encode()
            t0 = time.monotonic()
            for fd in fds.values():
                os.write(fd, line)
            return t0

        run.kicks = _warm_up(lab, announce, lambda: None)
        drops = _drops(lab)
        _measure(lab, services, announce, run)
        run.resets = _drops(lab) - drops
        for node in NODES:
            _note_memory(run, _tree(lab, node, [lab.exabgp(node).pid]), bulk=False)
    finally:
        for fd in fds.values():
            os.close(fd)
        for node in started:
            lab.stop_exabgp(node)
    _settle_down(lab)
    return run


def pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summary(runs: list[SpeakerRun]) -> dict[str, float]:
    """Pooled over rounds: latencies in ms, memory medians over nodes and rounds (MiB)."""
    first = [v * 1000 for r in runs for v in r.first]
    all3 = [v * 1000 for r in runs for v in r.all3]
    out = {
        "first_p50": statistics.median(first),
        "first_p95": pctl(first, 0.95),
        "all_p50": statistics.median(all3),
        "resets": float(sum(r.resets for r in runs)),
        "kicks": float(sum(r.kicks for r in runs)),
        "bulk_kicks": float(sum(r.bulk_kicks for r in runs)),
    }
    for key in ("rss_mib", "node_mib", "bulk_rss_mib", "bulk_node_mib"):
        values = [v for r in runs for v in getattr(r, key)]
        out[key.removesuffix("_mib")] = statistics.median(values) if values else float("nan")
    bulk = [r.bulk_seconds for r in runs if r.bulk_seconds]
    out["bulk_seconds"] = statistics.median(bulk) if bulk else float("nan")
    return out


def per_process(runs: list[SpeakerRun]) -> dict[str, float]:
    """Median RSS per process kind (e.g. ``exalb-speaker``)."""
    keys = sorted({k for r in runs for k in r.per_process})
    return {k: statistics.median(v for r in runs for v in r.per_process.get(k, [])) for k in keys}
