"""The netns runner against real FRR and ExaBGP: sessions, ECMP in the FIB, reachability,
and a teardown that leaves no namespace and no process behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from lab import netns
from lab.nsnet import HostDialError, http_get
from lab.runner import Lab, new_run_name
from lab.teardown import sweep_stale
from lab.topology import topology_path

pytestmark = pytest.mark.lab

VIP4 = "203.0.113.10/32"
VIP6 = "2001:db8:ffff::10/128"
VIP4_ADDR = "203.0.113.10"


def _assert_gone(namespaces: tuple[str, ...], pids: list[int]) -> None:
    assert not [ns for ns in namespaces if netns.exists(ns)], "namespaces left behind"
    assert not [p for p in pids if netns.alive(p)], "processes left behind"


def test_bgp_ecmp_three_nexthops_and_client_reach(lab_bgp_ecmp: Lab) -> None:
    lab = lab_bgp_ecmp
    nodes = [n.name for n in lab.topology.by_role(lab.node("n1").role)]
    assert nodes == ["n1", "n2", "n3"]
    for node in nodes:
        lab.start_exabgp_static(node, [VIP4, VIP6])

    states = lab.wait_established("r1", timeout=15)
    assert len(states) == 6 and set(states.values()) == {"Established"}

    route = lab.wait_route("r1", VIP4, nexthops=3)
    assert route.gateways == {"198.18.0.2", "198.18.0.6", "198.18.0.10"}
    route6 = lab.wait_route("r1", VIP6, nexthops=3)
    assert route6.gateways == {"2001:db8:0:1::2", "2001:db8:0:2::2", "2001:db8:0:3::2"}

    # the client reaches a node through r1, over both families
    lab.exec("c", ["ping", "-c1", "-W2", "198.18.0.2"])
    lab.exec("c", ["ping", "-6", "-c1", "-W2", "2001:db8:0:3::2"])
    # and the Service IP itself once it is local on a node
    for node in nodes:
        lab.exec(node, ["ip", "addr", "add", VIP4, "dev", "lo"])
    lab.exec("c", ["ping", "-c1", "-W2", VIP4_ADDR])

    # ExaBGP's CLI pipes work per instance
    assert "203.0.113.10/32" in lab.exabgp("n1").cli("show adj-rib out")


def test_lab_traffic_starts_inside_the_lab_never_from_the_host(lab_bgp_ecmp: Lab) -> None:
    lab = lab_bgp_ecmp
    lab.start_responder("n1", ["198.18.0.2"], 8080)
    # a socket made in the client's namespace reaches n1 through r1 ...
    assert http_get(lab.ns("c"), 8080, "/", host="198.18.0.2") == (200, b"n1\n")
    # ... the same address from a socket of the host's namespace is refused before any packet
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as host_sock,
        pytest.raises(HostDialError),
    ):
        host_sock.connect(("198.18.0.2", 8080))


def test_stopping_one_speaker_withdraws_its_path(lab_bgp_ecmp: Lab) -> None:
    lab = lab_bgp_ecmp
    for node in ("n1", "n2"):
        lab.start_exabgp_static(node, [VIP4])
    lab.wait_route("r1", VIP4, nexthops=2, timeout=15)
    in_n1 = netns.pids(lab.ns("n1"))
    assert lab.exabgp("n1").pid in in_n1

    started = time.monotonic()
    lab.stop_exabgp("n1")
    route = lab.wait_route("r1", VIP4, nexthops=1, timeout=3)
    assert route.gateways == {"198.18.0.6"}
    assert time.monotonic() - started < 3
    assert not [p for p in in_n1 if netns.alive(p)], "ExaBGP or its children survived"


def test_two_leaf_ecmp_on_both_leaves(lab_two_leaf: Lab) -> None:
    lab = lab_two_leaf
    for node in ("n1", "n2"):
        lab.start_exabgp_static(node, [VIP4, VIP6])
        lab.exec(node, ["ip", "addr", "add", VIP4, "dev", "lo"])
    for leaf in ("leaf1", "leaf2"):
        states = lab.wait_established(leaf, timeout=15)
        assert len(states) == 4
        assert len(lab.wait_route(leaf, VIP4, nexthops=2).nexthops) == 2
        assert len(lab.wait_route(leaf, VIP6, nexthops=2).nexthops) == 2
    for address in ("198.18.0.2", "198.18.0.18", "2001:db8:1:2::2", "2001:db8:2:2::2", VIP4_ADDR):
        lab.exec("c", ["ping", "-c1", "-W2", address])


def test_teardown_leaves_nothing_even_on_error(lab_available: None) -> None:
    labs: list[Lab] = []
    namespaces: tuple[str, ...] = ()
    pids: list[int] = []

    def failing_test_body() -> None:
        nonlocal namespaces, pids
        with Lab.up(topology_path("bgp-ecmp"), run=new_run_name()) as lab:
            labs.append(lab)
            exabgp = lab.start_exabgp_static("n1", [VIP4])
            lab.wait_route("r1", VIP4, nexthops=1, timeout=15)
            namespaces, pids = lab.namespaces(), lab.pids()
            # zebra, bgpd, ExaBGP and its CLI child
            assert len(pids) >= 4 and exabgp.pid in pids
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test_body()
    (lab,) = labs
    report = lab.down()  # idempotent: the report of the teardown that already ran
    print(f"bring-up {lab.bringup_seconds:.2f}s, teardown {report.seconds:.2f}s")
    _assert_gone(namespaces, pids)
    assert not lab.directory.exists()


def test_cli_up_vtysh_down(lab_available: None) -> None:
    run = new_run_name()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "lab.cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    up = cli("up", str(topology_path("bgp-ecmp")), "--run", run)
    try:
        assert up.returncode == 0, up.stderr
        lab = Lab.attach(run)
        namespaces, pids = lab.namespaces(), lab.pids()
        assert all(netns.exists(ns) for ns in namespaces)
        assert run in cli("list").stdout
        summary = cli("vtysh", "--run", run, "r1", "--", "show", "bgp", "summary", "json")
        assert summary.returncode == 0 and "ipv4Unicast" in summary.stdout, summary.stderr
        exa = cli("exabgp", "--run", run, "n2", "--announce", VIP4)
        assert exa.returncode == 0, exa.stderr
        lab.wait_route("r1", VIP4, nexthops=1, timeout=15)
        pids = lab.pids()
        ping = cli("exec", "--run", run, "c", "--", "ping", "-c1", "-W2", "198.18.0.6")
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        down = cli("down", "--run", run)
    assert down.returncode == 0, down.stderr
    _assert_gone(namespaces, pids)


CRASHING_OWNER = """
import os, sys
from lab.runner import Lab
lab = Lab.start(sys.argv[1], sys.argv[2])
lab.start_exabgp_static("n1", ["203.0.113.10/32"])
lab.wait_route("r1", "203.0.113.10/32", nexthops=1, timeout=15)
print(" ".join(map(str, lab.pids())), flush=True)
os._exit(3)  # dies without any teardown
"""


def test_stale_run_of_a_crashed_owner_is_swept(lab_available: None) -> None:
    run = new_run_name()
    owner = subprocess.run(
        [sys.executable, "-c", CRASHING_OWNER, str(topology_path("bgp-ecmp")), run],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert owner.returncode == 3, owner.stderr
    pids = [int(p) for p in owner.stdout.split()]
    lab = Lab.attach(run)
    namespaces = lab.namespaces()
    assert all(netns.exists(ns) for ns in namespaces) and any(netns.alive(p) for p in pids)
    assert not lab.state.owner_alive()

    reports = {r.run: r for r in sweep_stale()}
    assert run in reports
    _assert_gone(namespaces, pids)


def test_fib_reads_multipath_and_nexthop_object_routes(lab_bgp_ecmp: Lab) -> None:
    lab = lab_bgp_ecmp
    ip = ["ip", "-n", lab.ns("r1")]
    for args in (
        ["nexthop", "add", "id", "1", "via", "198.18.0.2", "dev", "eth1"],
        ["nexthop", "add", "id", "2", "via", "198.18.0.6", "dev", "eth2"],
        ["nexthop", "add", "id", "10", "group", "1/2"],
        ["route", "add", "203.0.113.20/32", "nhid", "10"],
        ["route", "add", "203.0.113.21/32", "nexthop", "via", "198.18.0.2", "nexthop", "via",
         "198.18.0.10"],
    ):  # fmt: skip
        netns.run([*ip, *args])
    both = {"198.18.0.2", "198.18.0.6"}
    for compat in ("1", "0"):  # 0: the kernel reports only the nexthop id
        lab.exec("r1", ["sysctl", "-qw", f"net.ipv4.nexthop_compat_mode={compat}"])
        grouped = lab.wait_route("r1", "203.0.113.20/32", nexthops=2, timeout=1)
        assert grouped.nexthop_object and grouped.gateways == both
        classic = lab.wait_route("r1", "203.0.113.21/32", nexthops=2, timeout=1)
        assert not classic.nexthop_object and classic.gateways == {"198.18.0.2", "198.18.0.10"}
    netns.run([*ip, "route", "del", "203.0.113.21/32"])
    lab.wait_no_route("r1", "203.0.113.21/32", timeout=1)
