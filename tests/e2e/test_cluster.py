"""exalb as users run it, on a real cluster: the image built by scripts/image.sh, the chart
installed with helm, real pods behind LoadBalancer Services, EndpointSlices from the real
control plane. The oracle is the router: r1's kernel FIB (and FRR's own JSON for stale
paths). The tests share one cluster and one release and run in file order:
install -> least privilege in the speaker pod, /status reached only as intended ->
externalTrafficPolicy Local -> graceful restart -> BFD -> upgrade -> drain -> node failure ->
uninstall."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import netns
from lab.binaries import find_tools
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump, load_balancer
from lab.demo_config import BIN
from lab.demo_show import http_get, http_spread, node_of
from lab.fibwatch import MinNexthops
from lab.promtext import metric_sum
from lab.rollout import speakers_metrics
from lab.runner import Lab
from lab.wait import wait_for
from speaker.proxy_hold import Verdict, outcome

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

CHART = "charts/exalb"
NS, APP = "metallb-system", "e2e"
NODE_IP = {"n1": "198.51.100.11", "n2": "198.51.100.12", "n3": "198.51.100.13"}
IP_NODE = {v: k for k, v in NODE_IP.items()}
BGP_POOL, L2_POOL = "203.0.113.30-203.0.113.40", "198.51.100.240-198.51.100.250"


def values(
    cluster: Cluster, *, graceful: bool = False, log_level: str = "info", bfd: bool = False
) -> dict[str, Any]:
    exalb = cluster.images["exalb"]
    peer = {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.51.100.1", "holdTime": "3s"}
    if graceful:
        peer["enableGracefulRestart"] = True
    if bfd:  # r1's hold time is then 9 s: only BFD can take a frozen node out within 1 s
        peer.update(bfdProfile="fast", holdTime="9s")
    profile = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}
    return {
        "bfd": {"enabled": bfd},
        "image": {"repository": exalb.repository, "tag": exalb.tag, "pullPolicy": "Never"},
        "logLevel": log_level,
        # with graceful restart, a restarting speaker must not withdraw: the router keeps
        # its stale path until the new pod re-announces
        "speaker": {"withdrawOnExit": not graceful},
        "config": {
            "pools": [
                {"name": "bgp", "spec": {"addresses": [BGP_POOL]}},
                {"name": "l2", "spec": {"addresses": [L2_POOL], "autoAssign": False}},
            ],
            # a new name when graceful restart changes: the capability is immutable
            "peers": [{"name": "r1-gr" if graceful else "r1", "spec": peer}],
            "bgpAdvertisements": [{"name": "bgp", "spec": {"ipAddressPools": ["bgp"]}}],
            "l2Advertisements": [{"name": "l2", "spec": {"ipAddressPools": ["l2"]}}],
            "bfdProfiles": [{"name": "fast", "spec": profile}] if bfd else [],
        },
    }


def helm(cluster: Cluster, verb: str, vals: dict[str, Any]) -> None:
    path = cluster.dir / "e2e-values.yaml"
    path.write_text(yaml.safe_dump(vals))
    cluster.helm(verb, "exalb", CHART, "-n", NS, "--create-namespace", "-f", str(path), "--wait",
                 "--timeout", "180s")  # fmt: skip


def nexthops(lab: Lab, ip: str) -> set[str]:
    route = lab.route("r1", f"{ip}/32")
    return {IP_NODE.get(g, g) for g in route.gateways} if route else set()


def wait_nexthops(lab: Lab, ip: str, nodes: set[str], timeout: float = 60) -> None:
    wait_for(f"r1: {ip} via {sorted(nodes)}", lambda: nexthops(lab, ip) == nodes, timeout, 0.1)


def ingress(cluster: Cluster, name: str) -> str | None:
    svc = cluster.get_json("svc", "-n", APP, name)
    items = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(items[0]["ip"]) if items else None


def proxy_holds(lab: Lab) -> dict[str, float]:
    """The speakers' released new Local paths by outcome, and the hold seconds' histogram
    sum and count, summed over the nodes (the ones that are not 0)."""
    text = speakers_metrics(lab)
    out = {v: metric_sum(text, "exalb_speaker_proxy_holds_total", outcome=v)
           for v in map(outcome, (*Verdict, None))}  # fmt: skip
    for part in ("sum", "count"):
        out[f"proxy_hold_seconds_{part}"] = metric_sum(
            text, f"exalb_speaker_proxy_hold_seconds_{part}"
        )
    return {k: v for k, v in out.items() if v}


def wait_ingress(cluster: Cluster, name: str) -> str:
    return wait_for(f"{name}: IP", lambda: ingress(cluster, name), 120, 0.2)


def pod_nodes(cluster: Cluster, app: str) -> set[str]:
    """Nodes with a ready pod of ``app``."""
    pods = cluster.get_json("pods", "-n", APP, "-l", f"app={app}")["items"]
    return {
        p["spec"]["nodeName"]
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))
    }  # fmt: skip


def l2_owner(lab: Lab, ip: str) -> str | None:
    """The node whose MAC r1 resolved ``ip`` to (after the client sent it traffic)."""
    http_get(lab, ip, timeout=1.0)
    neigh = lab.exec("r1", ["ip", "-j", "neigh", "show", ip]).stdout
    entries = [e for e in json.loads(neigh or "[]") if e.get("lladdr")]
    if not entries:
        return None
    for node in NODE_IP:
        link = json.loads(lab.exec(node, ["ip", "-j", "link", "show", "eth1"]).stdout)
        if link and link[0].get("address") == entries[0]["lladdr"]:
            return node
    return None


@pytest.fixture(scope="module")
def installed(cluster_lab: Lab) -> Iterator[Lab]:
    """The release ``exalb`` installed by the first test and removed by the last."""
    lab = cluster_lab
    assert lab.cluster is not None
    lab.exec("r1", ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])
    yield lab
    lab.cluster.kubectl("delete", "namespace", APP, "--wait=true", check=False, timeout=180)
    lab.cluster.helm("uninstall", "exalb", "-n", NS, check=False)


def test_install(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    started = time.monotonic()
    helm(cluster, "install", values(cluster))
    backend = cluster.images["backend"].ref
    cluster.apply(dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
        backend_deployment("web", APP, backend, replicas=3),
        load_balancer("web", APP),
    ))  # fmt: skip
    ip = wait_ingress(cluster, "web")
    assert ip.startswith("203.0.113.")
    wait_nexthops(lab, ip, {"n1", "n2", "n3"})
    print(f"\nhelm install (--wait) -> 3 paths at r1: {time.monotonic() - started:.1f} s")
    sessions = lab.vtysh_json("r1", "show bgp summary json")["ipv4Unicast"]["peers"]
    assert {p: s["state"] for p, s in sessions.items()} == dict.fromkeys(
        NODE_IP.values(), "Established"
    )
    # client -> r1 (ECMP) -> node -> kube-proxy -> pod; kube-proxy sends to ready pods only,
    # so the spread below needs all three (on a first run the first one can be alone a while)
    wait_for("3 ready pods", lambda: len(pod_nodes(cluster, "web")) == 3, 120, 0.5)
    wait_for("pods answer", lambda: node_of(http_get(lab, ip)), 60, 0.5)
    # a pod is ready in the API before every node's kube-proxy has its endpoint: sample
    # again until the spread shows (kube-proxy picks a ready pod at random)
    served: set[str | None] = set()

    def spread() -> bool:
        served.update(node_of(http_get(lab, ip)) for _ in range(30))
        return len(served) >= 2

    wait_for("answers from 2 nodes or more", spread, 60, 0.5)
    assert served <= {"n1", "n2", "n3"}, served
    pods = cluster.get_json("pods", "-n", NS)["items"]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert images == {cluster.images["exalb"].ref}
    containers = {c["name"] for p in pods for c in p["spec"]["containers"]}
    assert containers == {"controller", "speaker", "exabgp", "garp"}


def pod_exec(cluster: Cluster, pod: str, container: str, script: str) -> str:
    proc = cluster.kubectl("exec", "-n", NS, pod, "-c", container, "--", "sh", "-c", script,
                           check=False)  # fmt: skip
    return proc.stdout + proc.stderr


def proc_status(cluster: Cluster, pod: str, container: str) -> dict[str, str]:
    """The container's main process (PID 1 of its PID namespace): ids and capabilities."""
    text = pod_exec(cluster, pod, container, "cat /proc/1/status")
    return {k: v.split()[0] for k, _, v in (ln.partition(":\t") for ln in text.splitlines()) if v}


def test_speaker_pod_least_privilege(installed: Lab) -> None:
    """Each container of a running speaker pod: its own non-root user, only the capabilities
    it needs (garp: NET_RAW), and only the volume it shares with the speaker."""
    cluster = installed.cluster
    assert cluster is not None
    pod = speaker_pods(cluster, "n1")[0]["metadata"]["name"]
    ids = {c: proc_status(cluster, pod, c) for c in ("speaker", "exabgp", "garp")}
    shown = ("Uid", "Gid", "Groups", "CapEff", "CapBnd", "NoNewPrivs")
    print("\n" + "\n".join(f"{c}: {[s.get(k) for k in shown]}" for c, s in ids.items()))
    net_raw = f"{1 << 13:016x}"
    assert {c: (s["Uid"], s["Gid"]) for c, s in ids.items()} == {
        "speaker": ("65532", "65532"), "exabgp": ("65533", "65532"), "garp": ("65531", "65532"),
    }  # fmt: skip
    assert {c: (s["CapEff"], s["CapBnd"]) for c, s in ids.items()} == {
        "speaker": ("0" * 16, "0" * 16), "exabgp": ("0" * 16, "0" * 16),
        "garp": (net_raw, net_raw),
    }  # fmt: skip
    assert ids["speaker"]["NoNewPrivs"] == ids["exabgp"]["NoNewPrivs"] == "1"
    # garp (parses frames from the wire) sees neither exabgp.conf nor ExaBGP's socket/FIFOs
    assert "No such file" in pod_exec(cluster, pod, "garp", "ls /run/exalb/bgp")
    assert "No such file" in pod_exec(cluster, pod, "exabgp", "ls /run/exalb/l2")
    listing = pod_exec(cluster, pod, "speaker", "ls -ln /run/exalb/bgp /run/exalb/l2")
    print(listing)
    modes = {ln.split()[-1]: (ln.split()[0], ln.split()[2]) for ln in listing.splitlines()
             if ln[:1] in ("-", "s")}  # fmt: skip
    assert modes["exabgp.conf"] == ("-rw-r-----", "65532")  # MD5 passwords
    assert modes["exabgp.sock"] == ("srw-rw----", "65533")
    assert modes["l2-state.json"] == ("-rw-r-----", "65532")
    assert modes["l2-state.json.status"] == ("-rw-r-----", "65531")
    # ExaBGP's CLI pipes are ExaBGP's alone
    assert "Permission denied" in pod_exec(cluster, pod, "speaker", "ls /run/exalb/bgp/exabgp/run")


def test_status_only_through_the_api_server(installed: Lab) -> None:
    """/status is not on the node address (the node network gets /metrics only); kubectl
    exalb reads every speaker through a port-forward by the API server."""
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    url = f"http://{NODE_IP['n1']}"
    curl = ["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"]
    assert lab.exec("r1", [*curl, f"{url}:7472/metrics"], check=False).stdout == "200"
    assert lab.exec("r1", [*curl, f"{url}:7472/status"], check=False).stdout == "404"
    assert lab.exec("r1", [*curl, f"{url}:7474/status"], check=False).stdout == "000"  # refused
    env = {**cluster.env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(find_tools().kubectl), "exalb", "peers", "-o", "json"], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    print({n["node"]: (n["source"], n["reachable"]) for n in nodes})
    assert {n["node"]: n["reachable"] for n in nodes} == dict.fromkeys(NODE_IP, True)
    assert all(n["source"].endswith(":7474") for n in nodes)  # the status port, forwarded
    assert all(p["state"] == "established" for n in nodes for p in n["peers"])


def test_local_policy_announces_only_from_nodes_with_pods(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    backend = cluster.images["backend"].ref
    cluster.apply(dump(
        backend_deployment("two", APP, backend, replicas=2),
        load_balancer("two", APP, local=True),
    ))  # fmt: skip
    ip = wait_ingress(cluster, "two")
    wait_for("2 ready pods", lambda: len(pod_nodes(cluster, "two")) == 2, 120, 0.5)
    wait_nexthops(lab, ip, pod_nodes(cluster, "two"))
    # each path is announced once kube-proxy on its node serves the local pod (its health
    # check, speaker.proxy_hold): every new connection is answered at once, by the node r1
    # sent it to (Local), on whichever path r1 hashes it to
    served, failed = http_spread(lab, ip, 20)
    assert failed == 0 and set(served) <= pod_nodes(cluster, "two"), (served, failed)
    cluster.kubectl("scale", "-n", APP, "deploy/two", "--replicas=3")
    wait_for("3 ready pods", lambda: len(pod_nodes(cluster, "two")) == 3, 120, 0.5)
    wait_nexthops(lab, ip, {"n1", "n2", "n3"})
    served, failed = http_spread(lab, ip, 30)
    assert failed == 0 and set(served) <= {"n1", "n2", "n3"}, (served, failed)
    holds = proxy_holds(lab)
    print(f"\nnew Local paths released (speakers' metrics): {holds}")
    assert holds.get("ready", 0) >= 3 and not holds.get("expired"), holds
    cluster.kubectl("scale", "-n", APP, "deploy/two", "--replicas=1")
    wait_for("1 ready pod", lambda: len(pod_nodes(cluster, "two")) == 1, 120, 0.5)
    wait_nexthops(lab, ip, pod_nodes(cluster, "two"))
    cluster.kubectl("delete", "-n", APP, "deploy/two", "svc/two")
    wait_nexthops(lab, ip, set())


def test_graceful_restart_speaker_pod_deleted(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    helm(cluster, "upgrade", values(cluster, graceful=True))
    ip = wait_ingress(cluster, "web")
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)
    pod = speaker_pods(cluster, "n2")[0]["metadata"]["name"]
    watch = MinNexthops(lab, f"{ip}/32", interval=0.005)
    cluster.kubectl("delete", "pod", "-n", NS, pod, "--wait=true")
    wait_for("a new speaker pod on n2 ready", lambda: _replaced(cluster, "n2", pod), 120, 0.5)
    wait_for("n2's path fresh again (not stale)", lambda: not _stale(lab, ip), 60, 0.2)
    fewest = watch.stop()
    assert fewest == 3, f"r1 lost a path while n2's speaker pod was replaced ({fewest} left)"
    helm(cluster, "upgrade", values(cluster))
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)


def test_bfd_frozen_or_cut_off_node_leaves_within_a_second(installed: Lab) -> None:
    """The chart's bfd container (FRR's bfdd, configured by the speaker) against r1's bfdd
    (``neighbor NODES bfd profile fast``, 300 ms x 3; BGP hold time 9 s)."""
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    helm(cluster, "upgrade", values(cluster, bfd=True))
    ip = wait_ingress(cluster, "web")
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)
    containers = {c["name"] for c in speaker_pods(cluster, "n2")[0]["spec"]["containers"]}
    assert "bfd" in containers
    wait_for("r1's BFD sessions up", lambda: _bfd_states(lab) == {"up"}, 120, 0.5)
    # the node side, through the real plugin: every speaker's bfdd has its session up
    env = {**cluster.env(), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    peers = subprocess.run(
        [str(find_tools().kubectl), "exalb", "peers"], env=env, capture_output=True,
        text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    print(f"\n$ kubectl exalb peers\n{peers}")
    assert peers.count("up 300/300x3") == 3, peers
    for how in ("freeze", "drop"):
        t = time.monotonic()
        undo = _freeze(lab, "n2") if how == "freeze" else _drop_all(lab, "n2")
        try:
            wait_nexthops(lab, ip, {"n1", "n3"}, timeout=15)
            took = time.monotonic() - t
        finally:
            undo()
        what = "frozen (SIGSTOP of its processes)" if how == "freeze" else "drops every packet"
        print(f"\nn2 {what} -> its path gone from r1's FIB: {took * 1000:.0f} ms (hold 9 s)")
        assert took < 2.0, f"{how}: {took:.2f}s, BFD did not act (hold time 9 s)"
        wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)
        wait_for("r1's BFD sessions up again", lambda: _bfd_states(lab) == {"up"}, 60, 0.5)
    helm(cluster, "upgrade", values(cluster))
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)


def _bfd_states(lab: Lab) -> set[str]:
    peers = lab.vtysh_json("r1", "show bfd peers json")
    return {p["status"] for p in peers if p["peer"] in NODE_IP.values()} or {"none"}


def _freeze(lab: Lab, node: str) -> Callable[[], None]:
    """SIGSTOP every process of the node (kubelet, containerd, the speaker pod's
    containers...); returns the SIGCONT."""
    pids = netns.pids(lab.ns(node))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    return thaw


def _drop_all(lab: Lab, node: str) -> Callable[[], None]:
    """An nftables table in the node's namespace dropping every packet; its link stays up."""
    rules = (
        "table inet e2edrop {\n"
        "  chain in { type filter hook input priority -300; policy drop; }\n"
        "  chain out { type filter hook output priority -300; policy drop; }\n}\n"
    )
    lab.exec(node, ["nft", "-f", "-"], input=rules)
    return lambda: lab.exec(node, ["nft", "delete", "table", "inet", "e2edrop"], check=False)


def speaker_pods(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "pods", "-n", NS, "-l", "app.kubernetes.io/component=speaker",
        "--field-selector", f"spec.nodeName={node}",
    )["items"]  # fmt: skip
    return items


def _replaced(cluster: Cluster, node: str, old: str) -> bool:
    return any(
        p["metadata"]["name"] != old
        and all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))
        for p in speaker_pods(cluster, node)
    )


def _stale(lab: Lab, ip: str) -> list[str]:
    route = lab.vtysh_json("r1", f"show bgp ipv4 unicast {ip}/32 json")
    return [p["nexthops"][0]["ip"] for p in route.get("paths", []) if p.get("stale")]


def test_upgrade(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    ip = wait_ingress(cluster, "web")
    before = {p["metadata"]["name"] for p in cluster.get_json("pods", "-n", NS)["items"]}
    helm(cluster, "upgrade", values(cluster, log_level="debug"))
    after = cluster.get_json("pods", "-n", NS)["items"]
    assert not before & {p["metadata"]["name"] for p in after}, "every pod was replaced"
    assert all("--log-level=debug" in c["args"] for p in after for c in p["spec"]["containers"]
               if c["name"] in ("speaker", "controller"))  # fmt: skip
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)
    assert ingress(cluster, "web") == ip, "an upgrade never changes a Service's IP"
    history = json.loads(cluster.helm("history", "exalb", "-n", NS, "-o", "json").stdout)
    assert history[-1]["status"] == "deployed" and len(history) >= 4


def test_drain_moves_bgp_and_l2(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    backend = cluster.images["backend"].ref
    cluster.apply(dump(
        backend_deployment("loc", APP, backend, replicas=3),
        load_balancer("loc", APP, local=True),
        load_balancer("loc-l2", APP, selector="loc", local=True,
                      annotations={"metallb.io/address-pool": "l2"}),
    ))  # fmt: skip
    bgp_ip, l2_ip = wait_ingress(cluster, "loc"), wait_ingress(cluster, "loc-l2")
    wait_for("3 ready pods", lambda: len(pod_nodes(cluster, "loc")) == 3, 120, 0.5)
    wait_nexthops(lab, bgp_ip, {"n1", "n2", "n3"})
    owner = wait_for("an L2 owner", lambda: l2_owner(lab, l2_ip), 60, 0.3)
    cluster.kubectl("drain", owner, "--ignore-daemonsets", "--delete-emptydir-data",
                    "--timeout=120s", timeout=180)  # fmt: skip
    try:
        others = set(NODE_IP) - {owner}
        wait_nexthops(lab, bgp_ip, others, timeout=90)
        new = wait_for(
            "L2 owner moved",
            lambda: (o := l2_owner(lab, l2_ip)) not in (None, owner) and o,
            90,
            0.3,
        )
        assert new in others
        assert node_of(http_get(lab, l2_ip)) == new
    finally:
        cluster.kubectl("uncordon", owner)
    cluster.kubectl("delete", "-n", APP, "deploy/loc", "svc/loc", "svc/loc-l2")


def test_node_failure_withdraws_its_path(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    ip = wait_ingress(cluster, "web")
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)
    started = time.monotonic()
    cluster.nodes["n3"].fail()
    try:
        wait_nexthops(lab, ip, {"n1", "n2"}, timeout=30)
        print(f"\nn3 failed -> its path gone from r1: {time.monotonic() - started:.2f} s")
        assert lab.peer_states("r1")[NODE_IP["n3"]] != "Established"
    finally:
        cluster.nodes["n3"].recover()
    wait_for("n3 Ready", lambda: "n3" in cluster.ready_nodes(), 120, 0.5)
    wait_nexthops(lab, ip, {"n1", "n2", "n3"}, timeout=120)


def test_uninstall(installed: Lab) -> None:
    lab, cluster = installed, installed.cluster
    assert cluster is not None
    ip = wait_ingress(cluster, "web")
    cluster.helm("uninstall", "exalb", "-n", NS)
    wait_nexthops(lab, ip, set(), timeout=60)
    left = lambda: cluster.kubectl("get", "pods", "-n", NS, "-o", "wide").stdout  # noqa: E731
    try:
        wait_for("no exalb pods", lambda: not cluster.get_json("pods", "-n", NS)["items"], 120, 1)
    except AssertionError:
        raise AssertionError(f"pods left after uninstall:\n{left()}") from None
    assert not [s for s in lab.peer_states("r1").values() if s == "Established"]
