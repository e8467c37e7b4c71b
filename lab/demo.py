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
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog
import yaml

from lab.binaries import find_tools
from lab.cluster import images
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump, load_balancer
from lab.demo_config import (
    APP_NS,
    BIN,
    CHART,
    CONFIG_NS,
    FAILING,
    POOL,
    ROUTER,
    SERVICE,
    TOPOLOGY,
)
from lab.demo_l2 import L2Part
from lab.demo_show import Progress, bars, http_spread
from lab.runner import Lab
from lab.wait import wait_for


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
        """The real plugin through kubectl; speakers are reached through a port-forward by
        the API server (their /status is on the node's loopback only)."""
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
        L2Part(self).run()
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
            except Exception as exc:  # noqa: BLE001 (say it, never hide the original error)
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
