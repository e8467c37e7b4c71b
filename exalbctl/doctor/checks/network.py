"""Address-level mistakes: kube-proxy IPVS without strictARP under L2, and pools that
overlap node addresses, the pod network or the Service network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from exalb.config.model import IPNetwork, Pool
from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence
from exalbctl.doctor.snapshot import argv, containers, flag, meta, name, ref, spec, status

STRICT_ARP = "kube-proxy-strict-arp"
OVERLAP = "pool-overlap"

# (where, network or address) pairs: what a pool must not contain
Known = list[tuple[str, IPNetwork]]


def _yaml_documents(cm: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key, text in (cm.get("data") or {}).items():
        try:
            doc = yaml.safe_load(str(text))
        except yaml.YAMLError:
            continue
        if isinstance(doc, Mapping):
            yield str(key), doc


def _config_map(f: Facts, wanted: str) -> Mapping[str, Any] | None:
    for cm in f.snap.kube_system_config_maps:
        if name(cm) == wanted:
            return cm
    return None


def _system_pods(f: Facts, prefix: str) -> list[Mapping[str, Any]]:
    return [
        p
        for p in f.snap.pods
        if meta(p).get("namespace") == "kube-system" and name(p).startswith(prefix)
    ]


def kube_proxy_modes(f: Facts) -> list[tuple[str, str, bool]]:
    """(where it is said, proxy mode, strictARP) from the kube-proxy ConfigMap (kubeadm's
    ``config.conf``) and from kube-proxy pods' flags."""
    out: list[tuple[str, str, bool]] = []
    cm = _config_map(f, "kube-proxy")
    for key, doc in _yaml_documents(cm) if cm is not None else ():
        if doc.get("kind") == "KubeProxyConfiguration" or "mode" in doc:
            strict = bool((doc.get("ipvs") or {}).get("strictARP"))
            out.append((f"ConfigMap kube-system/kube-proxy {key}", str(doc.get("mode")), strict))
    for pod in _system_pods(f, "kube-proxy"):
        for c in containers(pod):
            words = argv(c)
            mode = flag(words, "--proxy-mode")
            if mode:
                strict = flag(words, "--ipvs-strict-arp") in ("", "true")
                out.append((f"Pod {ref(pod)} --proxy-mode", mode, strict))
    return out


def check_strict_arp(f: Facts) -> list[Finding]:
    if not f.l2_used or f.config is None:
        return []
    bad = [
        (where, mode)
        for where, mode, strict in kube_proxy_modes(f)
        if mode == "ipvs" and not strict
    ]
    if not bad:
        return []
    ads = ", ".join(a.name for a in f.config.l2_advertisements)
    return [
        Finding(
            STRICT_ARP,
            Severity.ERROR,
            "kube-proxy runs in IPVS mode without strictARP while L2 mode is used: every "
            "node answers ARP for every Service IP, not only the elected one",
            (
                *(f"{where}: mode ipvs, ipvs.strictARP false" for where, _ in bad),
                f"L2Advertisement(s): {ads}",
            ),
            "set ipvs.strictARP: true in kube-proxy's config (kubectl -n kube-system edit "
            "configmap kube-proxy) and restart it (kubectl -n kube-system rollout restart "
            "daemonset kube-proxy)",
        )
    ]


# -- what a pool must not hold ---------------------------------------------------------------


def _net(text: object) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        return None


def _flag_nets(f: Facts, prefix: str, name_: str) -> Known:
    out: Known = []
    for pod in _system_pods(f, prefix):
        for c in containers(pod):
            for text in (flag(argv(c), name_) or "").split(","):
                if (net := _net(text)) is not None:
                    out.append((f"Pod {ref(pod)} {name_}", net))
    return out


def _kubeadm_nets(f: Facts, key: str) -> Known:
    cm = _config_map(f, "kubeadm-config")
    out: Known = []
    for item, doc in _yaml_documents(cm) if cm is not None else ():
        for text in str((doc.get("networking") or {}).get(key) or "").split(","):
            if (net := _net(text)) is not None:
                out.append((f"ConfigMap kube-system/kubeadm-config {item} networking.{key}", net))
    return out


def node_addresses(f: Facts) -> Known:
    return [
        (f"Node {name(n)} {a.get('type')}", net)
        for n in f.snap.nodes
        for a in status(n).get("addresses") or []
        if a.get("type") in ("InternalIP", "ExternalIP") and (net := _net(a.get("address")))
    ]


def pod_networks(f: Facts) -> Known:
    declared: Known = [
        (f"Node {name(n)} spec.podCIDRs", net)
        for n in f.snap.nodes
        for text in spec(n).get("podCIDRs") or [spec(n).get("podCIDR")]
        if text and (net := _net(text))
    ]
    cm = _config_map(f, "kube-proxy")
    for key, doc in _yaml_documents(cm) if cm is not None else ():
        for text in str(doc.get("clusterCIDR") or "").split(","):
            if (net := _net(text)) is not None:
                declared.append((f"ConfigMap kube-system/kube-proxy {key} clusterCIDR", net))
    declared += _kubeadm_nets(f, "podSubnet")
    declared += _flag_nets(f, "kube-controller-manager", "--cluster-cidr")
    # what pods really hold (the pod network may be declared nowhere the API shows)
    ips: Known = [
        (f"Pod {ref(p)} IP", net)
        for p in f.snap.pods
        if not spec(p).get("hostNetwork")
        for i in status(p).get("podIPs") or [{"ip": status(p).get("podIP")}]
        if i.get("ip") and (net := _net(i["ip"]))
    ]
    return declared + ips


def service_networks(f: Facts) -> Known:
    out: Known = [
        (f"ServiceCIDR {name(c)}", net)
        for c in f.snap.service_cidrs
        for text in spec(c).get("cidrs") or []
        if (net := _net(text))
    ]
    out += _kubeadm_nets(f, "serviceSubnet")
    out += _flag_nets(f, "kube-apiserver", "--service-cluster-ip-range")
    out += [
        (f"Service {ref(s)} clusterIP", net)
        for s in f.snap.services
        for ip in spec(s).get("clusterIPs") or [spec(s).get("clusterIP")]
        if ip and ip != "None" and (net := _net(ip))
    ]
    return out


def _overlaps(pool: Pool, known: Known) -> list[str]:
    lines = []
    for where, net in known:
        for cidr in pool.cidrs:
            if cidr.version == net.version and cidr.overlaps(net):
                what = str(net.network_address) if net.num_addresses == 1 else str(net)
                lines.append(f"{where} {what} is inside the pool's {cidr}")
                break
    return lines


WHAT = {
    "node": ("node addresses", "a Service given a node's address takes traffic meant for the "
             "node (and the node's own sessions)"),
    "pod": ("the pod network", "pods and Services would share addresses; traffic to either "
            "goes astray"),
    "service": ("the Service network (cluster IPs)", "kube-proxy already routes these "
                "addresses to other Services"),
}  # fmt: skip


def check_overlap(f: Facts) -> list[Finding]:
    if f.config is None:
        return []
    known = {"node": node_addresses(f), "pod": pod_networks(f), "service": service_networks(f)}
    out = []
    for pool in f.config.pools:
        for kind, items in known.items():
            lines = _overlaps(pool, items)
            if lines:
                what, why = WHAT[kind]
                out.append(
                    Finding(
                        OVERLAP,
                        Severity.ERROR,
                        f"IPAddressPool {pool.name} overlaps {what}: {why}",
                        evidence(lines),
                        f"remove those addresses from IPAddressPool {pool.name} "
                        "spec.addresses (an assigned IP is kept and flagged, never moved: "
                        "`kubectl exalb plan -f NEW.yaml` shows which Services)",
                    )
                )
    return out
