"""The lab cluster's pure parts: what a topology asks for, and the config files it renders."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from lab.cluster.configs import NodePaths, cni_conflist, containerd_toml, kubelet_yaml
from lab.cluster.images import parse_image_lines
from lab.cluster.plan import PlanError, plan_cluster
from lab.cluster.workloads import load_balancer
from lab.execlines import parse_exec_links
from lab.topology import parse_topology
from lab.topology_load import load_topology

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "containerlab" / "k8s-bgp" / "k8s-bgp.clab.yml"


def test_k8s_bgp_plan() -> None:
    plan = plan_cluster(load_topology(K8S))
    assert plan.controlplane == "cp"
    assert str(plan.apiserver_ip) == "198.18.0.6"
    assert plan.apiserver_url == "https://198.18.0.6:6443"
    assert str(plan.kubernetes_service_ip) == "198.19.0.1"
    assert [(n.name, str(n.ip), str(n.pod_cidr)) for n in plan.nodes] == [
        ("n1", "198.51.100.11", "198.18.128.0/24"),
        ("n2", "198.51.100.12", "198.18.129.0/24"),
        ("n3", "198.51.100.13", "198.18.130.0/24"),
    ]
    # everything new stays in the lab's ranges, never the host uplink's range
    allowed = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "198.18.0.0/15")]
    for net in [plan.service_cidr, plan.cluster_cidr, *(n.pod_cidr for n in plan.nodes)]:
        assert any(net.subnet_of(a) for a in allowed)  # type: ignore[arg-type]


def test_plan_refuses_overlaps_and_missing_labels(tmp_path: Path) -> None:
    text = K8S.read_text().replace("198.18.129.0/24", "198.18.128.0/24")
    text = text.replace("        exalb.k8s.service-cidr: 198.19.0.0/16\n", "")
    topo = parse_topology(text, tmp_path / "t.clab.yml")
    with pytest.raises(PlanError) as err:
        plan_cluster(topo)
    assert "pod CIDRs of the nodes overlap" in str(err.value)
    assert "needs label exalb.k8s.service-cidr" in str(err.value)


def test_exec_links() -> None:
    assert parse_exec_links(["ip link add br0 type bridge", "ip link set eth1 master br0"]) == (
        "br0",
    )
    assert parse_exec_links(["ip link add name d0 type dummy"]) == ("d0",)


def test_configs_name_only_the_nodes_own_paths(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path / "data", tmp_path / "state")
    toml = containerd_toml(paths, "localhost/exalb-pause:x")
    assert 'sandbox_image = "localhost/exalb-pause:x"' in toml
    assert "restrict_oom_score_adj = true" in toml
    assert f'Root = "{paths.runc_root}"' in toml
    cni = json.loads(cni_conflist("lab", "198.18.128.0/24", "198.18.128.1", paths.cni_data_dir))
    assert cni["plugins"][0]["ipam"]["dataDir"] == str(paths.cni_data_dir)
    kubelet = yaml.safe_load(
        kubelet_yaml(paths, node_ip="198.51.100.11", cgroup_root="/exalb-r-n1",
                     ca_file=tmp_path / "ca", cert=tmp_path / "c", key=tmp_path / "k")
    )  # fmt: skip
    assert kubelet["cgroupRoot"] == "/exalb-r-n1"
    assert kubelet["failCgroupV1"] is False and kubelet["oomScoreAdj"] == 0
    assert kubelet["resolvConf"] == "" and kubelet["readOnlyPort"] == 0
    assert kubelet["imageGCHighThresholdPercent"] == 100


def test_image_lines() -> None:
    out = parse_image_lines("noise\nexalb localhost/exalb:0.1.0-abc /c/exalb-abc.tar 123\n")
    assert out["exalb"].repository == "localhost/exalb" and out["exalb"].tag == "0.1.0-abc"
    assert out["exalb"].size == 123


def test_load_balancer_local() -> None:
    svc = load_balancer("x", "ns", local=True, annotations={"a": "b"})
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["metadata"]["annotations"] == {"a": "b"}
