"""Traffic that does not drop, and ECMP weighted by where the pods are, on the real cluster
(containerlab/k8s-bgp: real kubelets, kube-proxy, pods, the chart installed with helm; FRR r1
as the router). The oracle is the router: r1's kernel FIB sampled every 5 ms and FRR's JSON;
the client in namespace ``c`` counts what it sees (:mod:`lab.traffic`).

* Rolling upgrade: ``helm upgrade`` rolls the speaker DaemonSet on all three nodes while the
  client opens 20 connections/s to a Cluster-policy Service: none is lost, because each
  leaving speaker first announces GRACEFUL_SHUTDOWN (r1 moves its traffic to the other two
  nodes) and withdraws only after the drain time. Connections that r1's ECMP changes
  re-hash to another node (long-lived ones, and a new one caught in flight by a change) are
  reported, not asserted: FRR 8.4 installs hash-threshold multipath and has no resilient
  next-hop groups for BGP routes (``bench/rolling.py`` has the figures, and the graceful
  restart alternative that changes nothing at the router).
* ``kubectl drain`` of a node that opted in (``exalb.io/drain-on-cordon``), then its power
  goes off: its path was drained then withdrawn while its pods moved, so no new connection
  is lost (``bench/rolling.py`` shows what the same does to a node that did not opt in).
* Weighted ECMP (the advertisement's ``exalb.io/weighted-ecmp``): 3 pods on n1 and 1 on n2
  give r1 kernel weights 75/25 and about that split of new connections; scaling changes the
  weights and never resets a BGP session.

The module installs its own release and removes it (and its namespace) at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab import rollout
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump, load_balancer
from lab.rollout import NS, Outcome, measured, paths, wait_paths
from lab.runner import Lab
from lab.traffic import NewConnections
from lab.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.k8s]
APP = "zero-loss"
ALL = rollout.ALL_NODES


class Release:
    def __init__(self, lab: Lab, values: dict[str, Any], ip: str) -> None:
        self.lab, self.values, self.ip = lab, values, ip
        assert lab.cluster is not None
        self.cluster: Cluster = lab.cluster


@pytest.fixture(scope="module")
def release(cluster_lab: Lab) -> Iterator[Release]:
    lab = cluster_lab
    cluster = lab.cluster
    assert cluster is not None
    lab.exec("r1", ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])  # L4 hash
    values = rollout.release_values(cluster)
    try:
        rollout.helm(cluster, "install", values)
        ip = rollout.deploy_backend(cluster, APP)
        wait_paths(lab, ip, ALL)
        yield Release(lab, values, ip)
    finally:
        cluster.kubectl("delete", "namespace", APP, "--wait=true", check=False, timeout=180)
        cluster.helm("uninstall", "exalb", "-n", NS, "--wait", check=False)


def _report(outcome: Outcome) -> None:
    """No new connection is lost; one in flight when r1's ECMP set changed may be re-hashed
    (reported, like the long-lived ones: see lab.rollout)."""
    print("\n" + "\n".join(outcome.lines()))
    assert outcome.new is not None and outcome.long is not None
    assert outcome.new.total >= 100, "the client did not keep up its stream"
    first = outcome.started
    lost = [f"t+{a.started - first:.2f}s {a.error} after {a.seconds:.2f}s" for a in outcome.lost]
    assert not lost, f"{outcome.new.summary()}: lost {lost}"


def test_rolling_upgrade_of_the_speakers_loses_no_new_connection(release: Release) -> None:
    lab, cluster, ip = release.lab, release.cluster, release.ip
    before = rollout.speaker_pods(cluster)
    with measured(lab, ip, "helm upgrade rolling the speaker DaemonSet") as outcome:
        rollout.roll_speakers(cluster, release.values, outcome)
        wait_paths(lab, ip, ALL)
    after = rollout.speaker_pods(cluster)
    assert set(after) == ALL and not set(after.values()) & set(before.values())
    _report(outcome)
    # every node left r1's ECMP set (drained) and came back; never fewer than two paths
    left = {n for _, nodes in outcome.fib for n in ALL - set(nodes)}
    assert left == ALL, outcome.fib
    assert outcome.fewest_paths >= 2


def test_kubectl_drain_then_power_off_loses_no_new_connection(release: Release) -> None:
    """n2 opted in: ``kubectl drain`` drains its path (GRACEFUL_SHUTDOWN, then withdraw) while
    its pods move; then it powers off (link down, kubelet gone), as a node taken out for
    maintenance does. Nothing still points at it: no connection is lost."""
    lab, cluster, ip = release.lab, release.cluster, release.ip
    rollout.opt_in_drain_on_cordon(cluster, "n2", True)
    try:
        with measured(lab, ip, "kubectl drain n2 (opted in), then n2 powers off") as outcome:
            rollout.drain_then_power_off(lab, cluster, ip, "n2", True, outcome)
        _report(outcome)
        assert [set(nodes) for _, nodes in outcome.fib] == [ALL, {"n1", "n3"}]
    finally:
        rollout.power_on(cluster, "n2")
        cluster.kubectl("uncordon", "n2")
        rollout.opt_in_drain_on_cordon(cluster, "n2", False)
    wait_paths(lab, ip, ALL, timeout=120)


def _established(lab: Lab) -> dict[str, int]:
    peers = lab.vtysh_json("r1", "show bgp neighbors json")
    return {addr: int(p.get("connectionsEstablished", 0)) for addr, p in peers.items()}


def test_weighted_ecmp_follows_the_pods_without_session_resets(release: Release) -> None:
    lab, cluster = release.lab, release.cluster
    image = cluster.images["backend"].ref
    pods = {"svc": "wt"}
    cluster.apply(dump(
        backend_deployment("wt-n1", APP, image, 3, {"kubernetes.io/hostname": "n1"},
                           pod_labels=pods),
        backend_deployment("wt-n2", APP, image, 1, {"kubernetes.io/hostname": "n2"},
                           pod_labels=pods),
        load_balancer("wt", APP, local=True, selector_labels=pods),
    ))  # fmt: skip
    ip = wait_for("wt: IP", lambda: rollout.ingress(cluster, APP, "wt"), 120, 0.2)
    wait_paths(lab, ip, {"n1": 75, "n2": 25}, timeout=120)
    sessions = _established(lab)
    # r1 can have the weights a moment before kube-proxy on a node has the new local
    # endpoints in its rules (it rejects at once until then): wait until both nodes serve
    wait_for("n1 and n2 both serve wt", lambda: _both_serve(lab, ip), 60, 0.2)
    client = NewConnections(lab.ns("c"), ip, rate=50).start()
    wait_for("200 connections", lambda: len(client.attempts) >= 200, 60, 0.1)
    result = client.stop()
    served = result.by_node()
    share = served["n1"] / max(1, sum(served.values()))
    print(f"\nr1 FIB weights {paths(lab, ip)}; {result.total} new connections: "
          f"{dict(served)} ({share:.0%} on n1), {result.failed} failed")  # fmt: skip
    assert result.failed == 0
    assert set(served) == {"n1", "n2"}  # Local: a node only serves its own pods
    assert 0.6 <= share <= 0.9, served
    cluster.kubectl("scale", "-n", APP, "deploy/wt-n2", "--replicas=3")
    wait_paths(lab, ip, {"n1": 50, "n2": 50}, timeout=120)
    cluster.kubectl("scale", "-n", APP, "deploy/wt-n1", "--replicas=1")
    wait_paths(lab, ip, {"n1": 25, "n2": 75}, timeout=120)
    assert _established(lab) == sessions, "a weight change reset a BGP session"
    cluster.kubectl("delete", "-n", APP, "deploy/wt-n1", "deploy/wt-n2", "svc/wt")
    wait_paths(lab, ip, set())


def _both_serve(lab: Lab, ip: str) -> bool:
    """20 new connections all answered, by pods on n1 and on n2."""
    probe = NewConnections(lab.ns("c"), ip, rate=100).start()
    wait_for("20 probe connections", lambda: len(probe.attempts) >= 20, 30, 0.05)
    result = probe.stop()
    return result.failed == 0 and set(result.by_node()) >= {"n1", "n2"}
