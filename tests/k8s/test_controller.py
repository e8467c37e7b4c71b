"""The controller against a real kube-apiserver: assign, keep and explain Service IPs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from exalb.k8s.client import ApiError
from exalb.k8s.resources import (
    BGP_ADVERTISEMENTS,
    BGP_PEERS,
    IP_ADDRESS_POOLS,
    LEASES,
    NAMESPACES,
    SERVICES,
)
from exalbctl.main import main as exalbctl
from lab.controlplane import ControlPlane
from tests.conftest import running_control_plane
from tests.k8s.controller_env import Env, install_crds, wait_for

pytestmark = pytest.mark.k8s

OUT_OF_POOL = "exalb.io/OutOfPool"
ALLOCATED = "exalb.io/IPAllocated"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    """A control plane of this module's own, dual-stack, with the chart's CRDs."""
    with running_control_plane(
        "controller tests",
        extra_apiserver_args=("--service-cluster-ip-range=10.96.0.0/16,2001:db8:96::/112",),
    ) as plane:
        install_crds(plane)
        yield plane


@pytest.fixture
def env(cp: ControlPlane, tmp_path: Path) -> Iterator[Env]:
    e = Env(cp, tmp_path)
    # CRDs may take a moment to be served after install.
    wait_for("metallb.io served", lambda: _served(e), 30)
    try:
        yield e
    finally:
        e.close()


def _served(e: Env) -> bool:
    try:
        e.kube.list(IP_ADDRESS_POOLS, e.config_ns)
    except Exception:  # noqa: BLE001 (polled: any failure means "not served yet")
        return False
    return True


def test_allocates_writes_status_annotation_condition_event_and_metrics(env: Env) -> None:
    env.pool("web", "203.0.113.0/30")
    env.apply(BGP_ADVERTISEMENTS, "all", {})
    ctl = env.start_controller()
    env.service("a")
    assert env.wait_ips("a") == ["203.0.113.0"]
    obj = env.get("a")
    assert obj["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "web"
    # one write: the annotation came with the status, through the status subresource (the
    # API server records which subresource set each field)
    pool_key = "f:metallb.io/ip-allocated-from-pool"
    managed = obj["metadata"].get("managedFields") or []
    owners = [m for m in managed if pool_key in json.dumps(m.get("fieldsV1"))]
    assert [m.get("subresource") for m in owners] == ["status"], owners
    assert "f:loadBalancer" in json.dumps(owners[0]["fieldsV1"])
    cond = env.condition("a", ALLOCATED)
    assert cond is not None and cond["status"] == "True"
    wait_for("IPAllocated event", lambda: "IPAllocated" in env.event_reasons("a"))
    wait_for(
        "in-use metric",
        lambda: (
            ctl.metric("exalb_allocator_addresses_in_use_total", pool="web", family="IPv4") == 1.0
        ),
    )
    assert ctl.metric("exalb_allocator_addresses_total", pool="web", family="IPv4") == 4.0
    assert ctl.metric("exalb_k8s_client_config_stale_bool") == 0.0
    wait_for(
        "pool status",
        lambda: (
            (env.kube.get(IP_ADDRESS_POOLS, "web", env.config_ns) or {})
            .get("status", {})
            .get("assignedIPv4")
            == 1
        ),
    )


def test_annotations_both_prefixes_spec_ip_and_pool_choice(env: Env) -> None:
    env.pool("a", "203.0.113.0/29")
    env.pool("b", "198.51.100.0/29", autoAssign=False)
    env.start_controller()
    env.service("new-prefix", annotations={"metallb.io/loadBalancerIPs": "203.0.113.5"})
    env.service("old-prefix", annotations={"metallb.universe.tf/address-pool": "b"})
    env.service("spec-ip", loadBalancerIP="198.51.100.3")
    env.service(
        "both",
        annotations={"metallb.io/loadBalancerIPs": "203.0.113.6"},
        loadBalancerIP="203.0.113.7",
    )
    assert env.wait_ips("new-prefix") == ["203.0.113.5"]
    assert env.wait_ips("old-prefix") == ["198.51.100.0"]
    assert env.wait_ips("spec-ip") == ["198.51.100.3"]
    wait_for("deprecation event", lambda: "deprecatedAnnotation" in env.event_reasons("old-prefix"))
    wait_for("LoadBalancerFailed", lambda: "LoadBalancerFailed" in env.event_reasons("both"))
    assert env.ips("both") == []
    cond = env.condition("both", ALLOCATED)
    assert cond is not None and cond["status"] == "False"
    assert "only one" in cond["message"]


def test_sharing_accepted_and_refused(env: Env) -> None:
    env.pool("p", "203.0.113.0/30")
    env.start_controller()
    share = {"metallb.io/allow-shared-ip": "k"}
    env.service("dns-udp", ports=[("UDP", 53)], annotations=share)
    ip = env.wait_ips("dns-udp")
    env.service("dns-tcp", ports=[("TCP", 53)], annotations=share, loadBalancerIP=ip[0])
    assert env.wait_ips("dns-tcp") == ip
    # Same port twice on one IP: refused, stays pending with a reason.
    env.service("dns-tcp2", ports=[("TCP", 53)], annotations=share, loadBalancerIP=ip[0])
    wait_for("AllocationFailed", lambda: "AllocationFailed" in env.event_reasons("dns-tcp2"))
    assert env.ips("dns-tcp2") == []
    # Different key: refused.
    env.service(
        "other",
        ports=[("TCP", 80)],
        annotations={"metallb.io/allow-shared-ip": "x"},
        loadBalancerIP=ip[0],
    )
    wait_for("AllocationFailed", lambda: "AllocationFailed" in env.event_reasons("other"))
    # Local policy with another selector cannot join a Cluster-policy share.
    env.service(
        "local",
        ports=[("TCP", 81)],
        annotations=share,
        loadBalancerIP=ip[0],
        externalTrafficPolicy="Local",
    )
    wait_for("AllocationFailed", lambda: "AllocationFailed" in env.event_reasons("local"))


def test_dual_stack_and_release_on_delete_and_type_change(env: Env) -> None:
    env.pool("dual", "203.0.113.0/31", "2001:db8:ffff::/127")
    env.start_controller()
    env.service("ds", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
    assert env.wait_ips("ds", 2) == ["203.0.113.0", "2001:db8:ffff::"]
    env.service("v4")
    assert env.wait_ips("v4") == ["203.0.113.1"]
    env.service("pending")
    wait_for("AllocationFailed", lambda: "AllocationFailed" in env.event_reasons("pending"))
    # Type change away from LoadBalancer releases and clears what we wrote.
    env.kube.patch(SERVICES, "v4", {"spec": {"type": "ClusterIP"}}, env.app_ns)
    wait_for("status cleared", lambda: env.ips("v4") == [])
    wait_for(
        "annotation removed",
        lambda: (
            "metallb.io/ip-allocated-from-pool"
            not in (env.get("v4")["metadata"].get("annotations") or {})
        ),
    )
    # The freed IP goes to the pending Service.
    assert env.wait_ips("pending") == ["203.0.113.1"]
    env.kube.delete(SERVICES, "ds", env.app_ns)
    env.service("after")
    assert env.wait_ips("after") == ["203.0.113.0"]


def test_restart_with_1000_services_changes_nothing(env: Env) -> None:
    env.pool("big", "198.51.100.0/24", "203.0.113.0/24", "2001:db8:ffff::/118")
    ctl = env.start_controller()
    names = [f"s{i:04d}" for i in range(1000)]
    env.services(names[:500])
    env.services(names[500:], ipFamilies=["IPv6"], ipFamilyPolicy="SingleStack")
    wait_for(
        "1000 IPs",
        lambda: sum(bool(v) for v in env.all_ips().values()) == 1000,
        timeout=180,
        interval=1.0,
    )
    before = {
        o["metadata"]["name"]: (
            o["metadata"]["resourceVersion"],
            o["status"]["loadBalancer"]["ingress"],
        )
        for o in env.kube.list(SERVICES, env.app_ns).items
    }
    assert len({tuple(i["ip"] for i in v[1]) for v in before.values()}) == 1000
    ctl.stop()
    ctl2 = env.start_controller()
    wait_for(
        "restore logged",
        lambda: any(e.get("event") == "restored assignments" for e in ctl2.logs()),
        30,
    )
    wait_for(
        "queue drained",
        lambda: ctl2.metric("exalb_allocator_services_allocated_total", pool="big") == 1000.0,
        60,
    )
    after = {
        o["metadata"]["name"]: (
            o["metadata"]["resourceVersion"],
            o["status"]["loadBalancer"]["ingress"],
        )
        for o in env.kube.list(SERVICES, env.app_ns).items
    }
    # Not one IP moved, and not one Service was even written to.
    assert after == before


def test_pool_edit_delete_and_no_pools_keep_ips_and_flag_them(env: Env) -> None:
    env.pool("web", "203.0.113.0/29")
    ctl = env.start_controller()
    ips = {}
    for name in ("a", "b", "c"):  # one at a time, so that a holds .0 (allocation is in order)
        env.service(name)
        ips[name] = env.wait_ips(name)
    assert ips["a"] == ["203.0.113.0"]
    # Shrink the pool so that a's IP (.0) leaves it.
    env.pool("web", "203.0.113.1-203.0.113.7")
    wait_for("a flagged", lambda: (env.condition("a", OUT_OF_POOL) or {}).get("status") == "True")
    assert {n: env.ips(n) for n in ips} == ips
    wait_for("IPOutOfPool event", lambda: "IPOutOfPool" in env.event_reasons("a"))
    wait_for("metric", lambda: ctl.metric("exalb_allocator_out_of_pool_services") == 1.0)
    # A new Service never gets the kept IP.
    env.service("d")
    assert env.wait_ips("d") == ["203.0.113.3"]
    # Delete the pool in use, then every pool: nothing moves.
    env.delete(IP_ADDRESS_POOLS, "web")
    wait_for("all flagged", lambda: ctl.metric("exalb_allocator_out_of_pool_services") == 4.0)
    assert {n: env.ips(n) for n in ips} == ips
    # A new pool; explicit migration moves only the annotated Service.
    env.pool("new", "198.51.100.0/30")
    env.kube.patch(
        SERVICES, "b", {"metadata": {"annotations": {"exalb.io/migrate": "true"}}}, env.app_ns
    )
    wait_for("b migrated", lambda: env.ips("b") == ["198.51.100.0"])
    wait_for("IPMigrated event", lambda: "IPMigrated" in env.event_reasons("b"))
    assert env.ips("a") == ips["a"] and env.ips("c") == ips["c"]
    assert env.condition("b", OUT_OF_POOL) is None


def test_apiserver_restart_mid_run(env: Env, cp: ControlPlane) -> None:
    env.pool("p", "203.0.113.0/27")
    env.start_controller()
    env.services([f"x{i}" for i in range(10)])
    wait_for("10 IPs", lambda: sum(bool(v) for v in env.all_ips().values()) == 10)
    cp.restart_apiserver()
    env.services([f"y{i}" for i in range(10)])
    wait_for("20 IPs", lambda: sum(bool(v) for v in env.all_ips().values()) == 20, timeout=60)
    got = [tuple(v) for v in env.all_ips().values()]
    assert len(set(got)) == 20  # no IP handed out twice


def test_apiserver_away_for_a_minute(env: Env, cp: ControlPlane) -> None:
    """A 60 s outage: the controller keeps running, resumes, and loses no work."""
    env.pool("p", "203.0.113.0/27")
    ctl = env.start_controller()
    env.services([f"x{i}" for i in range(5)])
    wait_for("5 IPs", lambda: sum(bool(v) for v in env.all_ips().values()) == 5)
    before = env.all_ips()
    cp.restart_apiserver(down_for=60.0)
    assert ctl.proc.poll() is None, "the controller must survive the outage"
    env.services([f"y{i}" for i in range(5)])
    wait_for("10 IPs", lambda: sum(bool(v) for v in env.all_ips().values()) == 10, timeout=60)
    after = env.all_ips()
    assert {k: after[k] for k in before} == before
    assert len({tuple(v) for v in after.values()}) == 10


def test_invalid_config_keeps_last_good_and_reports_on_the_object(env: Env) -> None:
    env.pool("good", "203.0.113.0/30")
    ctl = env.start_controller()
    env.service("a")
    assert env.wait_ips("a") == ["203.0.113.0"]
    # A cross-object error (overlap) the API server cannot see.
    env.pool("bad", "203.0.113.2/31")
    wait_for("stale metric", lambda: ctl.metric("exalb_k8s_client_config_stale_bool") == 1.0)
    events = wait_for(
        "InvalidConfig event",
        lambda: [e for e in env.events("bad", env.config_ns) if e["reason"] == "InvalidConfig"],
    )
    assert "overlaps 203.0.113.0/30" in events[0]["message"]
    # The last good config stays in force: allocation goes on from "good" only.
    env.service("b")
    assert env.wait_ips("b") == ["203.0.113.1"]
    env.delete(IP_ADDRESS_POOLS, "bad")
    wait_for("fresh metric", lambda: ctl.metric("exalb_k8s_client_config_stale_bool") == 0.0)


def test_invalid_object_rejected_by_the_api_server(env: Env) -> None:
    with pytest.raises(ApiError) as err:
        env.pool("broken", "203.0.113.0/33")
    assert err.value.status == 422 and "addresses" in err.value.message


def test_two_replicas_one_leader_and_failover(env: Env) -> None:
    env.pool("p", "203.0.113.0/28")
    first = env.start_controller()
    second = env.start_controller(ready=False)
    env.services(["a", "b"])  # created concurrently: either may get .0
    before = {"a": env.wait_ips("a"), "b": env.wait_ips("b")}
    assert sorted(before["a"] + before["b"]) == ["203.0.113.0", "203.0.113.1"]
    assert second.http("/readyz")[0] != 200  # waiting for the Lease, allocating nothing
    lease = env.kube.get(LEASES, f"exalb-{env.config_ns}", env.config_ns)
    assert lease is not None
    first.stop()  # releases the Lease on a clean exit
    second.wait_ready(timeout=30)
    env.service("c")
    assert env.wait_ips("c") == ["203.0.113.2"]
    assert {"a": env.ips("a"), "b": env.ips("b")} == before  # the new leader moved nothing


def test_plan_against_the_live_cluster(env: Env, tmp_path: Path) -> None:
    env.pool("web", "203.0.113.0/30")
    env.start_controller()
    env.services(["a", "b"])
    env.wait_ips("a")
    env.wait_ips("b")
    new = tmp_path / "new.yaml"
    new.write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        "metadata: {name: web, namespace: x}\nspec: {addresses: [203.0.113.1/32]}\n"
    )
    out = io.StringIO()
    code = exalbctl(
        ["plan", "-f", str(new), "--kubeconfig", str(env.cp.kubeconfig), "-o", "json"], out
    )
    assert code == 0
    rows = {r["service"]: r for r in json.loads(out.getvalue())}
    kept = "a" if env.ips("a") == ["203.0.113.1"] else "b"
    lost = "b" if kept == "a" else "a"
    assert rows[f"{env.app_ns}/{lost}"]["action"] == "out-of-pool"
    assert rows[f"{env.app_ns}/{kept}"]["action"] == "keep"
    assert env.ips(lost) == ["203.0.113.0"]  # plan changed nothing


def test_v1beta1_bgppeer_yaml_still_applies(env: Env) -> None:
    """Older MetalLB YAML (BGPPeer v1beta1) is accepted and read back as v1beta2."""
    body = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BGPPeer",
        "metadata": {"name": "old"},
        "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "198.18.0.1", "holdTime": "90s"},
    }
    env.kube.request(
        "POST", f"/apis/metallb.io/v1beta1/namespaces/{env.config_ns}/bgppeers", body=body
    )
    got = env.kube.get(BGP_PEERS, "old", env.config_ns)
    assert got is not None and got["apiVersion"] == "metallb.io/v1beta2"
    assert got["spec"]["peerAddress"] == "198.18.0.1"


# -- issue 11: MetalLB conformance, as events, conditions and metrics on real objects -------


def _flag_metric(ctl: object, flag: str) -> float | None:
    return ctl.metric("exalb_allocator_flagged_services", flag=flag)  # type: ignore[attr-defined]


def test_require_dual_stack_after_single_stack_completes_the_pair(env: Env) -> None:
    """Point 1: a SingleStack Service turned RequireDualStack keeps its IPv4 and gets an
    IPv6 from the same pool (MetalLB would clear and re-allocate the pair); a pool without
    IPv6 flags missingFamily (condition, AdditionalAssignFailed) until it gains IPv6."""
    env.pool("v4", "203.0.113.0/30")
    ctl = env.start_controller()
    env.service("a")
    assert env.wait_ips("a") == ["203.0.113.0"]
    env.kube.patch(
        SERVICES,
        "a",
        {"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}},
        env.app_ns,
    )
    wait_for(
        "missingFamily",
        lambda: (env.condition("a", "exalb.io/MissingFamily") or {}).get("status") == "True",
    )
    assert env.ips("a") == ["203.0.113.0"]
    wait_for("event", lambda: "AdditionalAssignFailed" in env.event_reasons("a"))
    wait_for("metric", lambda: _flag_metric(ctl, "missingFamily") == 1.0)
    env.pool("v4", "203.0.113.0/30", "2001:db8:ffff::/126")
    assert env.wait_ips("a", 2) == ["203.0.113.0", "2001:db8:ffff::"]
    wait_for("flag cleared", lambda: env.condition("a", "exalb.io/MissingFamily") is None)
    wait_for("metric cleared", lambda: _flag_metric(ctl, "missingFamily") == 0.0)


def test_extra_status_ips_wrong_family_and_avoid_buggy_ips(env: Env) -> None:
    """Points 2, 3 and 9 (wrong family). Status written while no controller runs: three IPs
    on a SingleStack Service are cut to the first usable IPv4 (ExtraIPsReleased); an IPv6 on
    a SingleStack IPv4 Service is kept and flagged wrongFamily. Then avoidBuggyIPs is
    turned on under a Service holding .0: kept, flagged out-of-pool."""
    env.pool("p", "203.0.113.0/29", "2001:db8:ffff::/126")
    for name in ("three", "v6", "zero"):
        env.service(name)
    status = {
        "three": ["198.51.100.9", "203.0.113.5", "2001:db8:ffff::1", "203.0.113.6"],
        "v6": ["2001:db8:ffff::2"],
        "zero": ["203.0.113.0"],
    }
    for name, ips in status.items():
        body = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
        env.kube.patch(SERVICES, name, body, env.app_ns, subresource="status")
    ctl = env.start_controller()
    wait_for("trimmed", lambda: env.ips("three") == ["203.0.113.5"])
    events = wait_for(
        "ExtraIPsReleased",
        lambda: [e for e in env.events("three") if e["reason"] == "ExtraIPsReleased"],
    )
    assert events[0]["type"] == "Warning"
    assert "released 198.51.100.9, 2001:db8:ffff::1, 203.0.113.6" in events[0]["message"]
    wait_for(
        "wrongFamily",
        lambda: (env.condition("v6", "exalb.io/WrongFamily") or {}).get("status") == "True",
    )
    assert env.ips("v6") == ["2001:db8:ffff::2"]
    wait_for("IPWrongFamily event", lambda: "IPWrongFamily" in env.event_reasons("v6"))
    wait_for("metric", lambda: _flag_metric(ctl, "wrongFamily") == 1.0)
    # A released IP is free again.
    env.service("next", loadBalancerIP="203.0.113.6")
    assert env.wait_ips("next") == ["203.0.113.6"]
    env.pool("p", "203.0.113.0/29", "2001:db8:ffff::/126", avoidBuggyIPs=True)
    cond = wait_for(
        "zero out of pool",
        lambda: (c := env.condition("zero", OUT_OF_POOL)) and c["status"] == "True" and c,
    )
    assert "excluded by avoidBuggyIPs" in cond["message"]
    assert env.ips("zero") == ["203.0.113.0"]
    wait_for("IPOutOfPool", lambda: "IPOutOfPool" in env.event_reasons("zero"))
    wait_for("out-of-pool metric", lambda: _flag_metric(ctl, "outOfPool") == 1.0)


def test_selectors_no_longer_matching_and_requests_not_met_are_flagged(env: Env) -> None:
    """Point 9: the Service keeps its IP and is flagged (condition, event, metric) where
    MetalLB would move it: its namespace no longer matches the pool's namespaceSelectors;
    a requested IP lies outside every pool while it holds another."""
    env.pool(
        "team",
        "203.0.113.0/30",
        serviceAllocation={"namespaceSelectors": [{"matchLabels": {"team": "a"}}]},
    )
    env.pool("rest", "198.51.100.0/30")
    env.kube.patch(NAMESPACES, env.app_ns, {"metadata": {"labels": {"team": "a"}}})
    ctl = env.start_controller()
    env.service("a")
    env.service("b")
    assert env.wait_ips("a") == ["203.0.113.0"]
    assert env.wait_ips("b") == ["203.0.113.1"]
    env.kube.patch(NAMESPACES, env.app_ns, {"metadata": {"labels": {"team": "b"}}})
    cond = wait_for(
        "notSelectedByPool",
        lambda: (c := env.condition("a", "exalb.io/NotSelectedByPool")) and c,
    )
    assert cond["status"] == "True" and cond["reason"] == "NotSelectedByPool"
    assert env.ips("a") == ["203.0.113.0"]
    wait_for("event", lambda: "NotSelectedByPool" in env.event_reasons("a"))
    wait_for("metric", lambda: _flag_metric(ctl, "notSelectedByPool") == 2.0)
    # A requested IP in no pool: kept, AllocationFailed, requestNotMet.
    env.kube.patch(
        SERVICES, "b", {"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "198.18.0.77"}}},
        env.app_ns,
    )  # fmt: skip
    wait_for(
        "requestNotMet",
        lambda: (env.condition("b", "exalb.io/RequestNotMet") or {}).get("status") == "True",
    )
    assert env.ips("b") == ["203.0.113.1"]
    events = [e for e in env.events("b") if e["reason"] == "AllocationFailed"]
    assert events and "the current IP 203.0.113.1 is kept" in events[-1]["message"]
    # Labels back: the flag goes; the request withdrawn: that flag goes too.
    env.kube.patch(NAMESPACES, env.app_ns, {"metadata": {"labels": {"team": "a"}}})
    wait_for("cleared", lambda: env.condition("a", "exalb.io/NotSelectedByPool") is None)
    env.kube.patch(
        SERVICES, "b", {"metadata": {"annotations": {"metallb.io/loadBalancerIPs": None}}},
        env.app_ns,
    )  # fmt: skip
    wait_for("request cleared", lambda: env.condition("b", "exalb.io/RequestNotMet") is None)
    wait_for("metrics cleared", lambda: _flag_metric(ctl, "requestNotMet") == 0.0)
    assert env.ips("b") == ["203.0.113.1"]


def test_no_pools_configured_is_an_allocation_failed_warning(env: Env) -> None:
    """Point 10: MetalLB says nothing on the Service when no pool exists; exalb gives an
    AllocationFailed warning naming the cause (README lists the difference)."""
    env.start_controller()
    env.service("a")
    events = wait_for(
        "AllocationFailed",
        lambda: [e for e in env.events("a") if e["reason"] == "AllocationFailed"],
    )
    assert events[0]["type"] == "Warning"
    assert "no IPAddressPool is configured" in events[0]["message"]
    assert env.ips("a") == []
