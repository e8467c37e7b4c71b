"""The lab demo: exalb installed with helm onto a real Kubernetes cluster, as users run it.

It brings up the ``k8s-bgp`` topology (a control plane, three nodes with containerd +
kubelet + kube-proxy, an FRR router r1, a client c; see containerlab/k8s-bgp), loads the
images built by ``scripts/image.sh`` into the nodes, and ``helm install``\\ s the chart,
unchanged. Then:

* **BGP**: a backend Deployment (real pods) behind a LoadBalancer Service; r1's ECMP route
  with one nexthop per node, the client's requests spread over the nodes, ``kubectl exalb
  status/routes``; node n2 fails (kubelet and containerd stop, link down): its path goes,
  traffic moves, ``kubectl exalb why`` says so; n2 comes back.
* **L2**: the config switches to the legacy MetalLB ConfigMap (``protocol: layer2``, the
  repository's own example with its 192.168.1.240-250 range rewritten to 198.51.100.240-250)
  and two Services share one L2 IP through the ``metallb.universe.tf/address-pool`` and
  ``allow-shared-ip`` annotations; r1 resolves the IP to the owning node; that node fails
  and the client sees who answers after the sidecars' failover.

Everything is torn down at the end (``--keep`` waits for Enter first). The e2e test
(tests/e2e/test_demo.py) runs the same code and asserts every step.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog
import yaml

from lab.binaries import find_tools
from lab.cluster import images
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump, load_balancer
from lab.nsnet import in_netns
from lab.runner import Lab
from lab.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "containerlab" / "k8s-bgp" / "k8s-bgp.clab.yml"
CHART = REPO / "charts" / "exalb"
LEGACY_L2_EXAMPLE = REPO / "examples" / "legacy" / "layer2-ranges.yaml"
BIN = Path(sys.executable).parent
NODE_NAMES = ("n1", "n2", "n3")
ROUTER, CLIENT, FAILING = "r1", "c", "n2"
CONFIG_NS, APP_NS, SERVICE = "metallb-system", "demo", "web"
POOL = "203.0.113.10-203.0.113.20"
#: The seed example's range, and where the lab puts it (on the nodes' LAN).
L2_FROM, L2_TO = "192.168.1.240-192.168.1.250", "198.51.100.240-198.51.100.250"
L2_SERVICES = ("web-l2-http", "web-l2-alt")
SHARING_KEY = "web-l2"


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
    install_to_route_s: float = 0.0
    plugin_outputs: list[str] = field(default_factory=list)
    l2_ip: str = ""
    l2_ips: list[str] = field(default_factory=list)
    l2_owner_before: str = ""
    l2_owner_after: str = ""
    l2_client_gap_s: float = 0.0
    l2_failed_requests: int = 0
    memory_mib: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class Progress:
    """``[3/11] helm install ......... 12.31 s``: one line per step; on a terminal the
    elapsed time ticks while the step runs."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out, self.total, self.n = out, total, 0
        self.tty = out.isatty()

    @contextlib.contextmanager
    def step(self, text: str, timings: dict[str, float]) -> Iterator[None]:
        self.n += 1
        label = f"[{self.n}/{self.total}] {text} ".ljust(60, ".")
        self.out.write(label)
        self.out.flush()
        start = time.monotonic()
        done = threading.Event()
        if self.tty:
            threading.Thread(target=self._tick, args=(label, start, done), daemon=True).start()
        try:
            yield
        except BaseException:
            done.set()
            self.out.write(" failed\n")
            raise
        done.set()
        took = time.monotonic() - start
        timings[text] = took
        self.out.write(f"{chr(13) + label if self.tty else ''} {took:6.2f} s\n")
        self.out.flush()

    def _tick(self, label: str, start: float, done: threading.Event) -> None:
        while not done.wait(0.5):
            self.out.write(f"\r{label} {time.monotonic() - start:6.1f} s")
            self.out.flush()


def http_get(lab: Lab, ip: str, port: int = 80, timeout: float = 2.0) -> str | None:
    """One GET from the client's namespace (a new connection); the body, or None."""
    with in_netns(lab.ns(CLIENT)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.split(b"\r\n\r\n", 1)[-1].decode().strip()
    except OSError:
        return None
    finally:
        sock.close()


def node_of(body: str | None) -> str | None:
    """``pod=web-1 node=n2`` -> ``n2``."""
    for word in (body or "").split():
        if word.startswith("node="):
            return word[5:]
    return None


def http_spread(lab: Lab, ip: str, n: int, port: int = 80) -> tuple[Counter[str], int]:
    """``n`` requests, each a new connection (new source port, so r1's layer-4 hash spreads
    them); answers per serving pod's node, and failures."""
    counts: Counter[str] = Counter()
    failed = 0
    for _ in range(n):
        node = node_of(http_get(lab, ip, port))
        if node is None:
            failed += 1
        else:
            counts[node] += 1
    return counts, failed


def bars(counts: Counter[str]) -> list[str]:
    width = max([*counts.values(), 1])
    return [
        f"    pod on {node}  {'#' * counts.get(node, 0):<{width}}  {counts.get(node, 0):3d}"
        " requests"
        for node in NODE_NAMES
    ]


def legacy_l2_config() -> dict[str, Any]:
    """The legacy ConfigMap: the repository's layer2 example (range moved onto the lab LAN),
    plus the BGP peer and the BGP pool the first part used (so its Service keeps its IP)."""
    example = yaml.safe_load(LEGACY_L2_EXAMPLE.read_text())
    pools = []
    for pool in example["address-pools"]:
        addresses = [L2_TO for a in pool["addresses"] if a == L2_FROM]
        pools.append({**pool, "addresses": addresses})
    return {
        "peers": [
            {"peer-address": "198.51.100.1", "peer-asn": 64500, "my-asn": 64501, "hold-time": "3s"}
        ],
        "address-pools": [{"name": "demo", "protocol": "bgp", "addresses": [POOL]}, *pools],
    }


class Demo:
    """Owns the lab run; :meth:`close` tears it down."""

    def __init__(self, out: TextIO, requests: int = 60) -> None:
        self.out = out
        self.requests = requests
        self.result = DemoResult()
        self.progress = Progress(out, 10)
        self.lab: Lab | None = None
        self.images: dict[str, images.Image] = {}

    @property
    def cluster(self) -> Cluster:
        assert self.lab is not None and self.lab.cluster is not None
        return self.lab.cluster

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, text: str) -> contextlib.AbstractContextManager[None]:
        return self.progress.step(text, self.result.timings)

    # ------------------------------------------------------------------ bring-up
    def start(self) -> None:
        with self.step("Images: exalb, backend, pause (scripts/image.sh)"):
            log = Path(os.environ.get("EXALB_DEMO_LOG", "/tmp/exalb-demo-images.log"))
            self.images = images.build(log=log)
        with self.step("Cluster k8s-bgp: control plane, n1..n3, r1, c"):
            self.lab = Lab.start(TOPOLOGY, run=f"demo-{uuid.uuid4().hex[:4]}")
            # hash on ports too, so one client's connections spread over the nodes
            self.lab.exec(ROUTER, ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])
        t0 = time.monotonic()
        with self.step("helm install exalb charts/exalb"):
            values = self.cluster.dir / "demo-values.yaml"
            values.write_text(yaml.safe_dump(self.values()))
            self.cluster.helm(
                "install", "exalb", str(CHART), "-n", CONFIG_NS, "--create-namespace",
                "-f", str(values),
            )  # fmt: skip
        with self.step("Backend Deployment (3 pods) + LoadBalancer Service"):
            image = self.images["backend"].ref
            self.cluster.apply(
                dump(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NS}},
                    backend_deployment(SERVICE, APP_NS, image, replicas=3),
                    load_balancer(SERVICE, APP_NS),
                )
            )
        with self.step("Controller assigns an IP; speakers announce"):
            ip = wait_for("an IP in status", lambda: self.ingress(SERVICE), 120, 0.2)
            self.result.service_ip = ip
            self.lab.wait_route(ROUTER, f"{ip}/32", timeout=120)
            self.result.install_to_route_s = time.monotonic() - t0
            route = self.lab.wait_route(ROUTER, f"{ip}/32", nexthops=3, timeout=120)
            self.result.nexthops_before = sorted(route.gateways)
            wait_for("pods answering", lambda: http_spread(self.lab_, ip, 6)[1] == 0, 60, 0.5)

    @property
    def lab_(self) -> Lab:
        assert self.lab is not None
        return self.lab

    def values(self) -> dict[str, Any]:
        exalb = self.images["exalb"]
        return {
            "image": {"repository": exalb.repository, "tag": exalb.tag, "pullPolicy": "Never"},
            # two controllers on two nodes: when the leader's node fails, the other one leads
            "controller": {
                "replicas": 2,
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {
                                    "matchLabels": {"app.kubernetes.io/component": "controller"}
                                },
                            }
                        ]
                    }
                },
            },
            "config": {
                "pools": [{"name": "demo", "spec": {"addresses": [POOL]}}],
                "peers": [
                    {
                        "name": ROUTER,
                        "spec": {
                            "myASN": 64501,
                            "peerASN": 64500,
                            "peerAddress": "198.51.100.1",
                            "holdTime": "3s",
                        },
                    }
                ],
                "bgpAdvertisements": [{"name": "demo", "spec": {"ipAddressPools": ["demo"]}}],
            },
        }

    def wait_ingress(self, name: str) -> str:
        return wait_for(f"{name}: an IP in status", lambda: self.ingress(name), 120, 0.2)

    def ingress(self, name: str) -> str | None:
        svc = self.cluster.get_json("svc", "-n", APP_NS, name)
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else None

    # ------------------------------------------------------------------ BGP
    def show_state(self, title: str) -> Counter[str]:
        ip = self.result.service_ip
        self.say(f"\n== {title}")
        self.show_cmd(
            "kubectl get svc -n demo web",
            self.cluster.kubectl("get", "svc", "-n", APP_NS, SERVICE).stdout,
        )
        shown = self.lab_.exec(ROUTER, ["ip", "route", "show", ip]).stdout
        self.show_cmd(
            f"ip route show {ip}      # in r1's namespace: the router's kernel FIB", shown
        )
        counts, failed = http_spread(self.lab_, ip, self.requests)
        self.say(
            f"  {self.requests} HTTP requests from the client c to http://{ip}/"
            " (one connection each):"
        )
        for line in bars(counts):
            self.say(line)
        if failed:
            self.say(f"    {failed} requests failed")
        self.result.failed_requests += failed
        return counts

    def show_cmd(self, command: str, output: str) -> None:
        self.say(f"  $ {command}")
        for line in output.rstrip().splitlines():
            self.say(f"    {line}")

    def kubectl_exalb(self, *args: str) -> None:
        """The real plugin through kubectl; speakers are reached through the pod proxy."""
        env = {**self.cluster.env(), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        proc = subprocess.run(
            [str(find_tools().kubectl), "exalb", *args], env=env, capture_output=True,
            text=True, check=False, timeout=60,
        )  # fmt: skip
        self.show_cmd(f"kubectl exalb {' '.join(args)}", proc.stdout + proc.stderr)
        self.result.plugin_outputs.append(proc.stdout)

    def fail_bgp_node(self) -> None:
        ip = self.result.service_ip
        self.say(f"\n== Node {FAILING} fails: kubelet and containerd stop, its link goes down")
        start = time.monotonic()
        self.cluster.nodes[FAILING].fail()
        route = self.lab_.wait_route(ROUTER, f"{ip}/32", nexthops=2, timeout=30)
        self.result.failover_ms = (time.monotonic() - start) * 1000
        self.result.nexthops_after = sorted(route.gateways)
        self.say(
            f"  r1 dropped {FAILING}'s path after {self.result.failover_ms:.0f} ms "
            "(BGP hold time 3 s: the session dies with the link)"
        )
        # kube-proxy forwards to ready endpoints only; n2's pod turns not-ready once the
        # node controller notices (node-monitor-grace-period), then no request goes to it
        wait_for(
            f"{FAILING}'s pod out of the endpoints",
            lambda: FAILING not in self.ready_endpoint_nodes(SERVICE),
            90,
            0.5,
        )

    def ready_endpoint_nodes(self, service: str) -> set[str]:
        slices = self.cluster.get_json(
            "endpointslices", "-n", APP_NS, "-l", f"kubernetes.io/service-name={service}"
        )
        return {
            e.get("nodeName", "")
            for s in slices["items"]
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        }

    def recover_node(self, name: str) -> None:
        with self.step(f"{name} comes back (link up, containerd, kubelet)"):
            self.cluster.nodes[name].recover()
            wait_for(f"{name} Ready", lambda: name in self.cluster.ready_nodes(), 120, 0.5)
            ip = self.result.service_ip
            self.lab_.wait_route(ROUTER, f"{ip}/32", nexthops=3, timeout=120)

    # ------------------------------------------------------------------ L2
    def l2(self) -> None:
        with self.step("Legacy ConfigMap (protocol: layer2), no CRD config"):
            self.cluster.helm(
                "upgrade", "exalb", str(CHART), "-n", CONFIG_NS, "--reuse-values",
                "--set-json", 'config={"pools":[],"peers":[],"bgpAdvertisements":[]}',
            )  # fmt: skip
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": CONFIG_NS},
                "data": {"config": yaml.safe_dump(legacy_l2_config(), sort_keys=False)},
            }
            self.cluster.apply(dump(cm))
        with self.step("Two Services share one L2 IP (annotations)"):
            annotations = {
                "metallb.universe.tf/address-pool": "default",
                "metallb.universe.tf/allow-shared-ip": SHARING_KEY,
            }
            self.cluster.apply(
                dump(
                    load_balancer(
                        L2_SERVICES[0],
                        APP_NS,
                        selector=SERVICE,
                        local=True,
                        annotations=annotations,
                        port=80,
                    ),
                    load_balancer(
                        L2_SERVICES[1],
                        APP_NS,
                        selector=SERVICE,
                        local=True,
                        annotations=annotations,
                        port=8080,
                    ),
                )
            )
            ips = [self.wait_ingress(s) for s in L2_SERVICES]
            self.result.l2_ips = ips
            self.result.l2_ip = ip = ips[0]
            wait_for("an L2 answer", lambda: http_get(self.lab_, ip, timeout=1.0), 60, 0.3)
        self.say(f"\n== L2: {', '.join(L2_SERVICES)} share {ip} (from the layer2 pool {L2_TO})")
        self.show_cmd(
            "kubectl get svc -n demo",
            self.cluster.kubectl("get", "svc", "-n", APP_NS).stdout,
        )
        owner = self.l2_owner(ip)
        self.result.l2_owner_before = owner
        self.show_cmd(f"ip neigh show {ip}      # in r1: the VIP resolves to {owner}'s MAC",
                      self.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout)  # fmt: skip
        self.kubectl_exalb("status", "-n", APP_NS)
        for port in (80, 8080):
            body = http_get(self.lab_, ip, port)
            self.say(f"  GET http://{ip}:{port}/ -> {body}")
        self.say(f"\n== The L2 owner {owner} fails (kubelet, containerd stop, link down)")
        self.l2_failover(ip, owner)

    def l2_owner(self, ip: str) -> str:
        """The node whose MAC r1 has for ``ip`` (by the node's eth1 MAC)."""
        neigh = self.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout.split()
        mac = neigh[neigh.index("lladdr") + 1] if "lladdr" in neigh else ""
        for node in NODE_NAMES:
            link = self.lab_.exec(node, ["cat", "/sys/class/net/eth1/address"], check=False)
            if link.stdout.strip() == mac:
                return node
        # sysfs follows the mount namespace: ask ip instead
        for node in NODE_NAMES:
            out = self.lab_.exec(node, ["ip", "-br", "link", "show", "eth1"]).stdout.split()
            if mac and mac in out:
                return node
        return "?"

    def l2_failover(self, ip: str, owner: str) -> None:
        answers: list[tuple[float, str | None]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                answers.append((time.monotonic(), node_of(http_get(self.lab_, ip, timeout=0.3))))
                stop.wait(0.05)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        wait_for("client answers", lambda: len(answers) > 3, 10)
        t_fail = time.monotonic()
        self.cluster.nodes[owner].fail()

        def moved() -> bool:
            after = [n for t, n in answers if t > t_fail]
            return len(after) >= 5 and all(n not in (None, owner) for n in after[-5:])

        try:
            wait_for("answers from another node", moved, 30, 0.1)
        finally:
            stop.set()
            thread.join(5)
        after = [(t, n) for t, n in answers if t > t_fail]
        first_ok = next(t for t, n in after if n not in (None, owner))
        new = next(n for t, n in after if n not in (None, owner))
        self.result.l2_owner_after = new or ""
        self.result.l2_client_gap_s = first_ok - t_fail
        self.result.l2_failed_requests = sum(1 for _, n in after if n is None)
        self.say(
            f"  client (a request every 50 ms): {self.result.l2_failed_requests} failed, "
            f"answers from {new} after {self.result.l2_client_gap_s * 1000:.0f} ms"
        )
        self.show_cmd(f"ip neigh show {ip}      # in r1: now {new}'s MAC",
                      self.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout)  # fmt: skip

    # ------------------------------------------------------------------ the show
    def run(self) -> DemoResult:
        self.say(
            "exalb demo: a real Kubernetes cluster in network namespaces, exalb installed"
            " with helm\n"
        )
        self.start()
        self.say(f"  helm install -> first route at r1: {self.result.install_to_route_s:.1f} s")
        self.result.spread_before = dict(
            self.show_state(
                "BGP: Service demo/web, one IP announced by all three nodes, ECMP at r1"
            )
        )
        self.say("\n== What exalb says about it")
        self.kubectl_exalb("status", "-n", APP_NS)
        self.kubectl_exalb("routes")
        self.fail_bgp_node()
        self.result.spread_after = dict(
            self.show_state("After the failure: two paths left, pods on n1 and n3 serve")
        )
        self.kubectl_exalb("why", f"{APP_NS}/{SERVICE}")
        self.say("")
        self.recover_node(FAILING)
        self.result.memory_mib = self.cluster.memory()
        self.l2()
        return self.result

    def diagnose(self, path: Path) -> None:
        """After a failure: what the cluster looked like, for the log (the run is removed)."""
        if self.lab is None or self.lab.cluster is None:
            return
        with path.open("w") as f:
            for args in (
                ("get", "nodes,pods,svc,endpointslices", "-A", "-o", "wide"),
                ("get", "events", "-A", "--sort-by=.lastTimestamp"),
                ("logs", "-n", CONFIG_NS, "deploy/exalb-controller", "--tail=100"),
                ("logs", "-n", CONFIG_NS, "ds/exalb-speaker", "-c", "speaker", "--tail=100"),
            ):
                proc = self.cluster.kubectl(*args, check=False, timeout=30)
                f.write(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        self.say(f"(cluster state at the failure: {path})")

    def close(self) -> None:
        if self.lab is not None:
            try:
                self.lab.down()
            except Exception as exc:  # say it, never hide the original error
                self.say(f"teardown failed: {exc}")


def memory_lines(memory: dict[str, dict[str, float]]) -> list[str]:
    out = []
    for node, parts in memory.items():
        total = sum(parts.values())
        detail = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
        out.append(f"  {node}: {total:.0f} MiB RSS ({detail})")
    return out


def quiet_logs() -> None:
    """The demo prints its own story; library chatter below warnings would drown it."""
    logging.getLogger().setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/lab demo", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep it running until Enter is pressed")
    p.add_argument("--requests", type=int, default=60)
    args = p.parse_args(argv)
    out = out or sys.stdout
    quiet_logs()
    if os.geteuid() != 0:
        out.write("the lab demo needs root (network namespaces)\n")
        return 2
    demo = Demo(out, args.requests)
    try:
        try:
            result = demo.run()
        except Exception:
            demo.diagnose(
                Path(os.environ.get("EXALB_DEMO_FAILURE_LOG", "/tmp/exalb-demo-failure.log"))
            )
            raise
        demo.say(
            f"\nDone. BGP: {result.service_ip} served by pods on "
            f"{', '.join(sorted(result.spread_before))}; after {FAILING} failed, on "
            f"{', '.join(sorted(result.spread_after))}. L2: {result.l2_ip} moved from "
            f"{result.l2_owner_before} to {result.l2_owner_after}."
        )
        demo.say("Memory per node (after the BGP part):")
        for line in memory_lines(result.memory_mib):
            demo.say(line)
        if args.keep and demo.lab is not None:
            demo.say(
                f"\nKept running (run {demo.lab.run}). In another shell:\n"
                f"  scripts/lab kubectl --run {demo.lab.run} -- get pods -A -o wide\n"
                f"  scripts/lab vtysh --run {demo.lab.run} r1 -- show ip route\n"
                "Press Enter to tear everything down."
            )
            with contextlib.suppress(EOFError):
                input()
    finally:
        demo.say("Tearing down ...")
        demo.close()
    return 0


def in_range(ip: str, rng: str) -> bool:
    """``ip`` lies in ``first-last``."""
    first, last = (int(ipaddress.ip_address(x)) for x in rng.split("-"))
    return first <= int(ipaddress.ip_address(ip)) <= last
