"""Config files of the node programs (containerd, CNI, kubelet, kube-proxy). Pure: paths
and addresses in, text out.

Each setting here is one that running several nodes on one machine, inside network
namespaces, needs (docs/lab.md, "Real kubelet nodes", has the failures behind them):

* containerd: its own root, state, socket and CNI config per node; ``restrict_oom_score_adj``
  (the machine's bounding set lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj);
  no AppArmor; pod network namespaces mounted under its own state directory; runc state
  under the node's directory (so teardown finds it); the pause image built here.
* CNI: Debian's ``bridge`` (gateway, hairpin, masquerade of pod traffic leaving the node, so
  the router and the control plane need no routes to pod ranges) + ``host-local`` with a
  per-node data directory + ``portmap``.
* kubelet: ``cgroupfs`` driver under a per-node ``cgroupRoot`` (else one kubelet's cleanup
  removes another node's pods), cgroup v1 allowed, swap allowed, ``oomScoreAdj: 0``, no
  read-only port, client-certificate + webhook authn/z, no DNS (nothing here resolves
  names, and a pod must never reach the host's resolver), image GC off (the images cannot
  be pulled again).
* kube-proxy: iptables mode, conntrack settings 0 so it touches no global sysctl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

CNI_BIN_DIR = "/usr/lib/cni"


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its files. ``data`` is on disk (images), ``state`` in /run."""

    data: Path
    state: Path

    @property
    def containerd_root(self) -> Path:
        return self.data / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.state / "containerd.toml"

    @property
    def runc_root(self) -> Path:
        return self.state / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni"

    @property
    def cni_data_dir(self) -> Path:
        return self.state / "cni-ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.data / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.state / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.state / "kubelet.kubeconfig"

    @property
    def kubelet_certs(self) -> Path:
        return self.state / "kubelet-pki"

    @property
    def pod_logs(self) -> Path:
        return self.data / "pod-logs"

    @property
    def kube_proxy_config(self) -> Path:
        return self.state / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.state / "kube-proxy.kubeconfig"


def containerd_toml(paths: NodePaths, sandbox_image: str) -> str:
    """containerd 1.6 config (version 2) for one node."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[debug]
  address = "{paths.containerd_socket}.debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd_root}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{paths.runc_root}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{paths.cni_conf_dir}"
"""


def cni_conflist(name: str, pod_cidr: str, gateway: str, data_dir: Path) -> str:
    """The node's pod network: one bridge with the node's pod range."""
    conf = {
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_yaml(
    paths: NodePaths, *, node_ip: str, cgroup_root: str, ca_file: Path, cert: Path, key: Path
) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "podLogsDir": str(paths.pod_logs),
        "resolvConf": "",
        "clusterDNS": [],
        "maxPods": 30,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "staticPodPath": "",
        "logging": {"verbosity": 1},
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_yaml(*, kubeconfig: Path, node: str, cluster_cidr: str) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node,
        "clusterCIDR": cluster_cidr,
        "mode": "iptables",
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubeconfig_yaml(*, server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": user, "context": {"cluster": "lab", "user": user}}],
        "current-context": user,
    }
    return yaml.safe_dump(config, sort_keys=False)
