"""Real speakers in L2 mode on the L2 lab, against a real kube-apiserver.

The namespaces are ``containerlab/l2-segment/``'s, run by the one runner (see
:mod:`tests.lab.l2_lab`: a bridge in the switch node, nodes n1..n3 at 198.51.100.11-13 and
2001:db8:50::11-13, a client at .20); per node namespace two processes run, as two
containers of a speaker pod would:

* ``exalb-speaker --l2-state <node dir>/l2-state.json`` (no ExaBGP: L2 must not depend on
  it; ``--no-validate`` so nothing calls ``exabgp``), reaching the apiserver through
  :class:`~lab.nsnet.ApiRelay`, HTTP on 127.0.0.1:7474 inside the namespace;
* ``exalb-garp --state <the same file>`` (the lab's own sidecar launcher).

Kubernetes objects: an IPAddressPool 198.51.100.48/28 + 2001:db8:50::50/124, an
L2Advertisement selecting nodes by the label ``exalb.test/l2=on``, Nodes n1..n3 (that label,
InternalIP = their segment addresses), and per test a Service with
``status.loadBalancer.ingress`` set directly (what the controller would write) and its
EndpointSlice. Processes are recorded and stopped by PID, namespaces and API objects are
removed, pass or fail (:func:`l2_speaker_lab`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from lab.controlplane import ControlPlane
from lab.nsnet import ApiRelay, http_get
from lab.runner import Lab, new_run_name
from lab.topology import topology_path
from lab.wait import wait_for
from tests.lab.api_objects import Cluster, pool
from tests.lab.l2_lab import NODE_IP4, NODE_IP6, NODES, TOPOLOGY_NAME, L2Lab, open_l2
from tests.lab.speaker_lab import SPEAKER, NodeNet

SPEAKER_PORT = 7474  # the sidecar's metrics listen on 7473 (0.0.0.0) in the same namespace
STATUS_PORT = 7475  # the speaker's /status: loopback only, read from inside the namespace
L2_LABEL = "exalb.test/l2"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
POOL4 = "198.51.100.48/28"
POOL6 = "2001:db8:50::50/124"


def metallb_ranking(ip: str, nodes: tuple[str, ...] = NODES) -> list[str]:
    """MetalLB's L2 order, computed here independently of the product."""
    return sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def l2_advertisement(name: str, pools: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name},
        "spec": {
            "ipAddressPools": pools,
            "nodeSelectors": [{"matchLabels": {L2_LABEL: "on"}}],
        },
    }


class L2SpeakerLab:
    def __init__(self, l2: L2Lab, cp: ControlPlane, cluster: Cluster) -> None:
        self.lab = l2
        self.cp = cp
        self.cluster = cluster
        self.relay = ApiRelay(cp.apiserver_port, [l2.lab.ns(n) for n in NODES])
        self.speakers: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes ------------------------------------------------------------------------
    def start_speaker(self, n: str) -> None:
        node_dir = self.lab.lab.node_dir(n)
        argv = [
            SPEAKER,
            "--node-name", n,
            "--kubeconfig", str(self.cp.kubeconfig),
            "--namespace", self.cluster.config_ns,
            "--exabgp-socket", str(node_dir / "exabgp.sock"),
            "--exabgp-config", str(node_dir / "exabgp.conf"),
            "--no-validate",
            "--metrics-addr", f"127.0.0.1:{SPEAKER_PORT}",
            "--status-addr", f"127.0.0.1:{STATUS_PORT}",
            "--l2-state", str(self.lab.state_path(n)),
        ]  # fmt: skip
        self.speakers[n] = self.lab.lab.popen(n, argv, name="speaker")

    def kill_speakers(self) -> None:
        for n, proc in self.speakers.items():
            if proc.poll() is None:
                self.lab.lab.stop_process(n, proc, first=signal.SIGKILL)

    # -- Kubernetes -------------------------------------------------------------------------
    def patch_node(self, n: str, patch: dict[str, Any], status: bool = False) -> None:
        path = f"/api/v1/nodes/{n}" + ("/status" if status else "")
        resp = self.cp.api("PATCH", path, patch, content_type="application/merge-patch+json")
        assert resp.ok, f"PATCH {path}: {resp.status} {resp.message}"

    def set_labels(self, n: str, **labels: str | None) -> None:
        self.patch_node(n, {"metadata": {"labels": labels}})

    def set_network_unavailable(self, n: str, unavailable: bool) -> None:
        cond = {
            "type": "NetworkUnavailable",
            "status": "True" if unavailable else "False",
            "reason": "ExalbTest",
            "message": "set by the L2 speaker lab",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }
        self.patch_node(n, {"status": {"conditions": [cond]}}, status=True)

    def events(self, service: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{self.cluster.app_ns}/events"
        items = self.cp.api("GET", path).body.get("items", [])
        return [e for e in items if e.get("involvedObject", {}).get("name") == service]

    # -- observation ------------------------------------------------------------------------
    def status(self, n: str) -> dict[str, Any]:
        code, body = http_get(self.lab.lab.ns(n), STATUS_PORT, "/status")
        assert code == 200, body
        return dict(json.loads(body))

    def try_status(self, n: str) -> dict[str, Any] | None:
        try:
            return self.status(n)
        except (OSError, AssertionError, ValueError):
            return None

    def l2_generation(self, n: str) -> int | None:
        st = self.try_status(n)
        return None if st is None else st["l2"]["generation"]

    def l2_ip(self, n: str, ip: str) -> dict[str, Any] | None:
        st = self.try_status(n)
        if st is None:
            return None
        return next((x for x in st["l2"]["ips"] if x["ip"] == ip), None)

    def metric(self, n: str, name: str, **labels: str) -> float | None:
        _, body = http_get(self.lab.lab.ns(n), SPEAKER_PORT, "/metrics")
        for line in body.decode().splitlines():
            head, _, value = line.rpartition(" ")
            metric, _, labelstr = head.partition("{")
            if metric == name and all(f'{k}="{v}"' in labelstr for k, v in labels.items()):
                return float(value)
        return None

    def logs(self, n: str, tail: int = 30) -> str:
        out = []
        for what in ("speaker", "garp"):
            path = self.lab.lab.node_dir(n) / f"{what}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()
                # no ExaBGP here on purpose: its reconnect attempts are noise
                lines = [x for x in text if "bridge_connect_failed" not in x][-tail:]
                out.append(f"--- {n} {what}\n" + "\n".join(lines))
        return "\n".join(out)

    def all_logs(self) -> str:
        return "\n".join(self.logs(n) for n in NODES)

    def close(self) -> None:
        self.relay.close()


@contextlib.contextmanager
def l2_speaker_lab(cp: ControlPlane) -> Iterator[L2SpeakerLab]:
    """Namespaces, config, Nodes, three sidecars and three speakers; all removed on exit."""
    with Lab.up(topology_path(TOPOLOGY_NAME), new_run_name()) as lab:
        cluster: Cluster | None = None
        env: L2SpeakerLab | None = None
        try:
            l2 = open_l2(lab, start=False)
            cluster = Cluster(cp)
            cluster.apply_config(pool("l2", [POOL4, POOL6]), l2_advertisement("l2", ["l2"]))
            for n in NODES:
                net = NodeNet(n, 0, str(NODE_IP4[n]), "", str(NODE_IP6[n]), "")
                cluster.node(net, labels={L2_LABEL: "on"})
            env = L2SpeakerLab(l2, cp, cluster)
            for n in NODES:
                l2.start_sidecar(n)
                env.start_speaker(n)
            try:  # every speaker synced and wrote its (empty) first state
                for n in NODES:
                    wait_for(f"{n} first L2 state", functools.partial(env.l2_generation, n), 30)
            except TimeoutError:
                raise AssertionError(f"speakers did not start:\n{env.all_logs()}") from None
            yield env
        finally:
            if env is not None:
                env.kill_speakers()  # first: they must not react to the cleanup
                env.close()
            if cluster is not None:
                cluster.cleanup()
