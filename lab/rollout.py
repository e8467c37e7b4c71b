"""Zero-loss scenarios on the lab cluster (``k8s-bgp``), shared by the e2e tests (which
assert) and ``bench/rolling.py`` (which prints): exalb installed with helm, a backend behind a
Cluster-policy Service, client traffic (:mod:`lab.traffic`) while the speaker DaemonSet rolls
or a node is drained, and r1's FIB watched the whole time.

What is measured, per scenario (:class:`Outcome`): new connections failed / total, long-lived
connections broken / opened, and every change of r1's ECMP set for the Service IP (the
router's own view: its kernel FIB, read over netlink every few milliseconds).

A new connection still in flight when r1's ECMP set changes can be re-hashed to another node
half-way (the kernel's hash-threshold multipath moves a share of *all* flows on any change,
not only the leaving node's), and that node has no NAT state for it: it is reset. Such a
failure is an ECMP re-hash, like a long-lived connection's, and is counted apart
(:attr:`Outcome.rehashed`); every other failure (:attr:`Outcome.lost`) is a real loss: a
path withdrawn while traffic still used it, a node gone, a pod gone.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.cluster import images
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import ECHO_PORT, backend_deployment, dump, load_balancer
from lab.fib import Fib
from lab.runner import Lab, new_run_name
from lab.topology import topology_path
from lab.traffic import (
    Attempt,
    LongLived,
    LongLivedResult,
    NewConnections,
    NewConnectionsResult,
)
from lab.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "exalb"
NS = "metallb-system"
ROUTER, CLIENT = "r1", "c"
NODE_IP = {"n1": "198.51.100.11", "n2": "198.51.100.12", "n3": "198.51.100.13"}
IP_NODE = {v: k for k, v in NODE_IP.items()}
ALL_NODES = frozenset(NODE_IP)
POOL = "203.0.113.50-203.0.113.60"
#: seconds a terminating backend pod keeps serving (its endpoint leaves every kube-proxy first)
BACKEND_PRE_STOP = 3


def release_values(
    cluster: Cluster,
    *,
    drain_seconds: int = 5,
    graceful_restart: bool = False,
    rollout: str = "",
) -> dict[str, Any]:
    """exalb's values for these scenarios: one BGPPeer for every node (hold 3 s), one BGP pool
    whose advertisement opts in to weighted ECMP (only Local Services carry a bandwidth).

    ``graceful_restart``: the peer negotiates graceful restart and the speaker keeps its
    routes on exit (the alternative to draining for a speaker-only restart). ``rollout``: a
    pod annotation of the speaker; changing it rolls the DaemonSet."""
    exalb = cluster.images["exalb"]
    peer: dict[str, Any] = {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1",
                            "holdTime": "3s"}  # fmt: skip
    if graceful_restart:
        peer["enableGracefulRestart"] = True
    speaker: dict[str, Any] = {
        "withdrawOnExit": not graceful_restart,
        "drain": {"seconds": drain_seconds},
        "podAnnotations": {"exalb.io/rollout": rollout} if rollout else {},
    }
    return {
        "image": {"repository": exalb.repository, "tag": exalb.tag, "pullPolicy": "Never"},
        "speaker": speaker,
        "garp": {"enabled": False},
        "config": {
            "pools": [{"name": "bgp", "spec": {"addresses": [POOL]}}],
            "peers": [{"name": "r1-gr" if graceful_restart else "r1", "spec": peer}],
            "bgpAdvertisements": [{
                "name": "bgp",
                "annotations": {"exalb.io/weighted-ecmp": "true"},
                "spec": {"ipAddressPools": ["bgp"]},
            }],
        },
    }  # fmt: skip


def helm(cluster: Cluster, verb: str, values: dict[str, Any], timeout: str = "300s") -> None:
    path = cluster.dir / f"rollout-values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        cluster.helm(verb, "exalb", str(CHART), "-n", NS, "--create-namespace", "-f", str(path),
                     "--wait", "--timeout", timeout, timeout=600)  # fmt: skip
    finally:
        path.unlink(missing_ok=True)


def ingress(cluster: Cluster, namespace: str, name: str) -> str | None:
    svc = cluster.get_json("svc", "-n", namespace, name)
    items = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(items[0]["ip"]) if items else None


def paths(lab: Lab, ip: str) -> dict[str, int]:
    """r1's FIB for ``ip``/32: node → next-hop weight."""
    route = lab.route(ROUTER, f"{ip}/32")
    return {IP_NODE.get(g, g): w for g, w in route.weights.items()} if route else {}


def wait_paths(
    lab: Lab, ip: str, want: dict[str, int] | AbstractSet[str], timeout: float = 90
) -> None:
    """Until r1's FIB has exactly these nodes (a set) or these weights (a dict)."""
    if not isinstance(want, dict):
        check: Callable[[], bool] = lambda: set(paths(lab, ip)) == want  # noqa: E731
    else:
        check = lambda: paths(lab, ip) == want  # noqa: E731
    wait_for(f"r1: {ip} via {want}", check, timeout, 0.05)


def deploy_backend(cluster: Cluster, namespace: str, name: str = "web") -> str:
    """3 backend pods (one per node) behind a Cluster-policy Service with an echo port; the
    Service's IP."""
    image = cluster.images["backend"].ref
    cluster.apply(dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        backend_deployment(name, namespace, image, replicas=3, pre_stop_sleep=BACKEND_PRE_STOP),
        load_balancer(name, namespace, echo=True),
    ))  # fmt: skip
    ip = wait_for(f"{name}: IP", lambda: ingress(cluster, namespace, name), 120, 0.2)
    wait_for("3 ready backend pods", lambda: ready_pods(cluster, namespace, name) >= 3, 120, 0.5)
    return str(ip)


def ready_pods(cluster: Cluster, namespace: str, app: str) -> int:
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return sum(
        1
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))
    )  # fmt: skip


def speaker_pods(cluster: Cluster) -> dict[str, str]:
    """Node → name of its running speaker pod (not terminating)."""
    items = cluster.get_json("pods", "-n", NS, "-l", "app.kubernetes.io/component=speaker")
    return {
        p["spec"]["nodeName"]: p["metadata"]["name"]
        for p in items["items"]
        if p["metadata"].get("deletionTimestamp") is None
    }


class FibWatch:
    """r1's FIB for one prefix sampled every ``interval`` in the background; keeps every
    change of the ECMP set (time since start, nodes with their weights)."""

    def __init__(self, lab: Lab, ip: str, interval: float = 0.005) -> None:
        self.lab, self.prefix, self.interval = lab, f"{ip}/32", interval
        self.changes: list[tuple[float, dict[str, int]]] = []  # (monotonic time, nodes)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fib = Fib(self.lab.ns(ROUTER))  # its own netlink socket
        try:
            while not self._stop.is_set():
                route = fib.route(self.prefix)
                now = {IP_NODE.get(g, g): w for g, w in route.weights.items()} if route else {}
                if not self.changes or self.changes[-1][1] != now:
                    self.changes.append((time.monotonic(), now))
                self.samples += 1
                time.sleep(self.interval)
        finally:
            fib.close()

    def stop(self) -> list[tuple[float, dict[str, int]]]:
        self._stop.set()
        self._thread.join(5)
        return self.changes


@dataclass
class Outcome:
    """One scenario's figures (module docstring)."""

    name: str
    started: float = 0.0  # monotonic
    seconds: float = 0.0
    new: NewConnectionsResult | None = None
    long: LongLivedResult | None = None
    fib: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # monotonic times
    events: list[tuple[float, str]] = field(default_factory=list)  # what the scenario did

    def mark(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    @property
    def ecmp_changes(self) -> int:
        return max(0, len(self.fib) - 1)

    def _in_flight_at_a_change(self, a: Attempt, slack: float = 0.05) -> bool:
        """``a`` was open when r1's ECMP set changed (``slack``: the FIB is sampled)."""
        return any(a.started - slack <= t <= a.started + a.seconds + slack
                   for t, _ in self.fib[1:])  # fmt: skip

    @property
    def rehashed(self) -> list[Attempt]:
        """Failed new connections that were in flight at an ECMP change (module docstring)."""
        failed = self.new.attempts if self.new else ()
        return [a for a in failed if not a.ok and self._in_flight_at_a_change(a)]

    @property
    def lost(self) -> list[Attempt]:
        """Failed new connections no ECMP change explains: real losses."""
        failed = self.new.attempts if self.new else ()
        return [a for a in failed if not a.ok and not self._in_flight_at_a_change(a)]

    @property
    def fewest_paths(self) -> int:
        return min((len(nodes) for _, nodes in self.fib), default=0)

    def lines(self) -> list[str]:
        out = [f"{self.name} ({self.seconds:.0f} s):"]
        if self.new is not None:
            out.append(f"  new connections (20/s):  {self.new.summary()}; lost "
                       f"{len(self.lost)}, re-hashed in flight by an ECMP change "
                       f"{len(self.rehashed)}")  # fmt: skip
        if self.long is not None:
            out.append(f"  long-lived connections:  {self.long.summary()}")
        out.append(f"  r1 ECMP set changed {self.ecmp_changes} times, never fewer than "
                   f"{self.fewest_paths} paths (FIB; * = what the scenario did, "
                   "! = a failed new connection, when it started):")  # fmt: skip
        timeline = [(t, f"r1: {' '.join(sorted(nodes)) or '(no route)'}") for t, nodes in self.fib]
        timeline += [(t, f"* {what}") for t, what in self.events]
        timeline += [(a.started, f"! new connection {a.error} after {a.seconds:.2f} s ("
                      f"{'re-hashed' if a in self.rehashed else 'lost'})")
                     for a in (self.new.attempts if self.new else ()) if not a.ok]  # fmt: skip
        out += [f"    t+{t - self.started:6.2f}s  {text}" for t, text in sorted(timeline)]
        return out


@contextmanager
def measured(lab: Lab, ip: str, name: str, rate: float = 20.0, long_lived: int = 30,
             settle: float = 2.0) -> Iterator[Outcome]:  # fmt: skip
    """Traffic and the FIB watch around the block: ``settle`` seconds of traffic before and
    after it; the figures are in the yielded :class:`Outcome` once the block is left."""
    outcome = Outcome(name, started=time.monotonic())
    watch = FibWatch(lab, ip)
    long = LongLived(lab.ns(CLIENT), ip, ECHO_PORT, count=long_lived).start()
    new = NewConnections(lab.ns(CLIENT), ip, 80, rate=rate).start()
    try:
        time.sleep(settle)
        yield outcome
        time.sleep(settle)
    finally:
        outcome.new = new.stop()
        outcome.long = long.stop()
        outcome.fib = watch.stop()
        outcome.seconds = time.monotonic() - outcome.started


def roll_speakers(
    cluster: Cluster, values: dict[str, Any], outcome: Outcome | None = None
) -> float:
    """``helm upgrade --wait`` with a new speaker pod annotation: every speaker pod is
    replaced, one node at a time (maxUnavailable 1). Returns the seconds it took."""
    before = speaker_pods(cluster)
    if outcome is not None:
        outcome.mark("helm upgrade")
    annotations = {"exalb.io/rollout": uuid.uuid4().hex}
    values = {**values, "speaker": {**values["speaker"], "podAnnotations": annotations}}
    started = time.monotonic()
    helm(cluster, "upgrade", values)
    wait_for("every speaker pod replaced",
             lambda: not set(speaker_pods(cluster).values()) & set(before.values())
             and len(speaker_pods(cluster)) == len(before), 120, 0.5)  # fmt: skip
    if outcome is not None:
        outcome.mark("helm upgrade --wait returned, every speaker pod replaced")
    return time.monotonic() - started


def drain_node(cluster: Cluster, node: str) -> float:
    """``kubectl drain`` (the speaker DaemonSet pod stays; backend pods are evicted)."""
    started = time.monotonic()
    cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                    "--timeout=180s", timeout=240)  # fmt: skip
    return time.monotonic() - started


def power_off(cluster: Cluster, node: str) -> None:
    """The node dies as a drained node being shut down would: link down, kubelet,
    kube-proxy and containerd gone (:meth:`lab.cluster.node.KubeNode.fail`)."""
    cluster.nodes[node].fail()


def power_on(cluster: Cluster, node: str) -> None:
    """Link up and the node's programs back (if it was off); until the node is Ready."""
    if "kubelet" not in cluster.nodes[node].procs:
        cluster.nodes[node].recover()
    wait_for(f"{node} Ready", lambda: node in cluster.ready_nodes(), 180, 0.5)


def drain_then_power_off(
    lab: Lab, cluster: Cluster, ip: str, node: str, opt_in: bool, outcome: Outcome
) -> None:
    """``kubectl drain`` then, once the node's path is gone (opted in) or the drain is done
    (not opted in: the node still announces), the node powers off; traffic goes on for the
    hold time and more. The caller powers it on and uncordons it."""
    outcome.mark(f"kubectl drain {node}")
    drain_node(cluster, node)
    outcome.mark("kubectl drain returned")
    if opt_in:
        wait_paths(lab, ip, ALL_NODES - {node})
        wait_for(f"{node} withdrawn at r1", lambda: node not in frr_paths(lab, ip), 30, 0.1)
        outcome.mark(f"{node}'s path withdrawn at r1 (bgpd)")
    power_off(cluster, node)
    outcome.mark(f"{node} powered off")
    wait_paths(lab, ip, ALL_NODES - {node}, timeout=30)  # at once, or after the hold time
    time.sleep(3)


def frr_paths(lab: Lab, ip: str) -> set[str]:
    """Nodes r1's bgpd holds a path from for ``ip``/32 (best or not)."""
    entry = lab.vtysh_json(ROUTER, f"show bgp ipv4 unicast {ip}/32 json")
    return {IP_NODE.get(p["nexthops"][0]["ip"], "?") for p in entry.get("paths", [])}


def speakers_metrics(lab: Lab) -> str:
    """Every node's speaker metrics, one text after the other, read by r1 from each node's
    metrics port (the only speaker port on the node network): a
    :func:`lab.promtext.metric_sum` over it sums over the nodes."""
    curl = ["curl", "-s", "-m", "5"]
    return "".join(lab.exec(ROUTER, [*curl, f"http://{ip}:7472/metrics"]).stdout
                   for ip in NODE_IP.values())  # fmt: skip


def opt_in_drain_on_cordon(cluster: Cluster, node: str, on: bool) -> None:
    value = "exalb.io/drain-on-cordon=true" if on else "exalb.io/drain-on-cordon-"
    cluster.kubectl("annotate", "node", node, value, "--overwrite")


@contextmanager
def k8s_bgp_lab(run: str | None) -> Iterator[tuple[Lab, Cluster]]:
    """The benchmarks' cluster: a new ``k8s-bgp`` lab, torn down after, or the running lab
    ``run`` (``scripts/lab up k8s-bgp --run NAME``), left up; with its images, and r1
    hashing on ports too, so one client's new connections spread over the nodes."""
    with contextlib.ExitStack() as stack:
        if run is None:
            lab = stack.enter_context(Lab.up(topology_path("k8s-bgp"), run=new_run_name()))
        else:
            lab = Lab.attach(run)
            stack.callback(lambda: lab.cluster.close() if lab.cluster is not None else None)
        cluster = lab.cluster
        assert cluster is not None
        if not cluster.images:  # attached: the images are built (cached) but not recorded
            cluster.images = images.build(log=cluster.dir / "images.log")
        lab.exec(ROUTER, ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])
        yield lab, cluster
