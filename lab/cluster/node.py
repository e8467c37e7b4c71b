"""One Kubernetes node: containerd + kubelet + kube-proxy in a lab node's network namespace.

Each node has its own containerd (root on disk, state and socket in the run directory), its
own kubelet root, certificates and cgroup root, and a kube-proxy; they are started with
``nsenter --net`` (network namespace only; see :func:`lab.netns.nsenter`). :meth:`fail`
and :meth:`recover` stop and restart them for failure tests.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from lab import netns
from lab.cluster import cleanup, images
from lab.cluster.configs import (
    NodePaths,
    cni_conflist,
    containerd_toml,
    kube_proxy_yaml,
    kubeconfig_yaml,
    kubelet_yaml,
)
from lab.cluster.plan import ClusterPlan, NodePlan
from lab.pki import CertificateAuthority, KeyPair
from lab.wait import wait_for

if TYPE_CHECKING:
    from lab.runner import Lab

DATA_ROOT = Path("/var/lib/exalb-lab")


class KubeNode:
    def __init__(self, lab: Lab, plan: ClusterPlan, node: NodePlan, bin_dir: Path) -> None:
        self.lab, self.plan, self.node, self.bin = lab, plan, node, bin_dir
        self.name = node.name
        self.paths = NodePaths(DATA_ROOT / lab.run / node.name, lab.node_dir(node.name) / "k8s")
        self.cgroup_root = f"exalb-{lab.run}-{node.name}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- preparation (before any program starts) ---------------------------------------
    def prepare(self, pki: CertificateAuthority, sandbox_image: str, proxy_pair: KeyPair) -> None:
        p = self.paths
        for d in (p.data, p.state, p.cni_conf_dir, p.cni_data_dir, p.kubelet_certs, p.pod_logs):
            d.mkdir(parents=True, exist_ok=True)
        self.lab.state.add_cgroup(self.cgroup_root)  # recorded before it exists
        cleanup.create_cgroup_root(self.cgroup_root)
        p.containerd_config.write_text(containerd_toml(p, sandbox_image))
        (p.cni_conf_dir / "10-lab.conflist").write_text(
            cni_conflist("lab", str(self.node.pod_cidr), str(self.node.pod_gateway), p.cni_data_dir)
        )
        client = pki.client(f"node-{self.name}", f"system:node:{self.name}", "system:nodes")
        serving = pki.serving(f"kubelet-{self.name}", self.name, [str(self.node.ip)], [self.name])
        p.kubelet_kubeconfig.write_text(
            kubeconfig_yaml(server=self.plan.apiserver_url, ca=pki.ca.cert, cert=client.cert,
                            key=client.key, user=f"system:node:{self.name}")
        )  # fmt: skip
        p.kubelet_config.write_text(
            kubelet_yaml(p, node_ip=str(self.node.ip), cgroup_root=f"/{self.cgroup_root}",
                         ca_file=pki.ca.cert, cert=serving.cert, key=serving.key)
        )  # fmt: skip
        p.kube_proxy_kubeconfig.write_text(
            kubeconfig_yaml(server=self.plan.apiserver_url, ca=pki.ca.cert, cert=proxy_pair.cert,
                            key=proxy_pair.key, user="system:kube-proxy")
        )  # fmt: skip
        # written once: kube-proxy exits when its config file changes under it
        p.kube_proxy_config.write_text(
            kube_proxy_yaml(kubeconfig=p.kube_proxy_kubeconfig, node=self.name,
                            cluster_cidr=str(self.plan.cluster_cidr))
        )  # fmt: skip

    # --- programs ------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        self.procs[name] = self.lab.popen(self.name, argv, name=name, network_only=True)

    def start_containerd(self) -> None:
        self._start("containerd", ["containerd", "--config", str(self.paths.containerd_config)])
        wait_for(f"{self.name}: containerd", self._containerd_up, 30, 0.1)

    def _containerd_up(self) -> bool:
        proc = self.procs["containerd"]
        if proc.poll() is not None:
            raise RuntimeError(f"{self.name}: containerd exited {proc.returncode}")
        if not self.paths.containerd_socket.exists():
            return False
        argv = ["ctr", "--address", str(self.paths.containerd_socket), "version"]
        return netns.run(argv, check=False, timeout=10).returncode == 0

    def import_images(self, archives: list[Path]) -> None:
        for archive in archives:
            argv = images.import_argv(self.paths.containerd_socket, archive)
            netns.run(argv, timeout=600)

    def start_kubelet(self) -> None:
        self._start("kubelet", [
            str(self.bin / "kubelet"), f"--config={self.paths.kubelet_config}",
            f"--kubeconfig={self.paths.kubelet_kubeconfig}",
            f"--root-dir={self.paths.kubelet_root}", f"--cert-dir={self.paths.kubelet_certs}",
            f"--hostname-override={self.name}", f"--node-ip={self.node.ip}",
        ])  # fmt: skip

    def start_kube_proxy(self) -> None:
        self._start(
            "kube-proxy", [str(self.bin / "kube-proxy"), f"--config={self.paths.kube_proxy_config}"]
        )

    # --- failures ------------------------------------------------------------------------
    def fail(self, interface: str = "eth1") -> None:
        """The node dies as far as the cluster can tell: kubelet, kube-proxy and containerd
        stop (SIGKILL) and its link goes down. Its pods' processes are left as they are."""
        self.lab.exec(self.name, ["ip", "link", "set", interface, "down"])
        for name in ("kubelet", "kube-proxy", "containerd"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                self.lab.stop_process(self.name, proc, grace=0.0)

    def recover(self, interface: str = "eth1") -> None:
        """Link up, routes back, programs started again (containerd finds its shims)."""
        self.lab.exec(self.name, ["ip", "link", "set", interface, "up"])
        # the kernel dropped the node's routes through that link when it went down
        for command in self.lab.topology.node(self.name).exec:
            words = shlex.split(command)
            if words[:2] == ["ip", "route"]:
                self.lab.exec(self.name, words, check=False)
        self.start_containerd()
        self.start_kubelet()
        self.start_kube_proxy()

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of the node's programs and its pods' processes, MiB."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            out[name] = _rss(proc.pid)
        in_ns = set(netns.pids(self.lab.ns(self.name))) - {p.pid for p in self.procs.values()}
        out["shims and host-network pods"] = sum(_rss(p) for p in in_ns)
        out["pods"] = sum(_rss(p) for p in cleanup.cgroup_pids(self.cgroup_root) - in_ns)
        return out


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
