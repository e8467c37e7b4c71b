"""``kubectl exalb doctor`` on the lab cluster: healthy, then one real mistake at a time.

One release (``doc`` in namespace ``doctor-system``) and one backend serve every test; each
test makes its mistake the way users make it (kubectl or helm), waits until the doctor names
it with its evidence, undoes it and waits until the doctor finds the cluster healthy again,
so the tests are independent although they share the cluster. The check "MetalLB still
running" is made with the real MetalLB in tests/e2e/test_migration.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump, load_balancer
from lab.runner import Lab
from lab.wait import wait_for
from tests.e2e.kube import (
    NODE_IP,
    doctor,
    findings,
    helm_values,
    image_values,
    ingress_ips,
    nexthops,
)

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

NS, APP, RELEASE = "doctor-system", "doctor-app", "doc"
EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def values(cluster: Cluster) -> dict[str, Any]:
    peer = {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1", "holdTime": "3s"}
    return {
        "image": image_values(cluster),
        "config": {
            "pools": [
                {"name": "bgp", "spec": {"addresses": ["203.0.113.50-203.0.113.60"]}},
                {"name": "l2", "spec": {"addresses": ["198.51.100.230-198.51.100.239"],
                                        "autoAssign": False}},
            ],
            "peers": [{"name": "r1", "spec": peer}],
            "bgpAdvertisements": [{"name": "bgp", "spec": {"ipAddressPools": ["bgp"]}}],
            "l2Advertisements": [{"name": "l2", "spec": {"ipAddressPools": ["l2"]}}],
        },
    }  # fmt: skip


def run(cluster: Cluster, *args: str) -> tuple[int, dict[str, Any]]:
    return doctor(cluster, NS, *args)


def healthy(cluster: Cluster) -> bool:
    code, report = run(cluster)
    return code == 0 and not report["findings"]


def wait_finding(cluster: Cluster, check: str, needle: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the doctor until ``check`` reports a finding mentioning ``needle``."""

    def seen() -> dict[str, Any] | None:
        code, report = run(cluster)
        for f in findings(report, check):
            if needle in f["title"] + "\n" + "\n".join(f["evidence"]):
                assert f["fix"], f
                return {**f, "exit": code}
        return None

    return wait_for(f"doctor: {check} finding with {needle!r}", seen, timeout, 1.0)


def wait_healthy(cluster: Cluster, timeout: float = 90) -> None:
    last: list[Any] = []

    def clean() -> bool:
        code, report = run(cluster)
        last[:] = report["findings"]
        return code == 0 and not report["findings"]

    try:
        wait_for("doctor: no findings", clean, timeout, 1.0)
    except AssertionError:
        raise AssertionError(f"still found: {json.dumps(last, indent=1)}") from None


@pytest.fixture(scope="module")
def lab(cluster_lab: Lab) -> Iterator[Lab]:
    lab = cluster_lab
    cluster = lab.cluster
    assert cluster is not None
    try:
        helm_values(cluster, "install", RELEASE, NS, values(cluster))
        backend = cluster.images["backend"].ref
        cluster.apply(dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
            backend_deployment("web", APP, backend, replicas=3),
            load_balancer("web", APP),
            load_balancer("loc", APP, selector="web", local=True),
        ))  # fmt: skip
        for name in ("web", "loc"):
            svc = lambda n=name: cluster.get_json("svc", "-n", APP, n)  # noqa: E731
            wait_for(f"{name}: IP", lambda s=svc: ingress_ips(s()), 120, 0.5)
        ip = ingress_ips(cluster.get_json("svc", "-n", APP, "web"))[0]
        wait_for("3 paths at r1", lambda: nexthops(lab, f"{ip}/32") == set(NODE_IP), 120, 0.2)
        yield lab
    finally:
        cluster.kubectl("delete", "namespace", APP, "--wait=true", check=False, timeout=180)
        cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", check=False)
        cluster.kubectl("delete", "namespace", NS, "--wait=true", check=False, timeout=180)


def cluster_of(lab: Lab) -> Cluster:
    assert lab.cluster is not None
    return lab.cluster


def test_healthy_cluster_has_no_findings(lab: Lab) -> None:
    cluster = cluster_of(lab)
    wait_healthy(cluster)
    code, report = run(cluster)
    assert code == 0 and report["findings"] == []
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert len(report["checks"]) >= 13


def test_refused_config(lab: Lab) -> None:
    """A pool overlapping another: the config is refused, speakers keep the last good one."""
    cluster = cluster_of(lab)
    dup = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": {"name": "dup", "namespace": NS},
           "spec": {"addresses": ["203.0.113.55/32"]}}  # fmt: skip
    cluster.apply(dump(dup))
    try:
        f = wait_finding(cluster, "config", "overlap")
        assert f["severity"] == "error" and f["exit"] == 1
        s = wait_finding(cluster, "speaker-status", "stale")
        assert s["severity"] == "error"
    finally:
        cluster.kubectl("delete", "ipaddresspool", "-n", NS, "dup")
    wait_healthy(cluster)


def test_kube_proxy_ipvs_without_strict_arp(lab: Lab) -> None:
    cluster = cluster_of(lab)
    conf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" \
           "mode: ipvs\nipvs:\n  strictARP: false\n"  # fmt: skip
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "data": {"config.conf": conf}}  # fmt: skip
    cluster.apply(dump(cm))
    try:
        f = wait_finding(cluster, "kube-proxy-strict-arp", "mode ipvs, ipvs.strictARP false")
        assert f["severity"] == "error" and "L2Advertisement(s): l2" in f["evidence"]
    finally:
        cluster.kubectl("delete", "configmap", "-n", "kube-system", "kube-proxy")
    wait_healthy(cluster)


def test_pool_overlapping_node_pod_and_service_addresses(lab: Lab) -> None:
    cluster = cluster_of(lab)
    # n2's address, n2's pod range, part of the Service CIDR; autoAssign off: never given out
    addresses = ["198.51.100.12/32", "198.18.129.0/24", "198.19.0.0/24"]
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "overlap", "namespace": NS},
            "spec": {"autoAssign": False, "addresses": addresses}}  # fmt: skip
    cluster.apply(dump(pool))
    try:
        node = wait_finding(cluster, "pool-overlap", "Node n2 InternalIP 198.51.100.12")
        assert node["title"].startswith("IPAddressPool overlap overlaps node addresses")
        pods = wait_finding(cluster, "pool-overlap", "the pod network")
        assert any(line.startswith("Pod ") and "198.18.129." in line for line in pods["evidence"])
        svc = wait_finding(cluster, "pool-overlap", "ServiceCIDR kubernetes 198.19.0.0/16")
        assert svc["severity"] == "error"
    finally:
        cluster.kubectl("delete", "ipaddresspool", "-n", NS, "overlap")
    wait_healthy(cluster)


def test_node_without_a_ready_speaker(lab: Lab) -> None:
    """An upgrade asking more memory than a node has: the rollout's first new speaker pod
    stays Pending, so one node has no speaker."""
    cluster = cluster_of(lab)
    history = json.loads(cluster.helm("history", RELEASE, "-n", NS, "-o", "json").stdout)
    good = str(history[-1]["revision"])
    memory = {"memory": "512Gi"}
    too_big = {**values(cluster), "speaker": {"resources": {"requests": memory, "limits": memory}}}
    helm_values(cluster, "upgrade", RELEASE, NS, too_big, wait=False)
    try:
        f = wait_finding(cluster, "speakers-ready", "Insufficient memory", timeout=90)
        assert f["severity"] == "error" and "1 node(s) without a ready speaker" in f["title"]
    finally:
        cluster.helm("rollback", RELEASE, good, "-n", NS, "--wait", "--timeout", "180s")
    wait_healthy(cluster, timeout=120)


def test_bgp_session_down_with_exabgps_reason(lab: Lab) -> None:
    """myASN the router does not expect: r1 answers the OPEN with a NOTIFICATION."""
    cluster = cluster_of(lab)
    patch = lambda asn: json.dumps({"spec": {"myASN": asn}})  # noqa: E731
    cluster.kubectl("patch", "bgppeer", "-n", NS, "r1", "--type=merge", "-p", patch(64599))
    try:
        f = wait_finding(cluster, "bgp-sessions", "notification received (2,2)", timeout=90)
        assert f["severity"] == "error" and "bad peer AS" in "\n".join(f["evidence"])
        assert "spec.myASN" in f["fix"]
        assert f["title"].startswith("BGP session to r1 (198.51.100.1) not established")
    finally:
        cluster.kubectl("patch", "bgppeer", "-n", NS, "r1", "--type=merge", "-p", patch(64501))
    wait_healthy(cluster, timeout=120)


def test_exclude_label_on_every_node(lab: Lab) -> None:
    cluster = cluster_of(lab)
    cluster.kubectl("label", "node", "--all", f"{EXCLUDE}=")
    try:
        f = wait_finding(cluster, "exclude-lb-label", "every node (3)")
        assert f["severity"] == "error"
    finally:
        cluster.kubectl("label", "node", "--all", f"{EXCLUDE}-")
    wait_healthy(cluster)


def test_l2_interfaces_missing_on_the_nodes(lab: Lab) -> None:
    cluster = cluster_of(lab)
    cluster.kubectl("patch", "l2advertisement", "-n", NS, "l2", "--type=merge",
                    "-p", '{"spec": {"interfaces": ["eth9"]}}')  # fmt: skip
    try:
        f = wait_finding(cluster, "l2-interfaces", "pool l2 on n1: wants eth9, has eth1")
        assert f["severity"] == "error"
    finally:
        cluster.kubectl("patch", "l2advertisement", "-n", NS, "l2", "--type=json",
                        "-p", '[{"op": "remove", "path": "/spec/interfaces"}]')  # fmt: skip
    wait_healthy(cluster)


def test_pending_services_grouped_by_reason(lab: Lab) -> None:
    cluster = cluster_of(lab)
    outside = {"metallb.io/loadBalancerIPs": "203.0.113.200"}
    cluster.apply(dump(
        load_balancer("want-a", APP, selector="web", annotations=outside),
        load_balancer("want-b", APP, selector="web", annotations=outside, port=81),
        load_balancer("no-pool", APP, selector="web",
                      annotations={"metallb.io/address-pool": "nope"}),
    ))  # fmt: skip
    try:
        a = wait_finding(cluster, "services-pending", "is not in any IPAddressPool")
        assert a["title"].startswith("2 Service(s) without an IP: AllocationFailed: requested "
                                     "IP <ip> is not in any IPAddressPool")  # fmt: skip
        b = wait_finding(cluster, "services-pending", "'nope' does not exist")
        assert b["title"].startswith("1 Service(s)")
    finally:
        cluster.kubectl("delete", "svc", "-n", APP, "want-a", "want-b", "no-pool")
    wait_healthy(cluster)


def test_local_services_without_local_endpoints(lab: Lab) -> None:
    """One Local Service without any ready pod; one whose pods all run on a node labelled
    out of load balancing."""
    cluster = cluster_of(lab)
    backend = cluster.images["backend"].ref
    cluster.apply(dump(
        load_balancer("nobody", APP, selector="nothing-runs-this", local=True),
        backend_deployment("pinned", APP, backend, replicas=1,
                           node_selector={"kubernetes.io/hostname": "n3"}),
        load_balancer("pinned", APP, local=True),
    ))  # fmt: skip
    cluster.kubectl("label", "node", "n3", f"{EXCLUDE}=")
    try:
        none = wait_finding(cluster, "local-endpoints", "doctor-app/nobody", timeout=90)
        assert none["severity"] == "warning"
        stranded = wait_finding(cluster, "local-endpoints",
                                f"doctor-app/pinned: endpoints only on n3 (label {EXCLUDE})",
                                timeout=90)  # fmt: skip
        assert stranded["severity"] == "error"
    finally:
        cluster.kubectl("label", "node", "n3", f"{EXCLUDE}-")
        cluster.kubectl("delete", "svc,deploy", "-n", APP, "nobody", "pinned", check=False)
        cluster.kubectl("delete", "deploy", "-n", APP, "pinned", check=False)
    wait_healthy(cluster)


def test_user_without_pods_portforward(lab: Lab) -> None:
    """A user with the 'view' ClusterRole (plus nodes and webhook configurations) may not
    get or create pods/portforward: the doctor says so and skips the checks that read the
    speakers."""
    cluster = cluster_of(lab)
    reader = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
              "metadata": {"name": "doctor-cluster-reader"},
              "rules": [{"apiGroups": ["", "networking.k8s.io", "admissionregistration.k8s.io"],
                         "resources": ["nodes", "servicecidrs",
                                       "validatingwebhookconfigurations"],
                         "verbs": ["get", "list"]}]}  # fmt: skip
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer",
                                                                     "namespace": NS}}  # fmt: skip
    bindings = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"doctor-viewer-{role}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": NS}]}
        for role in ("view", "doctor-cluster-reader")
    ]  # fmt: skip
    cluster.apply(dump(reader, sa, *bindings))
    try:
        token = cluster.kubectl("create", "token", "viewer", "-n", NS).stdout.strip()
        kubeconfig = viewer_kubeconfig(cluster, token)
        code, report = doctor(cluster, NS, "--kubeconfig", str(kubeconfig))
        (f,) = findings(report, "live-view-access")
        assert f["severity"] == "warning"
        assert "get pods/portforward in namespace doctor-system" in f["title"]
        skipped = {c["id"] for c in report["checks"] if c["status"] == "skipped"}
        assert {"bgp-sessions", "speaker-status", "l2-interfaces"} <= skipped
        assert code == 0  # nothing is wrong with the cluster, only with what the user sees
    finally:
        cluster.kubectl("delete", "clusterrolebinding", *(b["metadata"]["name"] for b in bindings),
                        check=False)  # fmt: skip
        cluster.kubectl("delete", "clusterrole", "doctor-cluster-reader", check=False)
        cluster.kubectl("delete", "serviceaccount", "-n", NS, "viewer", check=False)


def viewer_kubeconfig(cluster: Cluster, token: str) -> Path:
    """The admin kubeconfig's server and CA, with the token instead of the client cert."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    ca = (
        server.get("certificate-authority-data")
        or base64.b64encode(Path(server["certificate-authority"]).read_bytes()).decode()
    )
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server["server"],
                                                 "certificate-authority-data": ca}}],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {"cluster": "lab", "user": "viewer"}}],
        "current-context": "viewer",
    }  # fmt: skip
    path = cluster.dir / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
