"""The ExaBGP driver with real ExaBGP 5.0.15 and real FRR 8.4 in network namespaces.

Uses the self-contained fixture of ``bgp_netns.py`` (one router, one node with two links,
MD5 and iBGP/eBGP configurable), because these tests need per-test FRR settings.
Everything the driver sends goes through the real bridge that ExaBGP runs from the real
rendered config; truth is read from FRR (``vtysh ... json``) and r1's kernel FIB.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exalb.config.model import Config, Peer, SecretRef
from exalb.views import NodeView
from speaker.announcer import Inputs
from speaker.bgp import BGPAnnouncer, BGPPlan
from speaker.cluster_store import ClusterStore
from speaker.decisions import Announcements, Options, Route
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver, exabgp_validate
from speaker.exabgp.render import render_config
from speaker.passwords import SecretPasswords

from .bgp_netns import BRIDGE, EXABGP, BgpLab, lab_skip_reason, wait_for

pytestmark = pytest.mark.lab
T = TypeVar("T")
ip = ipaddress.ip_address
net = ipaddress.ip_network
NODE = NodeView(name="n1", addresses=(ip("192.0.2.2"),))


@pytest.fixture(scope="module")
def lab_ok() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)


def make_lab(**kw: Any) -> Iterator[BgpLab]:
    lab = BgpLab(**kw)
    try:
        yield lab.up()
    finally:
        lab.down()


@pytest.fixture
def ibgp_lab(lab_ok: None) -> Iterator[BgpLab]:
    yield from make_lab(n1_as=64500)


@pytest.fixture
def md5_lab(lab_ok: None) -> Iterator[BgpLab]:
    yield from make_lab(n1_as=64501, md5="lab-pw")


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


def start_exabgp(lab: BgpLab, peers: list[Peer]) -> tuple[Path, Path, Any]:
    sock = lab.dir / "bridge.sock"
    conf = lab.dir / "exabgp.conf"
    rendered = render_config(peers, NODE, [BRIDGE, "--socket", str(sock)])
    assert not rendered.errors
    conf.write_text(rendered.text)
    lab.start_exabgp(conf)
    wait_for(sock.exists, 10)
    return sock, conf, rendered


PEER_R1 = Peer(name="r1", my_asn=64500, peer_asn=64500, peer_address=ip("192.0.2.1"),
               source_address=ip("192.0.2.2"), hold_time=9)  # fmt: skip
PEER_R1_V6 = Peer(name="r1v6", my_asn=64500, peer_asn=64500, peer_address=ip("2001:db8:1::1"),
                  source_address=ip("2001:db8:1::2"), hold_time=9)  # fmt: skip


def test_announce_attributes_withdraw_ipv4_and_ipv6(ibgp_lab: BgpLab) -> None:
    lab = ibgp_lab
    sock, _, rendered = start_exabgp(lab, [PEER_R1, PEER_R1_V6])
    d = DriverThread(Driver(unix_connector(sock)))
    try:
        d.call(asyncio.sleep(0))
        d.loop.call_soon_threadsafe(d.driver.set_neighbors, rendered.neighbors)
        wait_for(lambda: lab.established("192.0.2.2") and lab.established("2001:db8:1::2"), 15)
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
        wait_for(lambda: lab.fib_routes(4) == want4, 5)
        wait_for(lambda: lab.fib_routes(6) == {"2001:db8:ffff::10/128"}, 5)
        path = lab.bgp_route("203.0.113.10/32")["paths"][0]  # type: ignore[index]
        assert path["locPrf"] == 250  # iBGP: LOCAL_PREF honoured
        assert path["metric"] == 7
        assert path["community"]["list"] == ["64500:1", "64500:2"]
        assert path["largeCommunity"]["list"] == ["64500:1:2"]
        assert lab.bgp_route("203.0.113.21/32")["paths"][0]["community"]["list"] == ["64500:9"]  # type: ignore[index]
        # the wire truth as the driver sees it
        rib = d.call(d.driver.show_adj_rib_out())
        assert rib["192.0.2.1"][net("203.0.113.10/32")].matches(v4)
        assert set(rib["2001:db8:1::1"]) == {net("2001:db8:ffff::10/128")}
        # withdraw two bulk routes (one `withdraw attributes ... nlri` line) and the IPv6 route
        d.set_routes([v4, bulk[0]])
        d.converged()
        wait_for(lambda: lab.fib_routes(4) == {"203.0.113.10/32", "203.0.113.20/32"}, 5)
        wait_for(lambda: lab.fib_routes(6) == set(), 5)
        # graceful withdraw-all (SIGTERM path)
        d.call(d.driver.shutdown(withdraw=True))
        wait_for(lambda: lab.fib_routes(4) == set(), 5)
    finally:
        d.stop()


def _session(lab: BgpLab, addr: str) -> tuple[int, int, int]:
    """(established epoch, connections established, connections dropped) as FRR counts them.

    FRR derives the epoch from "now - uptime", so it may jitter by one second between reads;
    compare with :func:`_same_session`.
    """
    n = lab.neighbor(addr)
    return (int(n["bgpTimerUpEstablishedEpoch"]), int(n["connectionsEstablished"]),
            int(n["connectionsDropped"]))  # fmt: skip


def _same_session(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return abs(a[0] - b[0]) <= 1 and a[1:] == b[1:]


def test_md5_reload_adds_peer_without_resetting_the_first(md5_lab: BgpLab) -> None:
    lab = md5_lab
    first = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("192.0.2.1"),
                 source_address=ip("192.0.2.2"), hold_time=9, password="lab-pw")  # fmt: skip
    second = Peer(name="r1b", my_asn=64501, peer_asn=64500, peer_address=ip("192.0.2.5"),
                  source_address=ip("192.0.2.6"), hold_time=9)  # fmt: skip
    sock, conf, rendered = start_exabgp(lab, [first])
    d = DriverThread(
        Driver(unix_connector(sock), config_path=conf, validate=exabgp_validate(EXABGP))
    )
    try:
        d.loop.call_soon_threadsafe(d.driver.set_neighbors, rendered.neighbors)
        wait_for(lambda: lab.established("192.0.2.2"), 15)  # MD5 session up
        r10 = Route(net("203.0.113.10/32"), "r1")
        d.set_routes([r10])
        d.converged()
        wait_for(lambda: lab.fib_routes(4) == {"203.0.113.10/32"}, 5)
        before = _session(lab, "192.0.2.2")
        # a new route never touches the session
        d.set_routes([r10, Route(net("203.0.113.11/32"), "r1")])
        d.converged()
        wait_for(lambda: "203.0.113.11/32" in lab.fib_routes(4), 5)
        # a second peer: re-render, validate, reload
        new = render_config([first, second], NODE, [BRIDGE, "--socket", str(sock)])
        assert d.call(d.driver.apply_config(new))
        d.set_routes([r10, Route(net("203.0.113.11/32"), "r1"),
                      Route(net("203.0.113.12/32"), "r1b")])  # fmt: skip
        wait_for(lambda: lab.established("192.0.2.6"), 15)
        d.converged()
        wait_for(lambda: "203.0.113.12/32" in lab.fib_routes(4), 5)
        assert lab.bgp_route("203.0.113.12/32")["paths"][0]["peer"]["peerId"] == "192.0.2.6"  # type: ignore[index]
        after = _session(lab, "192.0.2.2")
        assert _same_session(after, before), f"first session was reset: {before} -> {after}"
        assert lab.established("192.0.2.2")
        assert lab.fib_routes(4) == {"203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"}
    finally:
        d.stop()


def _driver_proc(lab: BgpLab, sock: Path, spec: dict[str, Any]) -> subprocess.Popen[str]:
    spec_path = lab.dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("driver_proc.py")), str(sock),
         str(spec_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    )  # fmt: skip
    lab.pids.append(proc.pid)
    return proc


def _first_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "driver process exited without converging"
    return dict(json.loads(line))


def test_killed_speaker_leaves_routes_and_restart_converges_by_diff(ibgp_lab: BgpLab) -> None:
    lab = ibgp_lab
    sock, _, rendered = start_exabgp(lab, [PEER_R1])
    wait_for(lambda: lab.established("192.0.2.2"), 15)
    spec = {
        "neighbors": [["r1", "192.0.2.1", 4, False]],
        "routes": [[f"203.0.113.{i}/32", "r1", 200, ["64500:7"]] for i in (10, 11, 12)],
    }
    want = {"203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"}
    first = _driver_proc(lab, sock, spec)
    report = _first_report(first)
    assert report["announce"] >= 1
    wait_for(lambda: lab.fib_routes(4) == want, 5)
    # FRR bumps a prefix's table version on every update it receives for it
    version = lab.bgp_route("203.0.113.10/32")["version"]  # type: ignore[index]
    session = _session(lab, "192.0.2.2")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(5)
    # the routes stay: ExaBGP and the bridge do not depend on the speaker
    wait_for(lambda: lab.fib_routes(4) == want, 1)
    second = _driver_proc(lab, sock, spec)
    try:
        report = _first_report(second)
        assert report == {"converged": True, "announce": 0.0, "withdraw": 0.0, "show": 1.0}
        assert lab.fib_routes(4) == want
        assert _same_session(_session(lab, "192.0.2.2"), session)
        assert lab.bgp_route("203.0.113.10/32")["version"] == version  # type: ignore[index]
        # the restarted speaker still converges by diff on a change
        spec["routes"] = spec["routes"][:2]
    finally:
        os.kill(second.pid, signal.SIGKILL)
        second.wait(5)
    third = _driver_proc(lab, sock, spec)
    try:
        report = _first_report(third)
        assert report["withdraw"] == 1.0 and report["announce"] == 0.0
        wait_for(lambda: lab.fib_routes(4) == want - {"203.0.113.12/32"}, 5)
    finally:
        os.kill(third.pid, signal.SIGKILL)
        third.wait(5)
    assert rendered.neighbors[0].address == "192.0.2.1"


def test_a_peer_exabgp_refuses_is_left_out_and_every_other_peer_change_applies(
    ibgp_lab: BgpLab,
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
        wait_for(lambda: lab.established("192.0.2.2"), 15)
        d.converged()
        wait_for(lambda: lab.fib_routes(4) == {"203.0.113.10/32"}, 5)
        good = Peer(name="r1b", my_asn=64500, peer_asn=64500, peer_address=ip("192.0.2.5"),
                    source_address=ip("192.0.2.6"), hold_time=9)  # fmt: skip
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
        wait_for(lambda: lab.established("192.0.2.6"), 15)  # the good new peer came up
        wait_for(lambda: not lab.established("192.0.2.2"), 15)  # the removed peer went
        d.converged()
        wait_for(lambda: lab.fib_routes(4) == {"203.0.113.12/32"}, 5)
        assert lab.fib_routes(6) == set()
        assert not lab.established("2001:db8:1::2")  # ExaBGP never configured it
    finally:
        d.stop()


class SecretKube:
    """The one ``get`` SecretPasswords makes; ``secret = None`` is a deleted Secret (404)."""

    def __init__(self, password: str) -> None:
        data = {"password": base64.b64encode(password.encode()).decode()}
        self.secret: dict[str, Any] | None = {"type": "kubernetes.io/basic-auth", "data": data}

    def get(self, _res: object, _name: str, _namespace: str | None = None) -> Any:
        return self.secret


def test_a_deleted_password_secret_never_tears_the_md5_session_down(md5_lab: BgpLab) -> None:
    """Issue 12, point 5, with the real ExaBGP and FRR's MD5 session: deleting the BGPPeer's
    password Secret used to remove the neighbor. Neither the running speaker nor a restarted
    one (which never saw the Secret) touches the session now."""
    lab = md5_lab
    peer = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("192.0.2.1"),
                source_address=ip("192.0.2.2"), hold_time=9,
                password_secret=SecretRef("bgp-pw", "metallb-system"))  # fmt: skip
    sock, conf = lab.dir / "bridge.sock", lab.dir / "exabgp.conf"
    argv = [BRIDGE, "--socket", str(sock)]
    conf.write_text(render_config([peer], NODE, argv, {"r1": "lab-pw"}).text)
    lab.start_exabgp(conf)
    wait_for(sock.exists, 10)
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
        wait_for(lambda: lab.established("192.0.2.2"), 15)  # the MD5 session is up
        before = _session(lab, "192.0.2.2")
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
        wait_for(lambda: lab.established("192.0.2.2"), 5)
        assert _same_session(_session(lab, "192.0.2.2"), before), "the session was reset"
    finally:
        d.stop()
