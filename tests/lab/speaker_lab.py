"""Real speakers on the ``bgp-ecmp`` lab against a real kube-apiserver (tests and bench).

Per node namespace (n1..n3) two processes run, as the two containers of a speaker pod would:

* the ExaBGP launcher (``python -m speaker.exabgp.launch``) that waits for the config file
  the speaker renders and then ``exec``s ``exabgp server`` (so its PID is ExaBGP's), with the
  bridge as ExaBGP's API process;
* ``exalb-speaker`` with the admin kubeconfig; the apiserver is reached through
  :class:`~lab.nsnet.ApiRelay` (127.0.0.1:<port> inside the namespace), its HTTP endpoints
  listen on 127.0.0.1:7473 inside the namespace, ``/status`` on 127.0.0.1:7474 (loopback
  only, as on a real node) and on a unix socket in the run directory.

The nodes' addresses, AS numbers and routers come from ``containerlab/bgp-ecmp/`` (the file
the runner builds the namespaces from). Kubernetes objects (metallb.io config, Nodes n1..n3,
Services with ``status.loadBalancer.ingress`` set directly since the controller is a
separate program, EndpointSlices) are created through the API by
:class:`tests.lab.api_objects.Cluster` and deleted again by its ``cleanup()``. Every process
is started with ``Lab.popen`` and therefore recorded and stopped by PID at teardown, also on
failure.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.binaries import find_tools
from lab.controlplane import ControlPlane
from lab.nsnet import ApiRelay, http_get
from lab.promtext import metric_sum
from lab.runner import Lab
from lab.topology import Node, Role, topology_path
from lab.topology_load import load_topology
from lab.wait import wait_for
from tests.lab.api_objects import Cluster

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "charts" / "exalb" / "crds"
PY = sys.executable
SPEAKER = str(Path(PY).with_name("exalb-speaker"))
METRICS_PORT = 7473
STATUS_PORT = 7474
LB_CLASS = None
ROUTER = "r1"


@dataclass(frozen=True)
class NodeNet:
    """A node's addresses and the router it peers with, per address family."""

    name: str
    asn: int
    ipv4: str
    router4: str
    ipv6: str
    router6: str
    router_asn: int = 0


def node_net(node: Node) -> NodeNet:
    """A BGP node of the topology as the speaker tests use it (one router per family)."""
    assert node.bgp is not None, f"{node.name} has no exalb.bgp.* labels"
    (v4,) = (p for p in node.bgp.peers if p.address.version == 4)
    (v6,) = (p for p in node.bgp.peers if p.address.version == 6)
    return NodeNet(
        node.name,
        node.bgp.asn,
        str(node.local_address_for(v4.address)),
        str(v4.address),
        str(node.local_address_for(v6.address)),
        str(v6.address),
        v4.asn,
    )


TOPOLOGY = load_topology(topology_path("bgp-ecmp"))
NODES: dict[str, NodeNet] = {n.name: node_net(n) for n in TOPOLOGY.by_role(Role.NODE)}


# -- Kubernetes objects ---------------------------------------------------------------------


def install_crds(cp: ControlPlane) -> None:
    """``kubectl apply`` the chart's CRDs (idempotent) and wait until they are served."""
    kubectl = find_tools().kubectl
    cp.run_tool([str(kubectl), "apply", "--server-side", "-f", str(CRDS)])
    for path in (
        "/apis/metallb.io/v1beta1/ipaddresspools",
        "/apis/metallb.io/v1beta2/bgppeers",
        "/apis/metallb.io/v1beta1/bgpadvertisements",
        "/apis/metallb.io/v1beta1/communities",
        "/apis/metallb.io/v1beta1/bfdprofiles",
        "/apis/metallb.io/v1beta1/l2advertisements",
    ):
        wait_for(f"{path} served", lambda p=path: cp.api("GET", p).status == 200, 30, 0.1)


def bgp_peer(node: NodeNet, family: int = 4, **spec: Any) -> dict[str, Any]:
    """One BGPPeer per router address, selected to the node on that link."""
    return {
        "apiVersion": "metallb.io/v1beta2",
        "kind": "BGPPeer",
        "metadata": {"name": f"{ROUTER}-{node.name}-v{family}"},
        "spec": {
            "myASN": node.asn,
            "peerASN": node.router_asn,
            "peerAddress": node.router4 if family == 4 else node.router6,
            "holdTime": "9s",
            "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": node.name}}],
            **spec,
        },
    }


# -- processes --------------------------------------------------------------------------------


@dataclass
class NodeProcs:
    exabgp: subprocess.Popen[bytes] | None = None
    speaker: subprocess.Popen[bytes] | None = None
    bfdd: subprocess.Popen[bytes] | None = None


class SpeakerLab:
    """The bgp-ecmp lab + a Cluster + per-node ExaBGP launcher and speaker processes."""

    def __init__(self, lab: Lab, cp: ControlPlane, cluster: Cluster, bfd: bool = False) -> None:
        self.lab = lab
        self.bfd = bfd  # run bfdd next to ExaBGP, as the chart's bfd container does
        self.cp = cp
        self.cluster = cluster
        self.procs: dict[str, NodeProcs] = {n: NodeProcs() for n in NODES}
        self.relay = ApiRelay(cp.apiserver_port, [lab.ns(n) for n in NODES])
        self.speaker_starts: dict[str, int] = dict.fromkeys(NODES, 0)

    def dir(self, node: str) -> Path:
        d = self.lab.node_dir(node) / "speaker"
        d.mkdir(exist_ok=True)
        return d

    def socket(self, node: str) -> Path:
        return self.dir(node) / "bridge.sock"

    def config_file(self, node: str) -> Path:
        return self.dir(node) / "exabgp.conf"

    def status_socket(self, node: str) -> Path:
        """The speaker's ``--status-socket``: its /status from the host, no network needed."""
        return self.dir(node) / "status.sock"

    def speaker_urls(self, nodes: list[str] | None = None) -> list[str]:
        """``--speaker NODE=unix://...`` arguments for ``exalbctl``."""
        return [f"{n}=unix://{self.status_socket(n)}" for n in nodes or list(NODES)]

    def start_exabgp(self, node: str) -> subprocess.Popen[bytes]:
        """The ExaBGP container: waits for the speaker's config, then execs ExaBGP."""
        argv = [
            PY, "-m", "speaker.exabgp.launch",
            "--config", str(self.config_file(node)),
            "--root", str(self.dir(node)),
            "--pipename", self.lab.ns(node),
        ]  # fmt: skip
        proc = self.lab.popen(node, argv, name="exabgp")
        self.procs[node].exabgp = proc
        return proc

    def bfd_dir(self, node: str) -> Path:
        return self.dir(node) / "bfdd"

    def start_bfdd(self, node: str) -> subprocess.Popen[bytes]:
        """The bfd container: waits for the speaker's bfdd.conf, then execs bfdd."""
        argv = [
            PY, "-m", "speaker.bfd.launch",
            "--config", str(self.dir(node) / "bfdd.conf"),
            "--dir", str(self.bfd_dir(node)),
        ]  # fmt: skip
        proc = self.lab.popen(node, argv, name="bfdd")
        self.procs[node].bfdd = proc
        return proc

    def start_speaker(self, node: str, *extra: str) -> subprocess.Popen[bytes]:
        if self.bfd:
            extra = (
                "--bfd-dir", str(self.bfd_dir(node)),
                "--bfd-config", str(self.dir(node) / "bfdd.conf"),
                *extra,
            )  # fmt: skip
        argv = [
            SPEAKER,
            "--node-name", node,
            "--kubeconfig", str(self.cp.kubeconfig),
            "--namespace", self.cluster.config_ns,
            "--exabgp-socket", str(self.socket(node)),
            "--exabgp-config", str(self.config_file(node)),
            "--metrics-addr", f"127.0.0.1:{METRICS_PORT}",
            "--status-addr", f"127.0.0.1:{STATUS_PORT}",
            "--status-socket", str(self.status_socket(node)),
            # no kube-proxy in this lab: no Local path has a health check to wait for
            # (tests/e2e runs the wait against real kube-proxies)
            "--proxy-hold-seconds", "0",
            *extra,
        ]  # fmt: skip
        self.speaker_starts[node] += 1
        proc = self.lab.popen(node, argv, name=f"speaker-{self.speaker_starts[node]}")
        self.procs[node].speaker = proc
        return proc

    def start(self, nodes: list[str] | None = None, *extra: str) -> None:
        for node in nodes or list(NODES):
            self.start_exabgp(node)
            if self.bfd:
                self.start_bfdd(node)
            self.start_speaker(node, *extra)

    def signal_speaker(self, node: str, sig: int) -> float:
        """Send ``sig`` to the node's speaker; returns the monotonic send time."""
        proc = self.procs[node].speaker
        assert proc is not None
        t = time.monotonic()
        proc.send_signal(sig)
        return t

    def wait_speaker_exit(self, node: str, timeout: float = 15.0) -> int:
        proc = self.procs[node].speaker
        assert proc is not None
        rc = proc.wait(timeout)
        self.lab.forget_process(proc)
        self.procs[node].speaker = None
        return rc

    def stop_speaker(self, node: str) -> None:
        proc = self.procs[node].speaker
        if proc is not None:
            self.lab.stop_process(node, proc, grace=10)
            self.procs[node].speaker = None

    # -- observation ------------------------------------------------------------------------
    def http(self, node: str, path: str, port: int = METRICS_PORT) -> tuple[int, bytes]:
        return http_get(self.lab.ns(node), port, path)

    def status(self, node: str, service: str | None = None) -> dict[str, Any]:
        path = "/status" + (f"?service={service}" if service else "")
        code, body = self.http(node, path, STATUS_PORT)
        assert code == 200, body
        return dict(json.loads(body))

    def ready(self, node: str) -> bool:
        try:
            return self.http(node, "/readyz")[0] == 200
        except OSError:
            return False

    def metric(self, node: str, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        _, body = self.http(node, "/metrics")
        return metric_sum(body.decode(), name, **labels)

    def wait_ready(self, nodes: list[str] | None = None, timeout: float = 30.0) -> None:
        for node in nodes or list(NODES):
            try:
                wait_for(f"{node} /readyz", lambda n=node: self.ready(n), timeout, 0.05)
            except TimeoutError:
                raise AssertionError(f"{node} speaker not ready:\n{self.logs(node)}") from None

    def logs(self, node: str, tail: int = 40) -> str:
        out = []
        for f in sorted(self.lab.node_dir(node).glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    @property
    def router_kind(self) -> str:
        """``frr`` or ``bird``: which implementation r1 runs."""
        return self.lab.node(ROUTER).router_kind

    def sessions(self) -> dict[str, tuple[int, int] | tuple[str, str]]:
        """Router's view: peer → (established transitions, dropped count) for FRR, (state,
        time of the last state change) for BIRD; either changes when a session resets."""
        out: dict[str, tuple[int, int] | tuple[str, str]] = {}
        if self.router_kind == "bird":
            protocols = self.lab.bird(ROUTER).protocols()
            for n in NODES.values():
                for addr in (n.ipv4, n.ipv6):
                    if addr in protocols:
                        out[addr] = (protocols[addr]["state"], protocols[addr]["since"])
            return out
        for n in NODES.values():
            for addr in (n.ipv4, n.ipv6):
                nb = self.lab.frr(ROUTER).neighbor(addr)
                if nb:
                    out[addr] = (
                        int(nb.get("connectionsEstablished", 0)),
                        int(nb.get("connectionsDropped", 0)),
                    )
        return out

    def bgp_route(self, prefix: str) -> dict[str, Any] | None:
        """r1's BGP paths for ``prefix`` in FRR's JSON shape (BIRD's text parsed into it)."""
        if self.router_kind == "bird":
            return self.lab.bird(ROUTER).bgp_route(prefix)
        return self.lab.frr(ROUTER).bgp_route(prefix)

    def close(self) -> None:
        self.relay.close()


def nexthops(lab: Lab, prefix: str) -> int:
    route = lab.route(ROUTER, prefix)
    return len(route.nexthops) if route else 0


def timed_wait_nexthops(lab: Lab, prefix: str, count: int, since: float, timeout: float) -> float:
    """Seconds from ``since`` until r1's FIB has exactly ``count`` paths (0 = gone)."""
    deadline = time.monotonic() + timeout
    while True:
        if nexthops(lab, prefix) == count:
            return time.monotonic() - since
        if time.monotonic() > deadline:
            raise AssertionError(
                f"r1: {prefix} has {nexthops(lab, prefix)} nexthops, want {count} after {timeout}s"
            )
        time.sleep(0.001)


@contextlib.contextmanager
def speaker_lab(lab: Lab, cp: ControlPlane, bfd: bool = False) -> Iterator[SpeakerLab]:
    """A SpeakerLab whose Kubernetes objects and relay are cleaned up, pass or fail (the
    processes are stopped by the Lab's own teardown)."""
    cluster = Cluster(cp)
    sl = None
    try:
        sl = SpeakerLab(lab, cp, cluster, bfd)
        yield sl
    finally:
        if sl is not None:
            for node in NODES:  # stop speakers first: they must not react to the cleanup
                proc = sl.procs[node].speaker
                if proc is not None and proc.poll() is None:
                    lab.stop_process(node, proc, first=signal.SIGKILL)
            sl.close()
        cluster.cleanup()
