"""``kubectl exalb doctor``: every check finds its mistake in a snapshot that has it and
nothing in a healthy one; skipped checks, rendering, exit codes and the CLI wiring.

The snapshots are plain documents (tests/unit/doctor_cluster.py), as the gatherer reads
them from the API server; the same mistakes are made on the lab cluster by
tests/e2e/test_doctor.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from exalb.k8s.client import ApiError, ListResult
from exalb.views import EXCLUDE_LB_LABEL
from exalbctl.doctor.checks import CHECKS, run_checks
from exalbctl.doctor.checks.bgp import explain
from exalbctl.doctor.checks.services import group_key
from exalbctl.doctor.facts import Facts, runs_on, tolerated
from exalbctl.doctor.findings import Finding, Report, Severity, evidence
from exalbctl.doctor.gather import gather
from exalbctl.doctor.render import render_report
from exalbctl.doctor.snapshot import Access, Snapshot
from exalbctl.main import main
from exalbctl.report import SpeakerStatus
from tests.unit.doctor_cluster import (
    CONFIG,
    NS,
    SELECTOR,
    app_pod,
    endpoint_slice,
    healthy,
    l2_ad,
    node,
    pool,
    service,
    speaker_daemonset,
    speaker_pod,
    status_doc,
    with_speakers,
)

Mutation = Callable[[Snapshot], Snapshot]


def findings(snap: Snapshot, check: str | None = None) -> list[Finding]:
    return [f for f in run_checks(snap).findings if check is None or f.check == check]


def test_healthy_cluster_has_no_findings() -> None:
    report = run_checks(healthy())
    assert report.findings == []
    assert report.exit_code == 0
    assert all(r.status == "ok" for r in report.results)
    assert {r.check for r in report.results} == {c.id for c in CHECKS} | {"api-access"}


# -- one mistake each ------------------------------------------------------------------------


def _config(*objs: dict[str, Any]) -> Mutation:
    return lambda s: replace(s, config_objects=tuple(objs))


def _kube_proxy(mode: str, strict: bool) -> Mutation:
    text = (
        f"kind: KubeProxyConfiguration\nmode: {mode}\nipvs:\n  strictARP: {str(strict).lower()}\n"
    )
    cm = {"kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
          "data": {"config.conf": text}}  # fmt: skip
    return lambda s: replace(s, kube_system_config_maps=(cm,))


def _label_all(s: Snapshot) -> Snapshot:
    return replace(s, nodes=tuple(node(n["metadata"]["name"],
                                       n["status"]["addresses"][0]["address"],
                                       **{EXCLUDE_LB_LABEL: ""}) for n in s.nodes))  # fmt: skip


def _speaker_unready(s: Snapshot) -> Snapshot:
    pods = (speaker_pod("n1"), speaker_pod("n2"))  # none on n3
    pending = speaker_pod("n3", ready=False)
    # not scheduled: no nodeName yet, only the DaemonSet's pin to its node
    del pending["spec"]["nodeName"]
    pin = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [pin]}}
    pending["spec"]["affinity"] = {"nodeAffinity": required}
    unscheduled = {"type": "PodScheduled", "status": "False",
                   "message": "0/3 nodes: Insufficient memory"}  # fmt: skip
    pending["status"] = {"phase": "Pending", "conditions": [unscheduled]}
    return replace(s, speaker_pods=(*pods, pending))


def _session_down(s: Snapshot) -> Snapshot:
    doc = status_doc("n2", state="active", reason="notification received (2,2)")
    return with_speakers(s, n2=doc)


def _extra_services(*svcs: dict[str, Any], slices: tuple[dict[str, Any], ...] = ()) -> Mutation:
    return lambda s: replace(s, services=s.services + svcs,
                             endpoint_slices=s.endpoint_slices + slices)  # fmt: skip


def _pending_condition(name: str, message: str) -> dict[str, Any]:
    svc = service(name, None)
    svc["status"]["conditions"] = [{"type": "exalb.io/IPAllocated", "status": "False",
                                    "reason": "AllocationFailed", "message": message}]  # fmt: skip
    return svc


def _metallb(s: Snapshot) -> Snapshot:
    controller = {
        "kind": "Deployment",
        "metadata": {"name": "metallb-controller", "namespace": "metallb-system",
                     "labels": {"app.kubernetes.io/name": "metallb"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "controller", "image": "quay.io/metallb/controller:v0.16.2",
             "args": ["--port=7472", "--webhook-mode=disabled"]}]}}},
        "status": {"readyReplicas": 1},
    }  # fmt: skip
    event = {"involvedObject": {"kind": "Service", "namespace": "app", "name": "web"},
             "reason": "IPAllocated", "message": 'Assigned IP ["203.0.113.30"]',
             "source": {"component": "metallb-controller"}}  # fmt: skip
    return replace(s, workloads=(*s.workloads, controller), events=(event,))


def _no_proxy(s: Snapshot) -> Snapshot:
    denied = (
        Access("get", "pods/portforward", NS, False),
        Access("create", "pods/portforward", NS, False),
        Access("list", "pods", NS, True),
    )
    why = f"no create/get pods/portforward in namespace {NS}"
    return replace(s, access=denied, speakers=(), unreadable={"speakers": why})


WEBHOOK = {"kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "metallb-webhook-configuration"},
           "webhooks": [{"name": "ipaddresspoolvalidationwebhook.metallb.io",
                         "failurePolicy": "Fail",
                         "clientConfig": {"service": {"namespace": "metallb-system",
                                                      "name": "metallb-webhook-service"}},
                         "rules": [{"apiGroups": ["metallb.io"]}]}]}  # fmt: skip

CASES: list[tuple[str, Mutation, str, Severity, str]] = [
    ("config refused", _config(pool("bad", "10.0.0.300/24")), "config", Severity.ERROR,
     "is not a CIDR"),
    ("no pools", _config(), "config", Severity.WARNING, "no IPAddressPool"),
    ("L2 without garp", lambda s: replace(s, speaker_daemonsets=(speaker_daemonset(garp=False),),
                                          speaker_pods=()),
     "config", Severity.ERROR, "no garp sidecar"),
    ("ipvs without strictARP under L2", _kube_proxy("ipvs", False), "kube-proxy-strict-arp",
     Severity.ERROR, "ConfigMap kube-system/kube-proxy config.conf: mode ipvs"),
    ("pool holds a node address", _config(*CONFIG, pool("oops", "198.51.100.12/32", auto=False)),
     "pool-overlap", Severity.ERROR, "Node n2 InternalIP 198.51.100.12"),
    ("pool holds pod IPs", _config(*CONFIG, pool("pods", "198.18.129.0/24", auto=False)),
     "pool-overlap", Severity.ERROR, "Pod app/web-2 IP 198.18.129.5"),
    ("pool in the Service network", _config(*CONFIG, pool("svc", "198.19.0.0/24", auto=False)),
     "pool-overlap", Severity.ERROR, "ServiceCIDR kubernetes 198.19.0.0/16"),
    ("speaker not ready", _speaker_unready, "speakers-ready", Severity.ERROR,
     "n3: pod exalb-speaker-n3 is Pending: 0/3 nodes: Insufficient memory"),
    ("speaker config stale", lambda s: with_speakers(s, n1={**status_doc("n1"), "config": {
        "loaded": True, "stale": True, "source": "crd", "problems": ["error: x"]}}),
     "speaker-status", Severity.ERROR, "n1: stale: error: x"),
    ("speaker unreachable", lambda s: replace(s, speakers=(
        SpeakerStatus("n1", "pod x", error="timed out"), *s.speakers[1:])),
     "speaker-status", Severity.WARNING, "n1: timed out"),
    ("session down", _session_down, "bgp-sessions", Severity.ERROR,
     "n2: state active; ExaBGP: notification received (2,2) (the router sent OPEN message "
     "error, bad peer AS)"),
    ("ExaBGP not answering", lambda s: with_speakers(s, n1={**status_doc("n1"), "sessions": None,
                                                            "exabgp": {"error": "not connected"}}),
     "bgp-sessions", Severity.ERROR, "n1: not connected"),
    ("exclude label on every node", _label_all, "exclude-lb-label", Severity.ERROR,
     "every node (3)"),
    ("L2 interfaces missing", _config(*CONFIG[:4], l2_ad("l2", ["l2"], ["eth9"])),
     "l2-interfaces", Severity.ERROR, "pool l2 on n1: wants eth9, has eth1"),
    ("pending, grouped", _extra_services(
        _pending_condition("a", "requested IP 203.0.113.200 is not in any IPAddressPool"),
        _pending_condition("b", "requested IP 203.0.113.201 is not in any IPAddressPool")),
     "services-pending", Severity.ERROR,
     "also app/b"),
    ("Local, endpoints nowhere",
     _extra_services(service("gone", "203.0.113.33", local=True),
                     slices=(endpoint_slice("gone", "n1", ready=False),)),
     "local-endpoints", Severity.WARNING, "app/gone: no serving endpoint"),
    ("MetalLB still running", _metallb, "other-load-balancers", Severity.ERROR,
     "Deployment metallb-system/metallb-controller: 1/1 ready"),
    ("MetalLB's webhook left behind", lambda s: replace(s, webhooks=(WEBHOOK,)),
     "other-load-balancers", Severity.WARNING, "failurePolicy Fail"),
    ("no pods/portforward", _no_proxy, "live-view-access", Severity.WARNING,
     "get pods/portforward in namespace metallb-system denied"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "check", "severity", "needle"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_each_mistake_is_found(
    mutate: Mutation, check: str, severity: Severity, needle: str
) -> None:
    found = findings(mutate(healthy()), check)
    assert found, f"no {check} finding"
    assert any(f.severity == severity for f in found), [f.severity for f in found]
    text = "\n".join(f"{f.title}\n" + "\n".join(f.evidence) for f in found)
    assert needle in text
    assert all(f.fix for f in found)


def test_other_checks_stay_quiet_for_one_mistake() -> None:
    """A finding belongs to its check: the session-down cluster has no other finding."""
    assert {f.check for f in findings(_session_down(healthy()))} == {"bgp-sessions"}


# -- details of single checks ----------------------------------------------------------------


def test_pending_services_are_grouped_by_reason() -> None:
    snap = _extra_services(
        _pending_condition("a", "requested IP 203.0.113.200 is not in any IPAddressPool"),
        _pending_condition("b", "requested IP 203.0.113.201 is not in any IPAddressPool"),
        _pending_condition("c", "IPAddressPool 'nope' does not exist"),
        service("d", None),  # no condition, no event: the controller has not decided
    )(healthy())
    groups = {f.title: f for f in findings(snap, "services-pending")}
    assert set(groups) == {
        "2 Service(s) without an IP: AllocationFailed: requested IP <ip> is not in any "
        "IPAddressPool",
        "1 Service(s) without an IP: AllocationFailed: IPAddressPool 'nope' does not exist",
        "1 Service(s) without an IP: NoDecision: no decision recorded by the controller (is "
        "it running and leading?)",
    }
    assert "requested IP 203.0.113.200" in next(iter(groups.values())).evidence[0]


def test_pending_reason_from_events_when_no_condition() -> None:
    event = {"involvedObject": {"kind": "Service", "namespace": "app", "name": "e"},
             "reason": "AllocationFailed", "message": "no available IPs in pool bgp for IPv4",
             "lastTimestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    snap = replace(_extra_services(service("e", None))(healthy()), events=(event,))
    (f,) = findings(snap, "services-pending")
    assert "no available IPs in pool bgp" in f.title and "add addresses" in f.fix


def test_group_key_masks_addresses_and_holders() -> None:
    a = group_key("AllocationFailed", "requested IP 203.0.113.5 is in use by app/a, app/b and x")
    b = group_key("AllocationFailed", "requested IP 2001:db8::5 is in use by app/c and x")
    assert a == b == "AllocationFailed: requested IP <ip> is in use by <Services> and x"


def test_local_service_with_endpoints_only_on_excluded_node() -> None:
    snap = _extra_services(
        service("pinned", "203.0.113.34", local=True), slices=(endpoint_slice("pinned", "n3"),)
    )(healthy())
    nodes = [node("n1", "198.51.100.11"), node("n2", "198.51.100.12"),
             node("n3", "198.51.100.13", **{EXCLUDE_LB_LABEL: "true"})]  # fmt: skip
    snap = replace(snap, nodes=tuple(nodes))
    found = findings(snap, "local-endpoints")
    assert [f.severity for f in found] == [Severity.ERROR]
    assert found[0].evidence == (f"app/pinned: endpoints only on n3 (label {EXCLUDE_LB_LABEL})",)
    # the same label on one node only is worth knowing, not an error
    (info,) = findings(snap, "exclude-lb-label")
    assert info.severity == Severity.INFO and info.title.startswith("n3 carry")


def test_exclude_label_ignored_by_the_speaker() -> None:
    ds = speaker_daemonset("--ignore-exclude-lb")
    snap = replace(_label_all(healthy()), speaker_daemonsets=(ds,))
    assert findings(snap, "exclude-lb-label") == []


def test_strict_arp_only_matters_with_l2() -> None:
    bgp_only = _config(*CONFIG[:4])(_kube_proxy("ipvs", False)(healthy()))
    assert findings(bgp_only, "kube-proxy-strict-arp") == []
    assert findings(_kube_proxy("ipvs", True)(healthy()), "kube-proxy-strict-arp") == []
    assert findings(_kube_proxy("iptables", False)(healthy()), "kube-proxy-strict-arp") == []


def test_strict_arp_from_kube_proxy_flags() -> None:
    container = {"name": "kube-proxy", "command": ["kube-proxy", "--proxy-mode=ipvs"]}
    pod = {"kind": "Pod", "metadata": {"name": "kube-proxy-x", "namespace": "kube-system"},
           "spec": {"hostNetwork": True, "containers": [container]}}  # fmt: skip
    (f,) = findings(replace(healthy(), pods=(pod,)), "kube-proxy-strict-arp")
    assert "Pod kube-system/kube-proxy-x --proxy-mode" in f.evidence[0]
    pod["spec"]["containers"][0]["command"].append("--ipvs-strict-arp")
    assert findings(replace(healthy(), pods=(pod,)), "kube-proxy-strict-arp") == []


def test_pool_overlap_with_declared_pod_cidrs() -> None:
    nodes = [
        dict(n, spec={"podCIDRs": [f"10.244.{i}.0/24"]}) for i, n in enumerate(healthy().nodes)
    ]
    snap = _config(*CONFIG, pool("p", "10.244.0.0/16", auto=False))(
        replace(healthy(), nodes=tuple(nodes))
    )
    (f,) = findings(snap, "pool-overlap")
    assert "Node n1 spec.podCIDRs 10.244.0.0/24 is inside the pool's 10.244.0.0/16" in f.evidence


def test_l2_interfaces_partly_missing_is_a_warning() -> None:
    snap = _config(*CONFIG[:4], l2_ad("l2", ["l2"], ["eth1", "bond0"]))(healthy())
    (f,) = findings(snap, "l2-interfaces")
    assert f.severity == Severity.WARNING
    assert "L2Advertisement l2 on n1: lacks bond0 (eth1)" in f.evidence
    # an interface the sidecar does not report is unknown: no guess
    unknown = with_speakers(snap, n1={**status_doc("n1"), "l2": {"sidecar": None}})
    assert all(
        "on n1" not in line for x in findings(unknown, "l2-interfaces") for line in x.evidence
    )


def test_l2_nodes_not_selected_are_not_asked() -> None:
    ad = l2_ad("l2", ["l2"], ["eth9"])
    ad["spec"]["nodeSelectors"] = [{"matchLabels": {"l2": "yes"}}]
    assert findings(_config(*CONFIG[:4], ad)(healthy()), "l2-interfaces") == []


def test_metallb_with_another_class_is_no_conflict() -> None:
    snap = _metallb(healthy())
    controller = snap.workloads[-1]
    controller["spec"]["template"]["spec"]["containers"][0]["args"].append("--lb-class=metallb")
    assert findings(snap, "other-load-balancers") == []


def test_metallb_scaled_to_zero_is_not_running() -> None:
    snap = _metallb(healthy())
    snap.workloads[-1]["spec"]["replicas"] = 0
    assert findings(snap, "other-load-balancers") == []


def test_metallb_claims_are_shown_from_its_events() -> None:
    (f,) = findings(_metallb(healthy()), "other-load-balancers")
    assert any("1 event(s) from MetalLB on exalb's Services" in line for line in f.evidence)
    assert "Migrating from MetalLB" in f.fix


def _kube_vip(**env: str) -> Snapshot:
    ds = {
        "kind": "DaemonSet",
        "metadata": {"name": "kube-vip-ds", "namespace": "kube-system"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "kube-vip", "image": "ghcr.io/kube-vip/kube-vip:v0.8.9", "args": ["manager"],
             "env": [{"name": k, "value": v} for k, v in {"cp_enable": "true", **env}.items()]}]}}},
        "status": {"desiredNumberScheduled": 3, "numberReady": 3},
    }  # fmt: skip
    snap = healthy()
    return replace(snap, workloads=(*snap.workloads, ds))


def test_kube_vip_serving_services_is_found() -> None:
    (f,) = findings(_kube_vip(svc_enable="true"), "other-load-balancers")
    assert f.severity == Severity.ERROR and f.title.startswith("kube-vip runs")
    assert any("DaemonSet kube-system/kube-vip-ds: 3/3 ready" in line for line in f.evidence)
    assert "loadBalancerClass" in f.fix


def test_kube_vip_for_the_control_plane_only_or_another_class_is_no_conflict() -> None:
    """kube-vip holding only the API server's address (no svc_enable), or serving Services of
    another class (lb_class_name), claims none of exalb's Services."""
    assert findings(_kube_vip(), "other-load-balancers") == []
    assert findings(_kube_vip(svc_enable="false"), "other-load-balancers") == []
    snap = _kube_vip(svc_enable="true", lb_class_name="kube-vip.io/kube-vip-class")
    assert findings(snap, "other-load-balancers") == []


def test_speaker_missing_entirely() -> None:
    snap = replace(healthy(), speaker_pods=(), speaker_daemonsets=())
    (f,) = findings(snap, "speakers-ready")
    assert f.severity == Severity.ERROR and "no exalb speaker" in f.title


def test_nodes_the_daemonset_does_not_target_are_info() -> None:
    tainted = node("n4", "198.51.100.14")
    tainted["spec"] = {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}
    snap = replace(healthy(), nodes=(*healthy().nodes, tainted))
    (f,) = findings(snap, "speakers-ready")
    assert f.severity == Severity.INFO and "n4" in f.title


def test_runs_on_selector_affinity_and_taints() -> None:
    ds = speaker_daemonset()
    assert runs_on(ds, node("n1", "198.51.100.11"))
    windows = node("w", "198.51.100.20")
    windows["metadata"]["labels"]["kubernetes.io/os"] = "windows"
    assert not runs_on(ds, windows)
    ds["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "migrated", "operator": "DoesNotExist"}]}]}}}  # fmt: skip
    assert not runs_on(ds, node("n2", "198.51.100.12", migrated="true"))
    assert runs_on(ds, node("n2", "198.51.100.12"))
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert not tolerated(taint, [])
    assert tolerated(taint, [{"key": "node-role.kubernetes.io/control-plane",
                              "operator": "Exists", "effect": "NoSchedule"}])  # fmt: skip
    assert tolerated({"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}, [])
    assert tolerated({"key": "x", "effect": "PreferNoSchedule"}, [])


def test_explain_bgp_notifications() -> None:
    assert explain("notification sent (2,2)") == (
        "ExaBGP: notification sent (2,2) (ExaBGP sent OPEN message error, bad peer AS)"
    )
    assert explain("notification received (6,7)").endswith("connection collision resolution)")
    assert explain("closing connection") == "ExaBGP: closing connection"
    assert "never got past connecting" in explain(None)


def test_session_down_fix_names_the_field() -> None:
    (f,) = findings(_session_down(healthy()), "bgp-sessions")
    assert "spec.myASN" in f.fix and f.title.endswith("1 node(s): n2")
    doc = status_doc("n2", state="active", reason="notification sent (2,2)")
    (f,) = findings(with_speakers(healthy(), n2=doc), "bgp-sessions")
    assert "spec.peerASN" in f.fix


# -- skipped checks, report, rendering -------------------------------------------------------


def test_unreadable_parts_skip_their_checks_and_say_so() -> None:
    snap = replace(healthy(), unreadable={"nodes": "403 nodes is forbidden"})
    report = run_checks(snap)
    skipped = {r.check for r in report.results if r.skipped}
    assert skipped == {"speakers-ready", "exclude-lb-label", "pool-overlap", "l2-interfaces",
                       "local-endpoints"}  # fmt: skip
    (api,) = [f for f in report.findings if f.check == "api-access"]
    assert api.title == "could not read nodes: 403 nodes is forbidden"
    assert "pool-overlap" in api.evidence[0]
    assert report.exit_code == 0  # warnings only: the doctor could not look
    text = render_report(report)
    assert "skipped  pool-overlap: nodes: 403 nodes is forbidden" in text


def test_pods_proxy_denial_is_reported_once() -> None:
    report = run_checks(_no_proxy(healthy()))
    assert [f.check for f in report.findings] == ["live-view-access"]
    assert {r.check for r in report.results if r.skipped} == {
        "speaker-status", "bgp-sessions", "l2-interfaces"}  # fmt: skip


def test_report_json_and_exit_code() -> None:
    report = run_checks(_session_down(healthy()))
    doc = report.to_json()
    assert doc["summary"] == {"error": 1, "warning": 0, "info": 0}
    assert doc["findings"][0]["check"] == "bgp-sessions"
    assert set(doc["findings"][0]) == {"check", "severity", "title", "evidence", "fix"}
    assert {c["status"] for c in doc["checks"]} == {"ok", "findings"}
    assert report.exit_code == 1


def test_render_text() -> None:
    text = render_report(run_checks(_session_down(healthy())))
    assert text.startswith("exalb doctor: namespace metallb-system, 13 of 13 checks ran: 1 error")
    assert "ERROR    bgp-sessions: BGP session to r1 (198.51.100.1)" in text
    assert "evidence  n2: state active" in text and "fix " in text
    assert render_report(run_checks(healthy())).endswith("no problems found\n")


def test_evidence_is_capped() -> None:
    lines = evidence(str(i) for i in range(30))
    assert len(lines) == 12 and lines[-1] == "... and 19 more"


def test_findings_sorted_by_severity() -> None:
    report = Report("ns", tuple(run_checks(_label_all(_no_proxy(healthy()))).results))
    ranks = [f.severity for f in report.findings]
    assert ranks == sorted(ranks, key=[Severity.ERROR, Severity.WARNING, Severity.INFO].index)


# -- gathering (fake API) and the CLI --------------------------------------------------------


class FakeKube:
    """Answers the gatherer's reads from a snapshot; ``forbid`` names refused resources."""

    def __init__(self, snap: Snapshot, forbid: frozenset[str] = frozenset()) -> None:
        self.snap, self.forbid = snap, forbid

    def list(
        self, resource: Any, namespace: str | None = None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> Any:  # fmt: skip
        if resource.plural in self.forbid:
            raise ApiError(403, "Forbidden", {"message": f"{resource.plural} is forbidden"})
        s = self.snap
        table = {
            "nodes": s.nodes, "services": s.services, "endpointslices": s.endpoint_slices,
            "events": s.events, "servicecidrs": s.service_cidrs, "deployments": (),
            "validatingwebhookconfigurations": s.webhooks,
            "pods": s.speaker_pods if label_selector else s.pods,
            "daemonsets": s.speaker_daemonsets,
        }  # fmt: skip
        if resource.group == "metallb.io":
            items = [o for o in s.config_objects if o["kind"] == resource.kind]
        else:
            items = list(table[resource.plural])
        return ListResult(items, "1")

    def get(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        return None

    def request(self, method: str, path: str, *, query: Any = None, body: Any = None,
                timeout: float = 30) -> dict[str, Any]:  # fmt: skip
        attrs = body["spec"]["resourceAttributes"]
        forwarding = attrs.get("subresource") == "portforward"
        allowed = not ("pods/portforward" in self.forbid and forwarding)
        return {"status": {"allowed": allowed}}


def test_gather_reads_every_part() -> None:
    want = healthy()
    snap = gather(FakeKube(want), namespace=NS, selector=SELECTOR, config_map="config",
                  read_speakers=lambda: list(want.speakers))  # fmt: skip
    assert snap.unreadable == {}
    assert len(snap.config_objects) == len(CONFIG) and len(snap.speakers) == 3
    assert run_checks(snap).findings == []


def test_gather_records_refusals() -> None:
    want = healthy()
    calls: list[int] = []
    snap = gather(FakeKube(want, frozenset({"nodes", "pods/portforward"})), namespace=NS,
                  selector=SELECTOR, config_map="config",
                  read_speakers=lambda: calls.append(1) or [])  # fmt: skip
    assert snap.unreadable["nodes"] == "403 nodes is forbidden"
    assert "pods/portforward" in snap.unreadable["speakers"] and calls == []
    assert [a.allowed for a in snap.access] == [False, False, True]


def test_cli_without_a_cluster_reports_and_exits_1(tmp_path: Any) -> None:
    out = io.StringIO()
    code = main(["doctor", "--kubeconfig", str(tmp_path / "missing"), "-o", "json"], out=out)
    doc = json.loads(out.getvalue())
    assert code == 1 and doc["findings"][0]["check"] == "api-access"
    assert doc["findings"][0]["severity"] == "error"


def test_app_pod_ips_are_evidence_of_the_pod_network() -> None:
    snap = replace(healthy(), pods=(app_pod("x", "n3", "198.18.130.7"),))
    snap = _config(*CONFIG, pool("p", "198.18.130.0/25", auto=False))(snap)
    (f,) = findings(snap, "pool-overlap")
    assert f.evidence == ("Pod app/x IP 198.18.130.7 is inside the pool's 198.18.130.0/25",)
    assert Facts(snap).config is not None
