"""exalb-speaker end to end: real kube-apiserver, real speakers, real ExaBGP, real FRR.

The ``bgp-ecmp`` topology (r1 = FRR AS 64500; n1..n3 = nodes AS 64501..64503; c = client)
runs in namespaces; one ``exalb-speaker`` and one ExaBGP (started by the launcher from the
config the speaker renders) run in each node namespace; the speakers read metallb.io
objects, Nodes, Services and EndpointSlices from a real apiserver (see ``speaker_lab.py``).
Truth is read where it matters: r1's kernel FIB (netlink), FRR's BGP table and neighbor
counters, and the speaker's own ``/status`` and ``/metrics``. Timings are printed (run with
``-s``); only "an endpoint going away withdraws within a second" is asserted.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from lab import netns
from lab.controlplane import ControlPlane
from lab.fibwatch import MinNexthops
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.api_objects import advertisement, pool
from tests.lab.speaker_lab import (
    NODES,
    PY,
    SpeakerLab,
    bgp_peer,
    nexthops,
    speaker_lab,
    timed_wait_nexthops,
)

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

POOL4 = "203.0.113.0/24"
POOL6 = "2001:db8:ffff::/64"


@pytest.fixture
def sl(lab_bgp_ecmp: Lab, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    with speaker_lab(lab_bgp_ecmp, speaker_control_plane) as s:
        yield s


@pytest.fixture
def any_sl(lab_router: Lab, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    """The same, once with FRR and once with BIRD 2 as r1 (router-agnostic tests)."""
    with speaker_lab(lab_router, speaker_control_plane) as s:
        yield s


def base_config(sl: SpeakerLab, *, v6: bool = False, **ad: object) -> None:
    peers = [bgp_peer(n) for n in NODES.values()]
    if v6:
        peers += [bgp_peer(n, 6) for n in NODES.values()]
    sl.cluster.apply_config(
        pool("pool", [POOL4, POOL6]), *peers, advertisement("ads", ["pool"], **ad)
    )
    for n in NODES.values():
        sl.cluster.node(n)


def by_service(status: dict[str, object], key: str) -> dict[str, object]:
    for d in status["services"]:  # type: ignore[attr-defined]
        if d["service"] == key:
            return dict(d)
    raise AssertionError(f"{key} not in status")


# -- tests ----------------------------------------------------------------------------------


def test_cluster_local_policy_and_endpoint_withdraw(any_sl: SpeakerLab) -> None:
    sl = any_sl
    lab, c = sl.lab, sl.cluster
    base_config(sl)
    c.service("web", ["203.0.113.10"])
    c.endpoints("web", ["n1"])  # Cluster policy: one endpoint anywhere is enough
    c.service("local", ["203.0.113.11"], policy="Local")
    c.endpoints("local", ["n1", "n2"])
    c.service("empty", ["203.0.113.12"])  # no endpoints at all
    started = time.monotonic()
    sl.start()
    sl.wait_ready()
    web = lab.wait_route("r1", "203.0.113.10/32", nexthops=3, timeout=10)
    print(f"\nspeakers start -> 3 nexthops for web: {time.monotonic() - started:.2f}s")
    assert web.gateways == {"198.18.0.2", "198.18.0.6", "198.18.0.10"}
    local = lab.wait_route("r1", "203.0.113.11/32", nexthops=2)
    assert local.gateways == {"198.18.0.2", "198.18.0.6"}
    assert lab.route("r1", "203.0.113.12/32") is None

    # the why, per Service, from a node that does not announce "local"
    st = sl.status("n3")
    assert st["node"] == "n3" and st["config"]["stale"] is False
    assert by_service(st, f"{c.app_ns}/local")["reason"] == "noLocalEndpoints"
    assert by_service(st, f"{c.app_ns}/empty")["reason"] == "noEndpoints"
    web_n3 = by_service(st, f"{c.app_ns}/web")
    assert web_n3["announce"] is True
    assert [r["onWire"] for r in web_n3["routes"]] == ["sent"]  # type: ignore[index]
    assert [s["state"] for s in st["sessions"]] == ["established"]
    assert "203.0.113.10/32" in {e["prefix"] for e in st["adjRibOut"]["198.18.0.9"]}

    # the endpoint on n2 goes away: n2 withdraws, measured from the API write to r1's FIB
    t = c.endpoints("local", ["n1"])
    took = timed_wait_nexthops(lab, "203.0.113.11/32", 1, t, timeout=5)
    print(f"endpoint removed (API write) -> n2's path gone from r1's FIB: {took * 1000:.0f} ms")
    assert took < 1.0
    assert lab.route("r1", "203.0.113.11/32").gateways == {"198.18.0.2"}  # type: ignore[union-attr]
    # ... and comes back
    t = c.endpoints("local", ["n1", "n2"])
    took = timed_wait_nexthops(lab, "203.0.113.11/32", 2, t, timeout=5)
    print(f"endpoint added (API write) -> n2's path in r1's FIB: {took * 1000:.0f} ms")

    # metrics
    assert sl.metric("n1", "exalb_speaker_announced_prefixes", peer="r1-n1-v4") == 2
    wait_for(
        "peer up metric",
        lambda: sl.metric("n1", "exalb_exabgp_peer_up", peer="r1-n1-v4") == 1,
        5,
        0.1,
    )
    assert sl.metric("n1", "exalb_speaker_config_stale_bool") == 0


CLIENT = """
import collections, json, socket, sys, time
vip, n = sys.argv[1], int(sys.argv[2])
seen, ports = collections.Counter(), set()
deadline = time.monotonic() + 20
while sum(seen.values()) < n and time.monotonic() < deadline:
    try:
        s = socket.create_connection((vip, 8080), timeout=2)
    except OSError:
        time.sleep(0.05)
        continue
    ports.add(s.getsockname()[1])
    s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    seen[data.split(b"\\r\\n\\r\\n", 1)[1].decode().strip()] += 1
print(json.dumps({"seen": seen, "ports": len(ports)}))
"""


def test_client_reaches_vip_and_connections_spread_over_nodes(any_sl: SpeakerLab) -> None:
    sl = any_sl
    lab, c = sl.lab, sl.cluster
    vip = "203.0.113.30"
    base_config(sl)
    c.service("http", [vip])
    c.endpoints("http", ["n1", "n2", "n3"])
    # r1 hashes flows on ports too (L4), so one client's connections spread over the paths
    lab.exec("r1", ["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])
    for node in NODES:
        lab.exec(node, ["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
        lab.start_responder(node, [vip], 8080)  # the Service's "pod": answers its node name
    sl.start()
    sl.wait_ready()
    lab.wait_route("r1", f"{vip}/32", nexthops=3, timeout=10)
    out = lab.exec("c", [PY, "-c", CLIENT, vip, "60"], timeout=60).stdout
    result = json.loads(out)
    seen = Counter(result["seen"])
    print(f"\n60 connections from c to {vip}:8080 (source ports {result['ports']}): {dict(seen)}")
    assert sum(seen.values()) == 60
    assert set(seen) == set(NODES), seen


def test_communities_large_communities_local_pref_arrive_at_frr(sl: SpeakerLab) -> None:
    """One end-to-end pass of the attributes (the driver tests cover their encoding).

    LOCAL_PREF only travels over iBGP (a receiver ignores it from an eBGP peer, RFC 4271
    5.1.5), so r1 is switched to iBGP for n1 (AS 64500 both sides); n2 stays eBGP.
    """
    lab, c = sl.lab, sl.cluster
    lab.vtysh(
        "r1",
        "configure terminal",
        "router bgp 64500",
        "no neighbor 198.18.0.2 peer-group NODES4",  # a peer group is all-iBGP or all-eBGP
        "neighbor 198.18.0.2 remote-as 64500",
        "neighbor 198.18.0.2 timers 3 9",
        "address-family ipv4 unicast",
        "neighbor 198.18.0.2 activate",
    )
    n1, n2 = NODES["n1"], NODES["n2"]
    c.apply_config(
        pool("pool", [POOL4, POOL6]),
        bgp_peer(n1, myASN=64500),
        bgp_peer(n2),
        advertisement("ads", ["pool"], communities=["64500:100", "large:64500:0:1"], localPref=150),
    )
    c.node(n1)
    c.node(n2)
    c.service("attrs", ["203.0.113.40"])
    c.endpoints("attrs", ["n1"])
    sl.start(["n1", "n2"])
    sl.wait_ready(["n1", "n2"])
    lab.wait_route("r1", "203.0.113.40/32", timeout=10)
    route = wait_for(
        "two paths at r1",
        lambda: (r := sl.bgp_route("203.0.113.40/32")) and len(r["paths"]) == 2 and r,
        10,
        0.05,
    )
    by_nh = {p["nexthops"][0]["ip"]: p for p in route["paths"]}
    ibgp, ebgp = by_nh["198.18.0.2"], by_nh["198.18.0.6"]
    print(f"\nr1 paths: ibgp={json.dumps(ibgp)}\nebgp={json.dumps(ebgp)}")
    for p in (ibgp, ebgp):
        assert p["community"]["string"] == "64500:100"
        assert p["largeCommunity"]["string"] == "64500:0:1"
    assert ibgp["locPrf"] == 150
    # what n1 says it sends (ExaBGP's adj-rib-out through /status) matches what r1 got
    st = sl.status("n1", f"{c.app_ns}/attrs")
    (svc,) = st["services"]
    (want,) = svc["routes"]
    assert want["localPref"] == 150 and want["onWire"] == "sent"
    assert want["communities"] == ["64500:100"] and want["largeCommunities"] == ["64500:0:1"]


def _with_sessions(sl: SpeakerLab, node: str, count: int) -> dict[str, Any] | None:
    st = sl.status(node)
    return st if len(st["sessions"] or []) == count else None


def test_ipv6_and_new_peer_or_service_never_resets_a_session(sl: SpeakerLab) -> None:
    lab, c = sl.lab, sl.cluster
    base_config(sl)  # IPv4 peers only
    c.service("dual", ["203.0.113.50", "2001:db8:ffff::50"])
    c.endpoints("dual", ["n1", "n2", "n3"])
    sl.start()
    sl.wait_ready()
    lab.wait_route("r1", "203.0.113.50/32", nexthops=3, timeout=10)
    assert lab.route("r1", "2001:db8:ffff::50/128") is None  # no IPv6 session yet
    st = sl.status("n1", f"{c.app_ns}/dual")
    assert [r["prefix"] for r in st["services"][0]["routes"]] == ["203.0.113.50/32"]
    v4 = {n.ipv4 for n in NODES.values()}
    before = {a: n for a, n in sl.sessions().items() if a in v4}
    assert all(est == 1 for est, _ in before.values()), before

    # a second peer per node (IPv6): the speaker re-renders and reloads ExaBGP
    t = time.monotonic()
    sl.cluster.apply_config(*[bgp_peer(n, 6) for n in NODES.values()])
    route6 = lab.wait_route("r1", "2001:db8:ffff::50/128", nexthops=3, timeout=15)
    print(f"\nIPv6 BGPPeers created -> /128 with 3 nexthops: {time.monotonic() - t:.2f}s")
    assert route6.gateways == {n.ipv6 for n in NODES.values()}
    after_peer = sl.sessions()
    assert {a: after_peer[a] for a in v4} == before, (before, after_peer)
    assert all(est == 1 for est, _ in after_peer.values()), after_peer

    # a new Service: only announces, no session touched (IPv4 and IPv6)
    t = c.service("second", ["203.0.113.51", "2001:db8:ffff::51"])
    c.endpoints("second", ["n2"])
    took = timed_wait_nexthops(lab, "2001:db8:ffff::51/128", 3, t, timeout=5)
    lab.wait_route("r1", "203.0.113.51/32", nexthops=3)
    print(f"new dual-stack Service -> /128 with 3 nexthops: {took * 1000:.0f} ms")
    assert sl.sessions() == after_peer
    for node in NODES:
        # /status reads ExaBGP's sessions at most once a second (status_refresh): the view
        # read at the first status() above may still be served for the rest of that second
        st = wait_for(f"{node}: both sessions in /status", lambda n=node: _with_sessions(sl, n, 2),
                      timeout=5)  # fmt: skip
        assert {s["state"] for s in st["sessions"]} == {"established"}


def test_sigkill_keeps_routes_restart_converges_by_diff_sigterm_withdraws(
    any_sl: SpeakerLab,
) -> None:
    sl = any_sl
    lab, c = sl.lab, sl.cluster
    prefix = "203.0.113.60/32"
    base_config(sl)
    c.service("web", ["203.0.113.60"])
    c.endpoints("web", ["n2"])
    sl.start()
    sl.wait_ready()
    lab.wait_route("r1", prefix, nexthops=3, timeout=10)
    sessions = sl.sessions()

    # SIGKILL: nothing is withdrawn, ExaBGP keeps announcing
    watch = MinNexthops(lab, prefix)
    sl.signal_speaker("n1", signal.SIGKILL)
    sl.wait_speaker_exit("n1")
    time.sleep(1.0)  # give a (wrong) withdraw every chance to show up in the FIB
    assert nexthops(lab, prefix) == 3
    # restarted speaker: converges by diff from ExaBGP's adj-rib-out, sends nothing
    t = time.monotonic()
    # no drain before the withdraw below (MetalLB's behaviour): the drain's own test is
    # tests/lab/test_speaker_drain.py; BIRD would keep the path for the whole drain time
    sl.start_speaker("n1", "--drain-seconds", "0")
    sl.wait_ready(["n1"])
    print(f"\nrestarted speaker ready (synced, connected, converged): {time.monotonic() - t:.2f}s")
    st = sl.status("n1")
    assert st["speaker"]["driverConnections"] == 1
    assert sl.metric("n1", "exalb_exabgp_commands_total", verb="announce") == 0
    assert sl.metric("n1", "exalb_exabgp_commands_total", verb="withdraw") == 0
    # a change after the restart goes out normally
    t = c.endpoints("web", ["n1"])
    lab.wait_route("r1", prefix, nexthops=3)
    assert watch.stop() == 3, "a path was withdrawn during the speaker restart"
    print(f"FIB sampled {watch.samples} times during kill+restart: never fewer than 3 paths")
    assert sl.sessions() == sessions

    # SIGTERM: the speaker withdraws its routes and exits 0; the session stays up
    t = sl.signal_speaker("n1", signal.SIGTERM)
    took = timed_wait_nexthops(lab, prefix, 2, t, timeout=5)
    rc = sl.wait_speaker_exit("n1")
    print(f"SIGTERM -> n1's path gone from r1's FIB: {took * 1000:.0f} ms (exit code {rc})")
    assert rc == 0
    assert lab.route("r1", prefix).gateways == {"198.18.0.6", "198.18.0.10"}  # type: ignore[union-attr]
    assert sl.sessions() == sessions


def test_invalid_config_keeps_the_last_good_one(sl: SpeakerLab) -> None:
    lab, c = sl.lab, sl.cluster
    base_config(sl)
    c.service("web", ["203.0.113.70"])
    c.endpoints("web", ["n1"])
    sl.start(["n1", "n2"])
    sl.wait_ready(["n1", "n2"])
    lab.wait_route("r1", "203.0.113.70/32", nexthops=2, timeout=10)
    # an overlapping pool: admitted by the apiserver (a cross-object rule), refused by exalb
    bad = pool("overlap", ["203.0.113.0/25"])
    c.apply_config(bad)
    wait_for("stale", lambda: sl.metric("n1", "exalb_speaker_config_stale_bool") == 1, 5, 0.05)
    st = sl.status("n1")
    assert st["config"]["stale"] is True
    print("\nproblems reported:", [p for p in st["config"]["problems"] if "overlap" in p])
    assert any("overlap" in p for p in st["config"]["problems"])
    # routes stay, and Services keep working under the last good config
    assert nexthops(lab, "203.0.113.70/32") == 2
    c.service("more", ["203.0.113.71"])
    c.endpoints("more", ["n2"])
    lab.wait_route("r1", "203.0.113.71/32", nexthops=2, timeout=5)
    # fixed: fresh again
    c.delete(c.config_path(bad))
    wait_for("fresh", lambda: sl.metric("n1", "exalb_speaker_config_stale_bool") == 0, 5, 0.05)
    assert sl.status("n1")["config"]["stale"] is False


def test_graceful_restart_keeps_routes_while_exabgp_restarts(any_sl: SpeakerLab) -> None:
    sl = any_sl
    """GR negotiated (BGPPeer enableGracefulRestart): ExaBGP dying closes TCP without a
    NOTIFICATION, r1 keeps n1's path as stale; the restarted ExaBGP gets the routes again
    from the speaker (by diff against an empty adj-rib-out) followed by End-of-RIB."""
    lab, c = sl.lab, sl.cluster
    prefix = "203.0.113.80/32"
    c.apply_config(
        pool("pool", [POOL4, POOL6]),
        *[bgp_peer(n, enableGracefulRestart=True) for n in NODES.values()],
        advertisement("ads", ["pool"]),
    )
    for n in NODES.values():
        c.node(n)
    c.service("web", ["203.0.113.80"])
    c.endpoints("web", ["n3"])
    sl.start()
    sl.wait_ready()
    lab.wait_route("r1", prefix, nexthops=3, timeout=10)
    st = sl.status("n1")
    assert st["sessions"][0]["gracefulRestart"] is True
    watch = MinNexthops(lab, prefix)
    exabgp = sl.procs["n1"].exabgp
    assert exabgp is not None
    kids = netns.children(exabgp.pid, sl.lab.pids())
    t = time.monotonic()
    sl.lab.stop_process("n1", exabgp, first=signal.SIGKILL)
    # bridge and CLI process would linger 1.5-2 s (docs/exabgp.md, "Processes and signals")
    netns.stop(kids, [sl.lab.ns("n1")], 1.0, first=signal.SIGKILL)
    stale = wait_for("n1's path stale at r1", lambda: _stale_paths(sl, prefix), 5, 0.02)
    print(
        f"\nExaBGP SIGKILL -> r1 marks n1's path stale after {time.monotonic() - t:.2f}s: {stale}"
    )
    assert nexthops(lab, prefix) == 3
    t = time.monotonic()
    sl.start_exabgp("n1")
    wait_for("stale flag gone", lambda: not _stale_paths(sl, prefix), 15, 0.02)
    print(f"ExaBGP restarted -> route re-announced + End-of-RIB, stale flag gone: "
          f"{time.monotonic() - t:.2f}s")  # fmt: skip
    assert watch.stop() == 3, "r1 dropped n1's path during the ExaBGP restart"
    assert sl.status("n1")["speaker"]["driverConnections"] == 2


def test_speaker_and_exabgp_restarted_together_send_end_of_rib(any_sl: SpeakerLab) -> None:
    """The issue's case: both containers of the pod restart (the emptyDir survives, so
    ExaBGP starts at once from the old config and its sessions are up before the new
    speaker attaches). The speaker still owes every graceful-restart neighbor an
    End-of-RIB; without it r1 kept the stale paths until its restart timer (BIRD: observed
    > 150 s), blackholing a Service whose endpoints left n1 during the restart."""
    sl = any_sl
    lab, c = sl.lab, sl.cluster
    stays, leaves = "203.0.113.84/32", "203.0.113.85/32"
    c.apply_config(
        pool("pool", [POOL4, POOL6]),
        *[bgp_peer(n, enableGracefulRestart=True) for n in NODES.values()],
        advertisement("ads", ["pool"]),
    )
    for n in NODES.values():
        c.node(n)
    c.service("stays", ["203.0.113.84"])
    c.endpoints("stays", ["n3"])
    c.service("leaves", ["203.0.113.85"], policy="Local")
    c.endpoints("leaves", ["n1", "n2"])
    sl.start()
    sl.wait_ready()
    lab.wait_route("r1", stays, nexthops=3, timeout=15)
    lab.wait_route("r1", leaves, nexthops=2, timeout=5)
    # the pod's containers die together (SIGKILL: no withdraw, no Cease)
    speaker, exabgp = sl.procs["n1"].speaker, sl.procs["n1"].exabgp
    assert speaker is not None and exabgp is not None
    kids = netns.children(exabgp.pid, lab.pids())
    lab.stop_process("n1", speaker, first=signal.SIGKILL)
    lab.stop_process("n1", exabgp, first=signal.SIGKILL)
    netns.stop(kids, [lab.ns("n1")], 1.0, first=signal.SIGKILL)
    sl.procs["n1"].speaker = None
    wait_for("n1's paths stale at r1", lambda: _stale_paths(sl, stays), 15, 0.02)
    c.endpoints("leaves", ["n2"])  # n1's endpoint leaves while the pod restarts
    # ExaBGP first, from the old file; its sessions come up before the speaker attaches
    t = time.monotonic()
    sl.start_exabgp("n1")
    wait_for("n1 re-established", lambda: _established(sl, NODES["n1"].ipv4), 15, 0.02)
    up = time.monotonic() - t
    sl.start_speaker("n1")
    gone = timed_wait_nexthops(lab, leaves, 1, t, timeout=60)
    wait_for("no stale path", lambda: not _stale_paths(sl, stays), 60, 0.02)
    fresh = time.monotonic() - t
    print(
        f"\n[{sl.router_kind}] ExaBGP restarted -> session up {up:.2f}s; n1's path of the "
        f"Service whose endpoint left gone {gone:.2f}s; no stale path {fresh:.2f}s"
    )
    assert fresh < 20, "End-of-RIB did not reach r1: stale paths kept"
    assert lab.route("r1", leaves).gateways == {NODES["n2"].ipv4}  # type: ignore[union-attr]
    assert nexthops(lab, stays) == 3


def _established(sl: SpeakerLab, address: str) -> bool:
    state = sl.sessions().get(address)
    if sl.router_kind == "bird":
        return state is not None and state[0] == "Established"
    nb = sl.lab.frr("r1").neighbor(address)
    return nb.get("bgpState") == "Established"


def _stale_paths(sl: SpeakerLab, prefix: str) -> list[str]:
    route = sl.bgp_route(prefix) or {"paths": []}
    return [p["nexthops"][0]["ip"] for p in route["paths"] if p.get("stale")]
