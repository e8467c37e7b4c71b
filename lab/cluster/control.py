"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the control-plane node's
network namespace.

Everything listens inside that namespace: etcd on its loopback, the apiserver on all its
addresses (nodes reach it over the topology's links, the host through a loopback relay);
controller-manager and scheduler talk to the apiserver on the namespace's loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lab.cluster.audit import policy_yaml
from lab.cluster.configs import kubeconfig_yaml
from lab.cluster.plan import APISERVER_PORT, ClusterPlan
from lab.pki import CertificateAuthority

if TYPE_CHECKING:
    from lab.runner import Lab

LOCAL_API = f"https://127.0.0.1:{APISERVER_PORT}"


class ControlPlaneProcesses:
    def __init__(
        self, lab: Lab, plan: ClusterPlan, pki: CertificateAuthority, bin_dir: Path
    ) -> None:
        self.lab, self.plan, self.pki, self.bin = lab, plan, pki, bin_dir
        self.dir = lab.node_dir(plan.controlplane)

    def _kubeconfig(self, name: str, cn: str) -> Path:
        pair = self.pki.client(name, cn)
        path = self.dir / f"{name}.kubeconfig"
        path.write_text(
            kubeconfig_yaml(
                server=LOCAL_API, ca=self.pki.ca.cert, cert=pair.cert, key=pair.key, user=cn
            )
        )
        return path

    def _start(self, name: str, argv: list[str]) -> None:
        self.lab.popen(self.plan.controlplane, argv, name=name, network_only=True)

    def start_etcd(self) -> None:
        url, peer = "http://127.0.0.1:2379", "http://127.0.0.1:2380"
        self._start("etcd", [
            str(self.bin / "etcd"), "--name=lab", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync=true", "--log-level=warn",
        ])  # fmt: skip

    def start_apiserver(self) -> None:
        p, pki = self.plan, self.pki
        serving = pki.serving(
            "apiserver", "kube-apiserver",
            ips=["127.0.0.1", str(p.apiserver_ip), str(p.kubernetes_service_ip)],
            dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
        )  # fmt: skip
        kubelet_client = pki.client("apiserver-kubelet-client", "kube-apiserver", "system:masters")
        policy = self.dir / "audit-policy.yaml"
        policy.write_text(policy_yaml())
        self._start("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            "--bind-address=0.0.0.0", f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={p.apiserver_ip}",
            "--etcd-servers=http://127.0.0.1:2379",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={p.service_cidr}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true", "--profiling=false",
            # writes by service accounts (lab.cluster.audit): tests count what programs wrote
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
        ])  # fmt: skip

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def start_controllers(self) -> None:
        cm = self._kubeconfig("controller-manager", "system:kube-controller-manager")
        sched = self._kubeconfig("scheduler", "system:kube-scheduler")
        self._start("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={cm}",
            f"--authentication-kubeconfig={cm}", f"--authorization-kubeconfig={cm}",
            "--bind-address=127.0.0.1", "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca.cert}",
            f"--cluster-cidr={self.plan.cluster_cidr}",
            f"--service-cluster-ip-range={self.plan.service_cidr}",
            # a failed node's pods are marked not ready after this long (default 50 s)
            "--node-monitor-grace-period=20s", "--profiling=false",
        ])  # fmt: skip
        self._start("kube-scheduler", [
            str(self.bin / "kube-scheduler"), f"--kubeconfig={sched}",
            f"--authentication-kubeconfig={sched}", f"--authorization-kubeconfig={sched}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
        ])  # fmt: skip
