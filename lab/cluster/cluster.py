"""``Cluster``: the Kubernetes side of a lab run whose topology has a ``controlplane`` node.

The runner (:class:`lab.runner.Lab`) starts it after the links and FRR are up; its processes
and everything it creates outside the namespaces are recorded in the run state first, so the
ordinary teardown (also ``scripts/lab down`` from another process) removes them.

Bring-up: images (``scripts/image.sh``, cached), certificates, etcd + apiserver in the
control-plane namespace, a host loopback relay to the apiserver and an admin kubeconfig
naming it, controller-manager + scheduler, then on every node containerd (images imported),
kubelet and kube-proxy; ready when every node is Ready.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab.binaries import find_controlplane_binaries, find_tools
from lab.cluster import hostguard, images
from lab.cluster.audit import AuditLog
from lab.cluster.configs import kubeconfig_yaml
from lab.cluster.control import ControlPlaneProcesses
from lab.cluster.node import DATA_ROOT, KubeNode
from lab.cluster.plan import APISERVER_PORT, ClusterPlan, plan_cluster
from lab.nsnet import HostRelay
from lab.pki import CertificateAuthority
from lab.wait import wait_for

if TYPE_CHECKING:
    from lab.runner import Lab

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.plan: ClusterPlan = plan_cluster(lab.topology)
        self.dir = lab.directory / "cluster"
        self.images: dict[str, images.Image] = {}
        self.nodes: dict[str, KubeNode] = {}
        self.relay: HostRelay | None = None
        self.timings: dict[str, float] = {}
        self.kubeconfig = self.dir / "admin.kubeconfig"
        # service accounts' writes (lab.cluster.audit), logged by the apiserver
        self.audit = AuditLog(lab.node_dir(self.plan.controlplane) / "audit.log")

    # --- bring-up ------------------------------------------------------------------------
    def start(self) -> None:
        lab, run = self.lab, self.lab.run
        self.dir.mkdir(exist_ok=True)
        with self._timed("images"):
            self.images = images.build(log=self.dir / "images.log")
        bin_dir = find_controlplane_binaries().kube_apiserver.parent
        data = DATA_ROOT / run
        lab.state.add_path(data)  # recorded before it exists
        data.mkdir(parents=True, exist_ok=True)
        lab.state.join_host_guard()
        hostguard.acquire(run)
        with self._timed("certificates"):
            pki = CertificateAuthority(self.dir / "pki")
            admin = pki.client("admin", "admin", "system:masters")
            proxy = pki.client("kube-proxy", "system:kube-proxy")
        cp = ControlPlaneProcesses(lab, self.plan, pki, bin_dir)
        with self._timed("control plane"):
            cp.start_etcd()
            cp.start_apiserver()
            self.relay = HostRelay(lab.ns(self.plan.controlplane), APISERVER_PORT)
            self.kubeconfig.write_text(
                kubeconfig_yaml(server=f"https://127.0.0.1:{self.relay.port}", ca=pki.ca.cert,
                                cert=admin.cert, key=admin.key, user="admin")
            )  # fmt: skip
            wait_for("kube-apiserver /readyz", self._apiserver_ready, 90, 0.2)
            cp.start_controllers()
        self.nodes = {n.name: KubeNode(lab, self.plan, n, bin_dir) for n in self.plan.nodes}
        archives = [self.images[n].archive for n in ("pause", "exalb", "backend")]
        with self._timed("nodes: containerd + images"):
            for node in self.nodes.values():
                node.prepare(pki, self.images["pause"].ref, proxy)
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda n: (n.start_containerd(), n.import_images(archives)),
                              self.nodes.values()))  # fmt: skip
        with self._timed("nodes: kubelet + kube-proxy, Ready"):
            for node in self.nodes.values():
                node.start_kubelet()
                node.start_kube_proxy()
            wait_for("every node Ready", self._nodes_ready, 120, 0.5)

    def add_images(self, *names: str) -> dict[str, images.Image]:
        """Images beyond the default three (e.g. ``metallb``): built (or found in the cache) by
        image.sh and imported into every node's containerd, for pods started later."""
        built = images.build(names, log=self.dir / "images.log")
        with ThreadPoolExecutor(len(self.nodes) or 1) as pool:
            list(pool.map(lambda n: n.import_images([i.archive for i in built.values()]),
                          self.nodes.values()))  # fmt: skip
        self.images.update(built)
        return built

    @classmethod
    def attach(cls, lab: Lab) -> Cluster:
        """A handle on a running cluster of another process: a new relay, and the admin
        kubeconfig rewritten to name it."""
        cluster = cls(lab)
        cluster.relay = HostRelay(lab.ns(cluster.plan.controlplane), APISERVER_PORT)
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{cluster.relay.port}"
        cluster.kubeconfig = cluster.dir / f"admin-{os.getpid()}.kubeconfig"
        cluster.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        return cluster

    def _timed(self, what: str) -> _Timer:
        return _Timer(self.timings, what)

    def close(self) -> None:
        """The host-side relay; the processes and files go with the lab's teardown."""
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.kubeconfig.name != "admin.kubeconfig":  # an attached handle's own copy
            self.kubeconfig.unlink(missing_ok=True)

    # --- tools -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        helm_home = self.dir / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._tool(str(find_tools().kubectl), args, check, input, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._tool(str(find_tools().helm), args, check, None, timeout)

    def _tool(
        self, exe: str, args: tuple[str, ...], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [exe, *args], env=self.env(), capture_output=True, text=True, input=input,
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{Path(exe).name} {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    # --- state -----------------------------------------------------------------------------
    def _apiserver_ready(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def ready_nodes(self) -> set[str]:
        items = self.get_json("nodes")["items"]
        return {
            n["metadata"]["name"]
            for n in items
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in n.get("status", {}).get("conditions", []))
        }  # fmt: skip

    def _nodes_ready(self) -> bool:
        return self.ready_nodes() >= set(self.nodes)

    def memory(self) -> dict[str, dict[str, float]]:
        return {name: node.rss_mib() for name, node in self.nodes.items()}


class _Timer:
    def __init__(self, timings: dict[str, float], what: str) -> None:
        self.timings, self.what = timings, what

    def __enter__(self) -> None:
        self.start = time.monotonic()
        log.info("cluster: %s ...", self.what)

    def __exit__(self, *exc: object) -> None:
        self.timings[self.what] = time.monotonic() - self.start
