"""The lab demo: the whole of exalb on one machine, as a user would want to see it.

It starts a real control plane (kube-apiserver + etcd built from the Go modules), the
``bgp-ecmp`` containerlab topology in network namespaces (FRR router r1, nodes n1..n3, a
client), installs the chart's CRDs and a sample config with the real helm, runs the real
controller and, on every node, the real speaker next to ExaBGP (plus the garp sidecar), then
creates a LoadBalancer Service with endpoints on the three nodes. It prints the Service's IP,
r1's ECMP route (one nexthop per node) and how a client's requests spread over the nodes;
then node n2 fails and it shows the route and the traffic moving. Everything is torn down
at the end unless ``--keep`` asks to look around first.

Kubernetes has no kubelet here, so two things stand in for it, and only those: Node objects
are created through the API, and a tiny HTTP responder on each node (bound to the Service IP)
plays the Service's pods. Everything exalb does is the real product.

The same function backs the e2e test, which asserts every step.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog
import yaml

from exalb.k8s.client import KubeClient
from exalb.k8s.resources import NAMESPACES, NODES, SERVICES, Resource
from lab import responder
from lab.controlplane import ControlPlane, find_controlplane_binaries, find_tools
from lab.nsnet import ApiRelay, in_netns
from lab.runner import Lab
from lab.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "containerlab" / "bgp-ecmp" / "bgp-ecmp.clab.yml"
CHART = REPO / "charts" / "exalb"
BIN = Path(sys.executable).parent
NODE_NAMES = ("n1", "n2", "n3")
ROUTER = "r1"
CLIENT = "c"
FAILING = "n2"
CONFIG_NS = "metallb-system"
APP_NS = "demo"
SERVICE = "web"
POOL = "203.0.113.10-203.0.113.20"
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


@dataclass
class DemoResult:
    """What the demo showed, for the e2e test to assert."""

    service_ip: str = ""
    nexthops_before: list[str] = field(default_factory=list)
    spread_before: dict[str, int] = field(default_factory=dict)
    nexthops_after: list[str] = field(default_factory=list)
    spread_after: dict[str, int] = field(default_factory=dict)
    failover_ms: float = 0.0
    failed_requests: int = 0
    plugin_outputs: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Progress:
    """``[3/11] Starting the bgp-ecmp topology ......... 0.31 s``: one line per step."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.n = 0
        self.tty = out.isatty()

    @contextlib.contextmanager
    def step(self, text: str, timings: dict[str, float]) -> Iterator[None]:
        self.n += 1
        label = f"[{self.n}/{self.total}] {text} "
        self.out.write(label.ljust(58, "."))
        self.out.flush()
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.out.write(" failed\n")
            raise
        took = time.monotonic() - start
        timings[text] = took
        self.out.write(f" {took:6.2f} s\n")
        self.out.flush()


def demo_values(lab: Lab) -> dict[str, Any]:
    """The sample config: a pool, one BGPPeer per node (its router), one advertisement."""
    peers = []
    for name in NODE_NAMES:
        bgp = lab.topology.node(name).bgp
        assert bgp is not None
        for peer in bgp.peers:
            if peer.address.version != 4:
                continue
            peers.append(
                {
                    "name": f"{ROUTER}-{name}",
                    "spec": {
                        "myASN": bgp.asn,
                        "peerASN": peer.asn,
                        "peerAddress": str(peer.address),
                        "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": name}}],
                    },
                }
            )
    return {
        "controller": {"enabled": False},  # run below as local processes
        "speaker": {"enabled": False},
        "config": {
            "pools": [{"name": "demo", "spec": {"addresses": [POOL]}}],
            "peers": peers,
            "bgpAdvertisements": [{"name": "demo", "spec": {"ipAddressPools": ["demo"]}}],
        },
    }


def node_ipv4(lab: Lab, name: str) -> str:
    for _, iface in lab.topology.node(name).addresses:
        if iface.version == 4:
            return str(iface.ip)
    raise ValueError(f"{name} has no IPv4 address")


def http_spread(lab: Lab, ip: str, n: int, timeout: float = 2.0) -> tuple[Counter[str], int]:
    """``n`` HTTP GETs from the client namespace, each a new connection (new source port,
    so r1's layer-4 hash spreads them); returns answers per node and failures."""
    counts: Counter[str] = Counter()
    failed = 0
    for _ in range(n):
        with in_netns(lab.ns(CLIENT)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((ip, 80))
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            counts[data.split(b"\r\n\r\n", 1)[-1].decode().strip()] += 1
        except OSError:
            failed += 1
        finally:
            sock.close()
    return counts, failed


def bars(counts: Counter[str]) -> list[str]:
    width = max([*counts.values(), 1])
    return [
        f"    {node}  {'#' * counts.get(node, 0):<{width}}  {counts.get(node, 0):3d} requests"
        for node in NODE_NAMES
    ]


class Demo:
    """Owns every process and namespace the demo starts; :meth:`close` removes them all."""

    def __init__(self, out: TextIO, requests: int = 60) -> None:
        self.out = out
        self.requests = requests
        self.result = DemoResult()
        self.progress = Progress(out, 9)
        self.cp: ControlPlane | None = None
        self.lab: Lab | None = None
        self.relay: ApiRelay | None = None
        self.kube: KubeClient | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="exalb-demo-"))
        self.procs: dict[str, dict[str, subprocess.Popen[bytes]]] = {n: {} for n in NODE_NAMES}

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, text: str) -> contextlib.AbstractContextManager[None]:
        return self.progress.step(text, self.result.timings)

    # ------------------------------------------------------------------ bring-up
    def start(self) -> None:
        with self.step("Control plane: kube-apiserver + etcd"):
            self.cp = ControlPlane(binaries=find_controlplane_binaries())
            self.cp.start()
            self.kube = KubeClient(str(self.cp.kubeconfig))
        with self.step("Topology bgp-ecmp in network namespaces"):
            self.lab = Lab.start(TOPOLOGY, run=f"demo-{uuid.uuid4().hex[:4]}")
            # Hash on ports too, so one client's connections spread over the nodes.
            self.lab.exec(ROUTER, ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])
        with self.step("helm install: CRDs and the sample config"):
            values = self.workdir / "values.yaml"
            values.write_text(yaml.safe_dump(demo_values(self.lab)))
            subprocess.run(
                [
                    str(find_tools().helm),
                    "--kubeconfig",
                    str(self.cp.kubeconfig),
                    "install",
                    "exalb",
                    str(CHART),
                    "-n",
                    CONFIG_NS,
                    "--create-namespace",
                    "-f",
                    str(values),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        with self.step("Node objects n1..n3"):
            self.create_nodes()
        with self.step("exalb-controller"):
            self.start_controller()
        with self.step("ExaBGP + exalb-speaker + exalb-garp per node"):
            self.relay = ApiRelay(self.cp.apiserver_port, [self.lab.ns(n) for n in NODE_NAMES])
            for name in NODE_NAMES:
                self.start_node(name)
            wait_for("BGP sessions", lambda: self.sessions_up() == len(NODE_NAMES), 30)

    def create_nodes(self) -> None:
        assert self.kube is not None and self.lab is not None
        for name in NODE_NAMES:
            with contextlib.suppress(Exception):
                self.kube.delete(NODES, name)
            self.kube.create(
                NODES,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                },
            )
            self.kube.patch(
                NODES,
                name,
                {
                    "status": {
                        "addresses": [
                            {"type": "InternalIP", "address": node_ipv4(self.lab, name)},
                            {"type": "Hostname", "address": name},
                        ]
                    }
                },
                subresource="status",
            )

    def start_controller(self) -> None:
        assert self.cp is not None
        log = (self.workdir / "controller.log").open("ab")
        self.controller = subprocess.Popen(
            [
                str(BIN / "exalb-controller"),
                "--kubeconfig",
                str(self.cp.kubeconfig),
                "--namespace",
                CONFIG_NS,
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_node(self, name: str) -> None:
        assert self.lab is not None and self.cp is not None
        d = self.lab.node_dir(name) / "exalb"
        d.mkdir(exist_ok=True)
        conf, sock = d / "exabgp.conf", d / "bridge.sock"
        self.procs[name]["exabgp"] = self.lab.popen(
            name,
            [
                sys.executable,
                "-m",
                "speaker.exabgp.launch",
                "--config",
                str(conf),
                "--root",
                str(d),
                "--pipename",
                self.lab.ns(name),
            ],
            name="exabgp",
        )
        self.procs[name]["speaker"] = self.lab.popen(
            name,
            [
                str(BIN / "exalb-speaker"),
                "--node-name",
                name,
                "--kubeconfig",
                str(self.cp.kubeconfig),
                "--namespace",
                CONFIG_NS,
                "--exabgp-socket",
                str(sock),
                "--exabgp-config",
                str(conf),
                "--metrics-addr",
                "127.0.0.1:7472",
                "--status-socket",
                str(d / "status.sock"),
                "--l2-state",
                str(d / "l2-state.json"),
            ],
            name="speaker",
        )
        keys = self.workdir / "garp-key"  # one probe key for every node's sidecar (a Secret)
        if not (keys / "key").exists():
            keys.mkdir(mode=0o700, exist_ok=True)
            (keys / "key").write_text(secrets.token_urlsafe(48))
        self.procs[name]["garp"] = self.lab.popen(
            name,
            [
                str(BIN / "exalb-garp"),
                "--node",
                name,
                "--state",
                str(d / "l2-state.json"),
                "--key-dir",
                str(keys),
                "--metrics-addr",
                "127.0.0.1",
                "--metrics-port",
                "7473",
            ],
            name="garp",
        )

    def sessions_up(self) -> int:
        assert self.lab is not None
        return sum(1 for s in self.lab.peer_states(ROUTER).values() if s == "Established")

    # ------------------------------------------------------------------ the show
    def service(self) -> None:
        assert self.kube is not None and self.lab is not None
        with self.step("Service demo/web with endpoints on n1..n3"):
            with contextlib.suppress(Exception):
                self.kube.create(
                    NAMESPACES,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}},
                )
            self.kube.create(
                SERVICES,
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": SERVICE},
                    "spec": {
                        "type": "LoadBalancer",
                        "allocateLoadBalancerNodePorts": False,
                        "selector": {"app": SERVICE},
                        "ports": [{"port": 80, "protocol": "TCP"}],
                    },
                },
                APP_NS,
            )
            self.kube.create(
                ENDPOINT_SLICES,
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{SERVICE}-1",
                        "labels": {"kubernetes.io/service-name": SERVICE},
                    },
                    "addressType": "IPv4",
                    "endpoints": [
                        {
                            "addresses": [node_ipv4(self.lab, n)],
                            "nodeName": n,
                            "conditions": {"ready": True},
                        }
                        for n in NODE_NAMES
                    ],
                    "ports": [{"port": 80, "protocol": "TCP"}],
                },
                APP_NS,
            )
        with self.step("Controller assigns an IP"):
            ip = wait_for("an IP in status", self.ingress, 30)
            self.result.service_ip = ip
            for name in NODE_NAMES:  # the Service's "pods" on each node
                self.lab.exec(name, ["ip", "addr", "add", f"{ip}/32", "dev", "lo"])
                self.procs[name]["web"] = self.lab.popen(
                    name,
                    [
                        sys.executable,
                        responder.__file__,
                        "--bind",
                        ip,
                        "--port",
                        "80",
                        "--name",
                        name,
                    ],
                    name="web",
                )
        with self.step("Speakers announce; r1 installs ECMP"):
            lab = self.lab
            route = lab.wait_route(ROUTER, f"{ip}/32", nexthops=3, timeout=30)
            self.result.nexthops_before = sorted(route.gateways)
            wait_for("responders", lambda: http_spread(lab, ip, 1)[1] == 0, 10)

    def ingress(self) -> str | None:
        assert self.kube is not None
        svc = self.kube.get(SERVICES, SERVICE, APP_NS) or {}
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else None

    def show_state(self, title: str) -> Counter[str]:
        assert self.lab is not None and self.cp is not None
        ip = self.result.service_ip
        self.say(f"\n== {title}")
        kubectl = subprocess.run(
            [
                str(find_tools().kubectl),
                "--kubeconfig",
                str(self.cp.kubeconfig),
                "get",
                "svc",
                "-n",
                APP_NS,
                SERVICE,
            ],
            capture_output=True,
            check=False,
            text=True,
        )
        self.say("  $ kubectl get svc -n demo web")
        for line in kubectl.stdout.splitlines():
            self.say(f"    {line}")
        self.say(f"  $ ip route show {ip}      # in r1's namespace: the router's kernel FIB")
        shown = self.lab.exec(ROUTER, ["ip", "route", "show", ip]).stdout
        for line in shown.splitlines():
            self.say(f"    {line}")
        counts, failed = http_spread(self.lab, ip, self.requests)
        self.say(
            f"  {self.requests} HTTP requests from the client c to http://{ip}/ "
            "(one connection each):"
        )
        for line in bars(counts):
            self.say(line)
        if failed:
            self.say(f"    {failed} requests failed")
        self.result.failed_requests += failed
        return counts

    def kubectl_exalb(self, *args: str) -> None:
        """Run the real ``kubectl exalb`` plugin (``kubectl-exalb`` on PATH) and show it."""
        assert self.lab is not None and self.cp is not None
        speakers = ",".join(
            f"{n}=unix://{self.lab.node_dir(n) / 'exalb' / 'status.sock'}" for n in NODE_NAMES
        )
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "EXALB_SPEAKERS": speakers,
            "KUBECONFIG": str(self.cp.kubeconfig),
        }
        proc = subprocess.run(
            [str(find_tools().kubectl), "exalb", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        self.say(f"  $ kubectl exalb {' '.join(args)}")
        for line in (proc.stdout + proc.stderr).splitlines():
            self.say(f"    {line}")
        self.result.plugin_outputs.append(proc.stdout)

    def fail_node(self) -> None:
        assert self.lab is not None
        ip = self.result.service_ip
        self.say(f"\n== Node {FAILING} fails (its uplink goes down, its processes die)")
        start = time.monotonic()
        self.lab.exec(FAILING, ["ip", "link", "set", "eth1", "down"])
        for proc in self.procs[FAILING].values():
            self.lab.stop_process(FAILING, proc, grace=0.0)
        route = self.lab.wait_route(ROUTER, f"{ip}/32", nexthops=2, timeout=30)
        self.result.failover_ms = (time.monotonic() - start) * 1000
        self.result.nexthops_after = sorted(route.gateways)
        self.say(f"  r1 dropped {FAILING}'s path after {self.result.failover_ms:.0f} ms")

    def run(self) -> DemoResult:
        self.say(
            "exalb lab demo: a real control plane, FRR, ExaBGP and exalb, in network namespaces\n"
        )
        self.start()
        self.service()
        self.result.spread_before = dict(
            self.show_state("Service demo/web: one IP, announced by all three nodes, ECMP at r1")
        )
        self.say("\n== What exalb says about it")
        self.kubectl_exalb("status", "-n", APP_NS)
        self.kubectl_exalb("routes")
        self.fail_node()
        self.result.spread_after = dict(
            self.show_state("After the failure: two paths left, traffic moved to n1 and n3")
        )
        self.kubectl_exalb("why", f"{APP_NS}/{SERVICE}")
        return self.result

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop everything started, in reverse order; one failing step never skips the rest."""
        steps: list[Callable[[], object]] = []
        if self.controller is not None:
            steps.append(lambda: _stop(self.controller))
        if self.relay is not None:
            steps.append(self.relay.close)
        if self.lab is not None:
            steps.append(self.lab.down)
        if self.kube is not None:
            steps.append(self.kube.close)
        if self.cp is not None:
            steps.append(self.cp.stop)
        steps.append(lambda: shutil.rmtree(self.workdir, ignore_errors=True))
        for fn in steps:
            try:
                fn()
            except Exception as exc:  # keep tearing down
                self.say(f"teardown step failed: {exc}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def quiet_logs() -> None:
    """The demo prints its own story; library chatter below warnings would drown it."""
    logging.getLogger().setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/lab demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep everything running until Enter is pressed, to look around",
    )
    p.add_argument("--requests", type=int, default=60)
    args = p.parse_args(argv)
    out = out or sys.stdout
    quiet_logs()
    if os.geteuid() != 0:
        out.write("the lab demo needs root (network namespaces)\n")
        return 2
    demo = Demo(out, args.requests)
    try:
        result = demo.run()
        demo.say(
            f"\nDone: {result.service_ip} was served by "
            f"{', '.join(sorted(result.spread_before))}; after {FAILING} failed, by "
            f"{', '.join(sorted(result.spread_after))}."
        )
        if args.keep and demo.lab is not None and demo.cp is not None:
            demo.say(
                f"\nKept running. kubeconfig: {demo.cp.kubeconfig}\n"
                f"  scripts/lab vtysh --run {demo.lab.run} r1 -- show ip route\n"
                "Press Enter to tear everything down."
            )
            with contextlib.suppress(EOFError):
                input()
    finally:
        demo.say("Tearing down ...")
        demo.close()
    return 0
