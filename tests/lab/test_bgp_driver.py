"""The ExaBGP driver with real ExaBGP 5.0.15 and real FRR 8.4 in network namespaces.

Runs ``containerlab/bgp-ecmp``'s sibling ``containerlab/bgp-driver`` (one router r1, one
node n1 with two links: two IPv4 sessions and one IPv6 session, iBGP) with the one runner;
a test that needs eBGP with a TCP MD5 password reconfigures r1 through vtysh before ExaBGP
starts. Everything the driver sends goes through the real bridge that ExaBGP runs from the
real rendered config; truth is read from FRR (``vtysh ... json``) and r1's kernel FIB.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exalb.config.model import Config, Peer, SecretRef
from exalb.views import NodeView
from lab.runner import Lab
from lab.wait import wait_for
from speaker.announcer import Inputs
from speaker.bgp import BGPAnnouncer, BGPPlan
from speaker.cluster_store import ClusterStore
from speaker.decisions import Announcements, Options, Route
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver, exabgp_validate
from speaker.exabgp.render import render_config
from speaker.passwords import SecretPasswords

pytestmark = pytest.mark.lab
T = TypeVar("T")
ip = ipaddress.ip_address
net = ipaddress.ip_network
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EXABGP = str(VENV_BIN / "exabgp")
BRIDGE = str(VENV_BIN / "exalb-exabgp-bridge")
DRIVER_PROC = str(Path(__file__).with_name("driver_proc.py"))
#: The driver tests' ExaBGP neither offers its CLI nor listens: the bridge is its only API.
EXABGP_ENV = {"exabgp.api.cli": "false", "exabgp.tcp.bind": ""}
NODE = NodeView(name="n1", addresses=(ip("198.18.0.2"),))
ROUTER = "r1"


@pytest.fixture
def ibgp_lab(lab_factory: Callable[[str], Lab]) -> Lab:
    """The topology as it is: n1 is iBGP (AS 64500) on all three sessions."""
    return lab_factory("bgp-driver")


@pytest.fixture
def md5_lab(lab_factory: Callable[[str], Lab]) -> Lab:
    """n1 as eBGP (AS 64501) with a TCP MD5 password on the first IPv4 session."""
    lab = lab_factory("bgp-driver")
    lab.vtysh(
        ROUTER,
        "configure terminal",
        "router bgp 64500",
        "neighbor 198.18.0.2 remote-as 64501",
        "neighbor 198.18.0.2 password lab-pw",
        "neighbor 198.18.0.6 remote-as 64501",
        "neighbor 2001:db8:1::2 remote-as 64501",
    )
    return lab


def established(lab: Lab, address: str) -> bool:
    return lab.frr(ROUTER).neighbor(address).get("bgpState") == "Established"


def fib_routes(lab: Lab, version: int = 4) -> set[str]:
    """Prefixes installed by bgpd in r1's kernel FIB (the real forwarding truth)."""
    return lab.fib(ROUTER).prefixes(version)


class DriverThread:
    """The real asyncio Driver on its own loop thread, callable from sync tests."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task: Future[None] = asyncio.run_coroutine_threadsafe(driver.run(), self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def set_routes(self, routes: list[Route]) -> None:
        self.loop.call_soon_threadsafe(self.driver.set_routes, routes)

    def converged(self, timeout: float = 15) -> None:
        self.call(self.driver.wait_converged(timeout), timeout + 1)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.driver.stop)
        try:
            self.task.result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def start_exabgp(lab: Lab, peers: list[Peer]) -> tuple[Path, Path, Any]:
    """ExaBGP in n1 from the product's rendered config; returns the bridge socket, the
    config file ExaBGP reads (and reloads), and the rendering."""
    sock = lab.node_dir("n1") / "bridge.sock"
    rendered = render_config(peers, NODE, [BRIDGE, "--socket", str(sock)])
    assert not rendered.errors
    proc = lab.start_exabgp("n1", rendered.text, env=EXABGP_ENV)
    wait_for("the bridge's socket", sock.exists, 10, 0.02)
    return sock, proc.config_path, rendered


PEER_R1 = Peer(name="r1", my_asn=64500, peer_asn=64500, peer_address=ip("198.18.0.1"),
               source_address=ip("198.18.0.2"), hold_time=9)  # fmt: skip
PEER_R1_V6 = Peer(name="r1v6", my_asn=64500, peer_asn=64500, peer_address=ip("2001:db8:1::1"),
                  source_address=ip("2001:db8:1::2"), hold_time=9)  # fmt: skip


def test_announce_attributes_withdraw_ipv4_and_ipv6(ibgp_lab: Lab) -> None:
    lab = ibgp_lab
    sock, _, rendered = start_exabgp(lab, [PEER_R1, PEER_R1_V6])
    d = DriverThread(Driver(unix_connector(sock)))
    try:
        d.call(asyncio.sleep(0))
        d.loop.call_soon_threadsafe(d.driver.set_neighbors, rendered.neighbors)
        wait_for(
            "both sessions",
            lambda: established(lab, "198.18.0.2") and established(lab, "2001:db8:1::2"),
            15,
            0.02,
        )
        v4 = Route(
            net("203.0.113.10/32"),
            "r1",
            local_pref=250,
            med=7,
            communities=("64500:1", "64500:2"),
            large_communities=("64500:1:2",),
        )
        bulk = [Route(net(f"203.0.113.{i}/32"), "r1", communities=("64500:9",))
                for i in (20, 21, 22)]  # fmt: skip
        v6 = Route(net("2001:db8:ffff::10/128"), "r1v6")
        d.set_routes([v4, *bulk, v6])
        d.converged()
        want4 = {"203.0.113.10/32", "203.0.113.20/32", "203.0.113.21/32", "203.0.113.22/32"}
        wait_for("IPv4 routes in the FIB", lambda: fib_routes(lab, 4) == want4, 5, 0.02)
        wait_for(
            "IPv6 route in the FIB",
            lambda: fib_routes(lab, 6) == {"2001:db8:ffff::10/128"},
            5,
            0.02,
        )
        path = lab.frr(ROUTER).bgp_route("203.0.113.10/32")["paths"][0]  # type: ignore[index]
        assert path["locPrf"] == 250  # iBGP: LOCAL_PREF honoured
        assert path["metric"] == 7
        assert path["community"]["list"] == ["64500:1", "64500:2"]
        assert path["largeCommunity"]["list"] == ["64500:1:2"]
        bulk_path = lab.frr(ROUTER).bgp_route("203.0.113.21/32")["paths"][0]  # type: ignore[index]
        assert bulk_path["community"]["list"] == ["64500:9"]
        # the wire truth as the driver sees it
        rib = d.call(d.driver.show_adj_rib_out())
        assert rib["198.18.0.1"][net("203.0.113.10/32")].matches(v4)
        assert set(rib["2001:db8:1::1"]) == {net("2001:db8:ffff::10/128")}
        # withdraw two bulk routes (one `withdraw attributes ... nlri` line) and the IPv6 route
        d.set_routes([v4, bulk[0]])
        d.converged()
        wait_for(
            "two IPv4 routes left",
            lambda: fib_routes(lab, 4) == {"203.0.113.10/32", "203.0.113.20/32"},
            5,
            0.02,
        )
        wait_for("IPv6 route withdrawn", lambda: fib_routes(lab, 6) == set(), 5, 0.02)
        # graceful withdraw-all (SIGTERM path)
        d.call(d.driver.shutdown(withdraw=True))
        wait_for("every route withdrawn", lambda: fib_routes(lab, 4) == set(), 5, 0.02)
    finally:
        d.stop()


def _session(lab: Lab, addr: str) -> tuple[int, int, int]:
    """(established epoch, connections established, connections dropped) as FRR counts them.

    FRR derives the epoch from "now - uptime", so it may jitter by one second between reads;
    compare with :func:`_same_session`.
    """
    n = lab.frr(ROUTER).neighbor(addr)
    return (int(n["bgpTimerUpEstablishedEpoch"]), int(n["connectionsEstablished"]),
            int(n["connectionsDropped"]))  # fmt: skip


def _same_session(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return abs(a[0] - b[0]) <= 1 and a[1:] == b[1:]


def test_md5_reload_adds_peer_without_resetting_the_first(md5_lab: Lab) -> None:
    lab = md5_lab
    first = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"),
                 source_address=ip("198.18.0.2"), hold_time=9, password="lab-pw")  # fmt: skip
    second = Peer(name="r1b", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.5"),
                  source_address=ip("198.18.0.6"), hold_time=9)  # fmt: skip
    sock, conf, rendered = start_exabgp(lab, [first])
    d = DriverThread(
        Driver(unix_connector(sock), config_path=conf, validate=exabgp_validate(EXABGP))
    )
    try:
        d.loop.call_soon_threadsafe(d.driver.set_neighbors, rendered.neighbors)
        wait_for("MD5 session up", lambda: established(lab, "198.18.0.2"), 15, 0.02)
        r10 = Route(net("203.0.113.10/32"), "r1")
        d.set_routes([r10])
        d.converged()
        wait_for("route in the FIB", lambda: fib_routes(lab, 4) == {"203.0.113.10/32"}, 5, 0.02)
        before = _session(lab, "198.18.0.2")
        # a new route never touches the session
        d.set_routes([r10, Route(net("203.0.113.11/32"), "r1")])
        d.converged()
        wait_for("new route", lambda: "203.0.113.11/32" in fib_routes(lab, 4), 5, 0.02)
        # a second peer: re-render, validate, reload
        new = render_config([first, second], NODE, [BRIDGE, "--socket", str(sock)])
        assert d.call(d.driver.apply_config(new))
        d.set_routes([r10, Route(net("203.0.113.11/32"), "r1"),
                      Route(net("203.0.113.12/32"), "r1b")])  # fmt: skip
        wait_for("second session up", lambda: established(lab, "198.18.0.6"), 15, 0.02)
        d.converged()
        wait_for("route via r1b", lambda: "203.0.113.12/32" in fib_routes(lab, 4), 5, 0.02)
        r1b_path = lab.frr(ROUTER).bgp_route("203.0.113.12/32")["paths"][0]  # type: ignore[index]
        assert r1b_path["peer"]["peerId"] == "198.18.0.6"
        after = _session(lab, "198.18.0.2")
        assert _same_session(after, before), f"first session was reset: {before} -> {after}"
        assert established(lab, "198.18.0.2")
        assert fib_routes(lab, 4) == {"203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"}
    finally:
        d.stop()


def _driver_proc(lab: Lab, sock: Path, spec: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
    """driver_proc.py in n1 (where the speaker would run), recorded and stopped by the lab."""
    spec_path = lab.node_dir("n1") / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    return lab.popen(
        "n1", [sys.executable, DRIVER_PROC, str(sock), str(spec_path)], name=name,
        env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _first_report(lab: Lab, proc: subprocess.Popen[bytes], name: str) -> dict[str, Any]:
    """The first JSON report the driver process printed (its log also holds its logs)."""
    log = lab.node_dir("n1") / f"{name}.log"

    def report() -> dict[str, Any] | None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"converged"'):
                return dict(json.loads(line))
        assert proc.poll() is None, "driver process exited without converging"
        return None

    return wait_for(f"{name} converged", report, 60, 0.02)


def test_killed_speaker_leaves_routes_and_restart_converges_by_diff(ibgp_lab: Lab) -> None:
    lab = ibgp_lab
    sock, _, rendered = start_exabgp(lab, [PEER_R1])
    wait_for("session up", lambda: established(lab, "198.18.0.2"), 15, 0.02)
    spec = {
        "neighbors": [["r1", "198.18.0.1", 4, False]],
        "routes": [[f"203.0.113.{i}/32", "r1", 200, ["64500:7"]] for i in (10, 11, 12)],
    }
    want = {"203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"}
    first = _driver_proc(lab, sock, spec, "driver-1")
    report = _first_report(lab, first, "driver-1")
    assert report["announce"] >= 1
    wait_for("routes in the FIB", lambda: fib_routes(lab, 4) == want, 5, 0.02)
    # FRR bumps a prefix's table version on every update it receives for it
    version = lab.frr(ROUTER).bgp_route("203.0.113.10/32")["version"]  # type: ignore[index]
    session = _session(lab, "198.18.0.2")
    lab.stop_process("n1", first, first=signal.SIGKILL)
    # the routes stay: ExaBGP and the bridge do not depend on the speaker
    wait_for("routes still in the FIB", lambda: fib_routes(lab, 4) == want, 1, 0.02)
    second = _driver_proc(lab, sock, spec, "driver-2")
    try:
        report = _first_report(lab, second, "driver-2")
        assert report == {"converged": True, "announce": 0.0, "withdraw": 0.0, "show": 1.0}
        assert fib_routes(lab, 4) == want
        assert _same_session(_session(lab, "198.18.0.2"), session)
        assert lab.frr(ROUTER).bgp_route("203.0.113.10/32")["version"] == version  # type: ignore[index]
        # the restarted speaker still converges by diff on a change
        spec["routes"] = spec["routes"][:2]
    finally:
        lab.stop_process("n1", second, first=signal.SIGKILL)
    third = _driver_proc(lab, sock, spec, "driver-3")
    try:
        report = _first_report(lab, third, "driver-3")
        assert report["withdraw"] == 1.0 and report["announce"] == 0.0
        wait_for(
            "one route withdrawn",
            lambda: fib_routes(lab, 4) == want - {"203.0.113.12/32"},
            5,
            0.02,
        )
    finally:
        lab.stop_process("n1", third, first=signal.SIGKILL)
    assert rendered.neighbors[0].address == "198.18.0.1"


def test_a_peer_exabgp_refuses_is_left_out_and_every_other_peer_change_applies(
    ibgp_lab: Lab,
) -> None:
    """Issue 12, point 4, with the real ExaBGP: a neighbor ``exabgp validate`` refuses used to
    freeze every peer of the node (the old file stayed). Now r1 goes, r1b comes, the bad
    peer is left out and reported, and FRR's sessions and FIB show exactly that."""
    lab = ibgp_lab
    sock, conf, _ = start_exabgp(lab, [PEER_R1])
    driver = Driver(unix_connector(sock), config_path=conf, validate=exabgp_validate(EXABGP))
    d = DriverThread(driver)
    bgp = BGPAnnouncer(driver, bridge_argv=[BRIDGE, "--socket", str(sock)], config_path=conf,
                       resolve_source=lambda _ip: None)  # fmt: skip

    def plan(peers: list[Peer], routes: list[Route]) -> BGPPlan:
        rendered = render_config(peers, NODE, [BRIDGE, "--socket", str(sock)])
        return BGPPlan(Announcements(frozenset(routes), peers=tuple(peers)), rendered)

    try:
        r10 = Route(net("203.0.113.10/32"), "r1")
        assert d.call(bgp.apply(plan([PEER_R1], [r10])))
        wait_for("session up", lambda: established(lab, "198.18.0.2"), 15, 0.02)
        d.converged()
        wait_for("the route in the FIB", lambda: fib_routes(lab, 4) == {"203.0.113.10/32"}, 5, 0.02)
        good = Peer(name="r1b", my_asn=64500, peer_asn=64500, peer_address=ip("198.18.0.5"),
                    source_address=ip("198.18.0.6"), hold_time=9)  # fmt: skip
        # the parser refuses this since issue 12; a model from elsewhere must not hurt
        bad = Peer(name="bad", my_asn=64500, peer_asn=64500, peer_address=ip("2001:db8:1::1"),
                   source_address=ip("2001:db8:1::2"), hold_time=1_000_000)  # fmt: skip
        r12 = Route(net("203.0.113.12/32"), "r1b")
        r13 = Route(net("2001:db8:ffff::13/128"), "bad")
        assert d.call(bgp.apply(plan([good, bad], [r12, r13])), 120)
        assert bgp.config_applied
        assert bgp.rendered is not None
        assert [n.peer_name for n in bgp.rendered.neighbors] == ["r1b"]
        (refused,) = [p for p in bgp.rendered.errors if p.peer == "bad"]
        assert "65535" in refused.message
        assert "bad" not in conf.read_text() and "r1b" in conf.read_text()
        wait_for("the good new peer came up", lambda: established(lab, "198.18.0.6"), 15, 0.02)
        wait_for("the removed peer went", lambda: not established(lab, "198.18.0.2"), 15, 0.02)
        d.converged()
        wait_for(
            "the new route in the FIB", lambda: fib_routes(lab, 4) == {"203.0.113.12/32"}, 5, 0.02
        )
        assert fib_routes(lab, 6) == set()
        assert not established(lab, "2001:db8:1::2")  # ExaBGP never configured it
    finally:
        d.stop()


class SecretKube:
    """The one ``get`` SecretPasswords makes; ``secret = None`` is a deleted Secret (404)."""

    def __init__(self, password: str) -> None:
        data = {"password": base64.b64encode(password.encode()).decode()}
        self.secret: dict[str, Any] | None = {"type": "kubernetes.io/basic-auth", "data": data}

    def get(self, _res: object, _name: str, _namespace: str | None = None) -> Any:
        return self.secret


def test_a_deleted_password_secret_never_tears_the_md5_session_down(md5_lab: Lab) -> None:
    """Issue 12, point 5, with the real ExaBGP and FRR's MD5 session: deleting the BGPPeer's
    password Secret used to remove the neighbor. Neither the running speaker nor a restarted
    one (which never saw the Secret) touches the session now."""
    lab = md5_lab
    peer = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"),
                source_address=ip("198.18.0.2"), hold_time=9,
                password_secret=SecretRef("bgp-pw", "metallb-system"))  # fmt: skip
    sock = lab.node_dir("n1") / "bridge.sock"
    argv = [BRIDGE, "--socket", str(sock)]
    text = render_config([peer], NODE, argv, {"r1": "lab-pw"}).text
    conf = lab.start_exabgp("n1", text, env=EXABGP_ENV).config_path
    wait_for("the bridge's socket", sock.exists, 10, 0.02)
    kube = SecretKube("lab-pw")
    inputs = Inputs(Config(peers=(peer,)), NODE, ClusterStore("n1").snapshot(), Options())

    def speaker() -> tuple[DriverThread, BGPAnnouncer]:
        driver = Driver(unix_connector(sock), config_path=conf, validate=exabgp_validate(EXABGP))
        bgp = BGPAnnouncer(driver, bridge_argv=argv, config_path=conf,
                           passwords=SecretPasswords(kube, ttl=0),  # type: ignore[arg-type]
                           resolve_source=lambda _ip: None)  # fmt: skip
        return DriverThread(driver), bgp

    d, bgp = speaker()
    try:
        assert d.call(bgp.apply(bgp.decide(inputs)))
        wait_for("the MD5 session is up", lambda: established(lab, "198.18.0.2"), 15, 0.02)
        before = _session(lab, "198.18.0.2")
        kube.secret = None  # kubectl delete secret bgp-pw
        plan = bgp.decide(inputs)
        assert [p.severity for p in plan.rendered.problems] == ["warning"]
        assert d.call(bgp.apply(plan)) and bgp.config_applied
        assert "md5-password" in conf.read_text()
    finally:
        d.stop()
    d, bgp = speaker()  # a restarted speaker: the Secret is still gone
    try:
        plan = bgp.decide(inputs)
        assert plan.rendered.text == conf.read_text()
        assert d.call(bgp.apply(plan)) and bgp.config_applied
        d.converged()
        wait_for("session still up", lambda: established(lab, "198.18.0.2"), 5, 0.02)
        assert _same_session(_session(lab, "198.18.0.2"), before), "the session was reset"
    finally:
        d.stop()
