"""Graceful drain (speaker.drain): GRACEFUL_SHUTDOWN before the withdraw on exit and while an
opted-in node is cordoned, driven through the BGP announcer with a fake driver and clock; the
ExaBGP container's preStop wait; the Node fields it reads."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from pathlib import Path

import pytest

from exalb.config.model import Peer
from exalb.views import DRAIN_ON_CORDON_ANNOTATION, NodeView, node_view
from speaker.bgp import BGPAnnouncer, BGPPlan
from speaker.decisions import Announcements, Route
from speaker.drain import Drain, cordon_drain_requested, graceful_shutdown
from speaker.exabgp import launch
from speaker.exabgp.render import Rendered
from tests.unit.helpers import sync
from tests.unit.test_speaker_loop import FakeDriver

ip = ipaddress.ip_address
net = ipaddress.ip_network

IBGP = Peer(name="ibgp", my_asn=64500, peer_asn=64500, peer_address=ip("198.18.0.1"))
EBGP = Peer(name="ebgp", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.5"))
R_IBGP = Route(net("203.0.113.10/32"), "ibgp", communities=("64500:1",), local_pref=200)
R_EBGP = Route(net("203.0.113.10/32"), "ebgp")


def test_gshut_community_everywhere_local_pref_zero_only_towards_ibgp() -> None:
    out = {r.peer_name: r for r in graceful_shutdown([R_IBGP, R_EBGP], {"ibgp"})}
    assert out["ibgp"].communities == ("64500:1", "65535:0")
    assert out["ibgp"].local_pref == 0
    assert out["ebgp"].communities == ("65535:0",)
    assert out["ebgp"].local_pref is None  # LOCAL_PREF is not sent over eBGP
    assert graceful_shutdown(out.values(), {"ibgp"}) == frozenset(out.values())  # idempotent


@pytest.mark.parametrize(
    ("unschedulable", "annotation", "default", "expected"),
    [(False, True, True, False), (True, None, False, False), (True, None, True, True),
     (True, True, False, True), (True, False, True, False)],
)  # fmt: skip
def test_cordon_drains_only_when_opted_in(
    unschedulable: bool, annotation: bool | None, default: bool, expected: bool
) -> None:
    node = NodeView("n1", unschedulable=unschedulable, drain_on_cordon=annotation)
    assert cordon_drain_requested(node, default) is expected


def test_node_view_reads_cordon_and_the_annotation() -> None:
    def node(value: object, unschedulable: object = True) -> NodeView:
        meta = {"name": "n1", "annotations": {DRAIN_ON_CORDON_ANNOTATION: value}}
        return node_view({"metadata": meta, "spec": {"unschedulable": unschedulable}})

    assert node("true").unschedulable and node("TRUE").drain_on_cordon is True
    assert node("false").drain_on_cordon is False
    assert node("maybe").drain_on_cordon is None  # not an opt-in, not an opt-out
    assert not node("true", "yes").unschedulable
    assert not node_view({"metadata": {"name": "n1"}}).unschedulable


def test_drain_phases() -> None:
    d = Drain(5.0)
    assert d.phase(0) == "announce" and d.remaining(0) == 0
    assert d.start(10.0, "cordoned")
    assert not d.start(12.0, "stopping")  # keeps its start, but stopping outranks a cordon
    assert d.reason == "stopping"
    assert d.phase(14.9) == "gshut" and d.remaining(14.0) == pytest.approx(1.0)
    assert d.phase(15.0) == "withdrawn" and d.remaining(16) == 0
    d.cancel()
    assert d.phase(20) == "announce"


# -- through the announcer ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def plan(cordoned: bool = False, routes: tuple[Route, ...] = (R_IBGP, R_EBGP)) -> BGPPlan:
    ann = Announcements(routes=frozenset(routes), peers=(EBGP, IBGP))
    return BGPPlan(ann, Rendered("conf\n", (), ()), cordoned=cordoned)


def drained(routes: frozenset[Route]) -> bool:
    return bool(routes) and all("65535:0" in r.communities for r in routes)


@pytest.fixture(autouse=True)
def _no_real_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("speaker.bgp.kernel_source_address", lambda _ip: None)


def announcer(
    tmp_path: Path, clock: Clock, seconds: float = 5.0
) -> tuple[BGPAnnouncer, FakeDriver]:
    driver = FakeDriver()
    bgp = BGPAnnouncer(driver, bridge_argv=("b",), config_path=tmp_path / "exabgp.conf",
                       drain_seconds=seconds, clock=clock, sleep=clock.sleep)  # fmt: skip
    return bgp, driver


@sync
async def test_stop_announces_gshut_waits_the_drain_time_then_withdraws(tmp_path: Path) -> None:
    clock = Clock()
    bgp, driver = announcer(tmp_path, clock)
    await bgp.apply(plan())
    assert driver.routes[-1] == frozenset({R_IBGP, R_EBGP})
    await bgp.stop(withdraw=True)
    assert drained(driver.routes[-1])
    assert clock.slept == [5.0]
    assert driver.shutdowns == [True]


@sync
async def test_no_drain_when_keeping_routes_or_with_zero_seconds(tmp_path: Path) -> None:
    clock = Clock()
    bgp, driver = announcer(tmp_path, clock)
    await bgp.apply(plan())
    await bgp.stop(withdraw=False)  # graceful restart: the routes stay, untouched
    assert not drained(driver.routes[-1]) and clock.slept == [] and driver.shutdowns == [False]
    bgp, driver = announcer(tmp_path / "x", clock, seconds=0)
    (tmp_path / "x").mkdir()
    await bgp.apply(plan())
    await bgp.stop(withdraw=True)
    assert not drained(driver.routes[-1]) and clock.slept == [] and driver.shutdowns == [True]


@sync
async def test_cordon_drains_then_withdraws_and_uncordon_announces_again(tmp_path: Path) -> None:
    clock = Clock()
    bgp, driver = announcer(tmp_path, clock)
    await bgp.apply(plan())
    await bgp.apply(plan(cordoned=True))
    assert drained(driver.routes[-1])
    status = bgp.drain_status()
    assert status is not None and status["phase"] == "gshut" and status["reason"] == "cordoned"
    # a Service change during the drain stays drained
    await bgp.apply(plan(cordoned=True, routes=(R_EBGP,)))
    assert driver.routes[-1] == graceful_shutdown([R_EBGP], set())
    clock.now += 5.0
    await asyncio.sleep(0)
    bgp._drain_expired()  # what the loop's timer calls
    assert driver.routes[-1] == frozenset()
    assert bgp.drain_status() == {"reason": "cordoned", "phase": "withdrawn", "seconds": 5.0,
                                  "withdrawIn": 0.0}  # fmt: skip
    await bgp.apply(plan(cordoned=True))  # still cordoned: stays withdrawn
    assert driver.routes[-1] == frozenset()
    await bgp.apply(plan(cordoned=False))
    assert driver.routes[-1] == frozenset({R_IBGP, R_EBGP}) and bgp.drain_status() is None


@sync
async def test_the_cordon_timer_withdraws_without_a_recompute(tmp_path: Path) -> None:
    bgp, driver = announcer(tmp_path, Clock(), seconds=0.05)
    bgp.drain.clock = time.monotonic
    await bgp.apply(plan(cordoned=True))
    assert drained(driver.routes[-1])
    await asyncio.sleep(0.2)
    assert driver.routes[-1] == frozenset()


@sync
async def test_stopping_during_a_cordon_drain_waits_only_the_rest(tmp_path: Path) -> None:
    clock = Clock()
    bgp, driver = announcer(tmp_path, clock)
    await bgp.apply(plan(cordoned=True))
    clock.now += 3.0
    await bgp.stop(withdraw=True)
    assert clock.slept == [pytest.approx(2.0)] and driver.shutdowns == [True]
    await bgp.apply(plan(cordoned=False))  # a late recompute after stop changes nothing
    assert driver.routes[-1] == graceful_shutdown([R_IBGP, R_EBGP], {"ibgp"})


def test_prestop_waits_for_the_done_file_or_its_timeout(tmp_path: Path) -> None:
    done = tmp_path / "speaker.done"
    started = time.monotonic()
    assert launch.main(["--wait-done", str(done), "--wait", "0.3"]) == 0
    assert time.monotonic() - started >= 0.3
    threading.Timer(0.2, done.write_text, args=("done\n",)).start()
    started = time.monotonic()
    assert launch.main(["--wait-done", str(done), "--wait", "30"]) == 0
    assert time.monotonic() - started < 5
    with pytest.raises(SystemExit):
        launch.main([])  # the launcher itself still needs --config and --root
