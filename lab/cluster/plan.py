"""What a topology asks of the cluster: addresses, CIDRs, which namespace runs what. Pure.

Facts come from the clab file: the ``controlplane`` node's first IPv4 address is the
apiserver's, its labels ``exalb.k8s.service-cidr`` and ``exalb.k8s.cluster-cidr`` give the
Service and pod ranges; each ``node``'s first IPv4 address is its node IP and its label
``exalb.k8s.pod-cidr`` its pod range (static, so the topology can route between nodes).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.topology import Node, Role, Topology

LABEL_SERVICE_CIDR = "exalb.k8s.service-cidr"
LABEL_CLUSTER_CIDR = "exalb.k8s.cluster-cidr"
LABEL_POD_CIDR = "exalb.k8s.pod-cidr"
APISERVER_PORT = 6443


class PlanError(ValueError):
    """The topology does not describe a cluster the lab can run; lists every reason."""


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network

    @property
    def pod_gateway(self) -> ipaddress.IPv4Address:
        return self.pod_cidr.network_address + 1


@dataclass(frozen=True)
class ClusterPlan:
    controlplane: str
    apiserver_ip: ipaddress.IPv4Address
    service_cidr: ipaddress.IPv4Network
    cluster_cidr: ipaddress.IPv4Network
    nodes: tuple[NodePlan, ...]

    @property
    def kubernetes_service_ip(self) -> ipaddress.IPv4Address:
        """The first Service IP, which the apiserver gives the ``kubernetes`` Service."""
        return self.service_cidr.network_address + 1

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.apiserver_ip}:{APISERVER_PORT}"

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no Kubernetes node {name!r}")


def is_cluster(topology: Topology) -> bool:
    return bool(topology.by_role(Role.CONTROLPLANE))


def _ipv4(node: Node) -> ipaddress.IPv4Address | None:
    for _, iface in node.addresses:
        if isinstance(iface, ipaddress.IPv4Interface):
            return iface.ip
    return None


def _net(node: Node, label: str, problems: list[str]) -> ipaddress.IPv4Network | None:
    text = node.labels.get(label)
    if text is None:
        problems.append(f"node {node.name}: needs label {label}")
        return None
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        problems.append(f"node {node.name}: {label}: {exc}")
        return None


def _node_plans(
    topology: Topology, cluster_cidr: ipaddress.IPv4Network | None, problems: list[str]
) -> list[NodePlan]:
    nodes = []
    for node in topology.by_role(Role.NODE):
        ip, pod_cidr = _ipv4(node), _net(node, LABEL_POD_CIDR, problems)
        if ip is None:
            problems.append(f"node {node.name}: needs an IPv4 address (its node IP)")
        if (
            pod_cidr is not None
            and cluster_cidr is not None
            and not pod_cidr.subnet_of(cluster_cidr)
        ):
            problems.append(f"node {node.name}: pod CIDR {pod_cidr} is outside {cluster_cidr}")
        if ip is not None and pod_cidr is not None:
            nodes.append(NodePlan(node.name, ip, pod_cidr))
    return nodes


def _overlaps(
    pod_cidrs: list[ipaddress.IPv4Network],
    service_cidr: ipaddress.IPv4Network | None,
    cluster_cidr: ipaddress.IPv4Network | None,
) -> list[str]:
    problems = []
    if len(set(pod_cidrs)) != len(pod_cidrs) or any(
        a.overlaps(b) for i, a in enumerate(pod_cidrs) for b in pod_cidrs[i + 1 :]
    ):
        problems.append("pod CIDRs of the nodes overlap")
    if (
        service_cidr is not None
        and cluster_cidr is not None
        and service_cidr.overlaps(cluster_cidr)
    ):
        problems.append(f"Service CIDR {service_cidr} overlaps the cluster CIDR {cluster_cidr}")
    return problems


def plan_cluster(topology: Topology) -> ClusterPlan:
    """The cluster a topology describes (raises PlanError with every problem)."""
    problems: list[str] = []
    cps = topology.by_role(Role.CONTROLPLANE)
    if len(cps) != 1:
        raise PlanError(f"{topology.name}: needs exactly one controlplane node, has {len(cps)}")
    cp = cps[0]
    apiserver_ip = _ipv4(cp)
    if apiserver_ip is None:
        problems.append(f"node {cp.name}: needs an IPv4 address (the apiserver's)")
    service_cidr = _net(cp, LABEL_SERVICE_CIDR, problems)
    cluster_cidr = _net(cp, LABEL_CLUSTER_CIDR, problems)
    nodes = _node_plans(topology, cluster_cidr, problems)
    problems += _overlaps([n.pod_cidr for n in nodes], service_cidr, cluster_cidr)
    if not nodes and not problems:
        problems.append("no Kubernetes nodes")
    if problems:
        raise PlanError(f"{topology.name}: " + "; ".join(problems))
    assert apiserver_ip is not None and service_cidr is not None and cluster_cidr is not None
    return ClusterPlan(cp.name, apiserver_ip, service_cidr, cluster_cidr, tuple(nodes))
