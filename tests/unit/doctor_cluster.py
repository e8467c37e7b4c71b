"""A healthy cluster as the doctor's snapshot sees it, in plain documents, for the unit tests
of ``kubectl exalb doctor``: three Ready nodes, exalb's speaker DaemonSet with a ready pod
on each, a BGP pool and an L2 pool, every session established, Services with IPs and
endpoints. Each test breaks one thing (:func:`dataclasses.replace` plus the helpers here).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from exalbctl.doctor.snapshot import Access, Snapshot
from exalbctl.report import SpeakerStatus

NS = "metallb-system"
SELECTOR = "app.kubernetes.io/part-of=exalb,app.kubernetes.io/component=speaker"
NODES = {"n1": "198.51.100.11", "n2": "198.51.100.12", "n3": "198.51.100.13"}
PEER = {"name": "r1", "address": "198.51.100.1", "myASN": 64501, "peerASN": 64500,
        "configured": True}  # fmt: skip

JSON = dict[str, Any]


def node(name: str, ip: str, **labels: str) -> JSON:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux", **labels}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
        },
    }  # fmt: skip


def speaker_daemonset(*args: str, garp: bool = True) -> JSON:
    containers = [
        {"name": "speaker", "image": "localhost/exalb:1",
         "args": ["--node-name=$(NODE_NAME)", f"--namespace={NS}", *args]},
        {"name": "exabgp", "image": "localhost/exalb:1"},
    ]  # fmt: skip
    if garp:
        containers.append({"name": "garp", "image": "localhost/exalb:1"})
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "exalb-speaker", "namespace": NS,
                     "labels": {"app.kubernetes.io/part-of": "exalb",
                                "app.kubernetes.io/component": "speaker"}},
        "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                       "hostNetwork": True, "containers": containers}}},
        "status": {"desiredNumberScheduled": 3, "numberReady": 3},
    }  # fmt: skip


def speaker_pod(node_name: str, ready: bool = True) -> JSON:
    return {
        "kind": "Pod",
        "metadata": {"name": f"exalb-speaker-{node_name}", "namespace": NS,
                     "ownerReferences": [{"kind": "DaemonSet", "name": "exalb-speaker"}]},
        "spec": {"nodeName": node_name, "hostNetwork": True,
                 "containers": speaker_daemonset()["spec"]["template"]["spec"]["containers"]},
        "status": {"phase": "Running", "podIP": NODES[node_name],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": "speaker", "ready": ready}]},
    }  # fmt: skip


def status_doc(node_name: str, *, state: str = "established", reason: str | None = None,
               interfaces: list[str] | None = None) -> JSON:  # fmt: skip
    session: JSON = {"peer": "r1", "address": PEER["address"], "state": state,
                     "fsm": state.upper()}  # fmt: skip
    if reason is not None:
        session["lastDownReason"] = reason
    return {
        "node": node_name,
        "config": {"loaded": True, "stale": False, "source": "crd", "problems": []},
        "exabgp": {"connected": True, "error": None},
        "peers": [dict(PEER)],
        "renderProblems": [],
        "sessions": [session],
        "adjRibOut": {},
        "summary": {"services": 2, "announced": 2, "routes": 2},
        "warnings": [],
        "services": [],
        "l2": {"stateFile": "/run/exalb/l2-state.json", "generation": 1,
               "sidecar": {"generation": 1, "peers": {},
                           "interfaces": interfaces if interfaces is not None else ["eth1"]},
               "ips": []},
    }  # fmt: skip


def pool(name: str, *addresses: str, auto: bool = True) -> JSON:
    return {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"addresses": list(addresses), "autoAssign": auto}}  # fmt: skip


def l2_ad(name: str, pools: list[str], interfaces: list[str] | None = None) -> JSON:
    spec: JSON = {"ipAddressPools": pools}
    if interfaces is not None:
        spec["interfaces"] = interfaces
    return {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip


CONFIG = (
    pool("bgp", "203.0.113.30-203.0.113.40"),
    pool("l2", "198.51.100.240-198.51.100.250", auto=False),
    {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
     "metadata": {"name": "r1", "namespace": NS},
     "spec": {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1"}},
    {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
     "metadata": {"name": "bgp", "namespace": NS}, "spec": {"ipAddressPools": ["bgp"]}},
    l2_ad("l2", ["l2"]),
)  # fmt: skip


def service(name: str, ip: str | None, *, local: bool = False, ns: str = "app",
            cluster_ip: str = "198.19.0.10", **extra: Any) -> JSON:  # fmt: skip
    svc: JSON = {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "externalTrafficPolicy": "Local" if local else "Cluster",
                 "selector": {"app": name}, **extra},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}},
    }  # fmt: skip
    return svc


def endpoint_slice(svc: str, *nodes: str, ns: str = "app", ready: bool = True) -> JSON:
    return {
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-abc", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": [{"addresses": [f"198.18.128.{i + 5}"], "nodeName": n,
                       "conditions": {"ready": ready, "serving": ready}}
                      for i, n in enumerate(nodes)],
    }  # fmt: skip


def app_pod(name: str, node_name: str, ip: str) -> JSON:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "app"},
            "spec": {"nodeName": node_name, "containers": [{"name": "http", "image": "b"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}  # fmt: skip


def healthy() -> Snapshot:
    ds = speaker_daemonset()
    return Snapshot(
        namespace=NS,
        selector=SELECTOR,
        nodes=tuple(node(n, ip) for n, ip in NODES.items()),
        pods=(app_pod("web-1", "n1", "198.18.128.5"), app_pod("web-2", "n2", "198.18.129.5")),
        services=(
            service("web", "203.0.113.30"),
            service("loc", "203.0.113.31", local=True, cluster_ip="198.19.0.11"),
            {"kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"type": "ClusterIP", "clusterIP": "198.19.0.1"}},
        ),
        endpoint_slices=(endpoint_slice("web", "n1", "n2"), endpoint_slice("loc", "n2")),
        config_objects=copy.deepcopy(CONFIG),
        service_cidrs=({"kind": "ServiceCIDR", "metadata": {"name": "kubernetes"},
                        "spec": {"cidrs": ["198.19.0.0/16"]}},),
        workloads=(ds, {"kind": "Deployment", "metadata": {"name": "web", "namespace": "app"},
                        "spec": {"replicas": 2, "template": {"spec": {"containers": [
                            {"name": "http", "image": "localhost/backend:1"}]}}}}),
        speaker_pods=tuple(speaker_pod(n) for n in NODES),
        speaker_daemonsets=(ds,),
        speakers=tuple(SpeakerStatus(n, f"pod {NS}/exalb-speaker-{n}:7474", doc=status_doc(n))
                       for n in NODES),
        access=(Access("get", "pods/portforward", NS, True),
                Access("create", "pods/portforward", NS, True), Access("list", "pods", NS, True)),
    )  # fmt: skip


def with_speakers(snap: Snapshot, **docs: JSON) -> Snapshot:
    """Replace some nodes' /status documents."""
    speakers = tuple(
        replace(s, doc=docs.get(s.node, s.doc)) if s.node in docs else s for s in snap.speakers
    )
    return replace(snap, speakers=speakers)
