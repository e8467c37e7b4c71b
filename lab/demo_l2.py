"""The demo's L2 part: the legacy MetalLB ConfigMap (``protocol: layer2``), two Services
sharing one L2 IP by annotations, and a failover of the owning node seen from the client.

The config is the repository's own example (``examples/legacy/layer2-ranges.yaml``) with its
``192.168.1.240-192.168.1.250`` range rewritten into the nodes' LAN, as a user would.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import yaml

from lab.cluster.workloads import dump, load_balancer
from lab.demo_config import CHART, LEGACY_L2_EXAMPLE, POOL
from lab.demo_show import http_get, node_of
from lab.wait import wait_for

if TYPE_CHECKING:
    from lab.demo import Demo

from lab.demo_config import (
    APP_NS,
    CONFIG_NS,
    L2_FROM,
    L2_SERVICES,
    L2_TO,
    NODE_NAMES,
    ROUTER,
    SERVICE,
    SHARING_KEY,
)


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


class L2Part:
    """Runs after the BGP part, on the same cluster (see :mod:`lab.demo`)."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo

    def run(self) -> None:
        with self.demo.step("Legacy ConfigMap (protocol: layer2), no CRD config"):
            self.demo.cluster.helm(
                "upgrade", "exalb", str(CHART), "-n", CONFIG_NS, "--reuse-values",
                "--set-json", 'config={"pools":[],"peers":[],"bgpAdvertisements":[]}',
            )  # fmt: skip
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": CONFIG_NS},
                "data": {"config": yaml.safe_dump(legacy_l2_config(), sort_keys=False)},
            }
            self.demo.cluster.apply(dump(cm))
        with self.demo.step("Two Services share one L2 IP (annotations)"):
            annotations = {
                "metallb.universe.tf/address-pool": "default",
                "metallb.universe.tf/allow-shared-ip": SHARING_KEY,
            }
            self.demo.cluster.apply(
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
            ips = [self.demo.wait_ingress(s) for s in L2_SERVICES]
            self.demo.result.l2_ips = ips
            self.demo.result.l2_ip = ip = ips[0]
            wait_for("an L2 answer", lambda: http_get(self.demo.lab_, ip, timeout=1.0), 60, 0.3)
        self.demo.say(
            f"\n== L2: {', '.join(L2_SERVICES)} share {ip} (from the layer2 pool {L2_TO})"
        )
        self.demo.show_cmd(
            "kubectl get svc -n demo",
            self.demo.cluster.kubectl("get", "svc", "-n", APP_NS).stdout,
        )
        owner = self.owner(ip)
        self.demo.result.l2_owner_before = owner
        self.demo.show_cmd(f"ip neigh show {ip}      # in r1: the VIP resolves to {owner}'s MAC",
                      self.demo.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout)  # fmt: skip
        self.demo.kubectl_exalb("status", "-n", APP_NS)
        for port in (80, 8080):
            body = http_get(self.demo.lab_, ip, port)
            self.demo.say(f"  GET http://{ip}:{port}/ -> {body}")
        self.demo.say(f"\n== The L2 owner {owner} fails (kubelet, containerd stop, link down)")
        self.failover(ip, owner)

    def owner(self, ip: str) -> str:
        """The node whose MAC r1 has for ``ip`` (by the node's eth1 MAC)."""
        neigh = self.demo.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout.split()
        mac = neigh[neigh.index("lladdr") + 1] if "lladdr" in neigh else ""
        for node in NODE_NAMES:
            link = self.demo.lab_.exec(node, ["cat", "/sys/class/net/eth1/address"], check=False)
            if link.stdout.strip() == mac:
                return node
        # sysfs follows the mount namespace: ask ip instead
        for node in NODE_NAMES:
            out = self.demo.lab_.exec(node, ["ip", "-br", "link", "show", "eth1"]).stdout.split()
            if mac and mac in out:
                return node
        return "?"

    def failover(self, ip: str, owner: str) -> None:
        answers: list[tuple[float, str | None]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                answers.append(
                    (time.monotonic(), node_of(http_get(self.demo.lab_, ip, timeout=0.3)))
                )
                stop.wait(0.05)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        wait_for("client answers", lambda: len(answers) > 3, 10)
        t_fail = time.monotonic()
        self.demo.cluster.nodes[owner].fail()

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
        self.demo.result.l2_owner_after = new or ""
        self.demo.result.l2_client_gap_s = first_ok - t_fail
        self.demo.result.l2_failed_requests = sum(1 for _, n in after if n is None)
        self.demo.say(
            f"  client (a request every 50 ms): {self.demo.result.l2_failed_requests} failed, "
            f"answers from {new} after {self.demo.result.l2_client_gap_s * 1000:.0f} ms"
        )
        self.demo.show_cmd(f"ip neigh show {ip}      # in r1: now {new}'s MAC",
                      self.demo.lab_.exec(ROUTER, ["ip", "neigh", "show", ip]).stdout)  # fmt: skip
