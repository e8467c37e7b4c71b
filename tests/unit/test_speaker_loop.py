"""The speaker's handlers without root, ExaBGP or an apiserver: the loop's order of operations
(:class:`speaker.app.Speaker`) with fake protocols, and the BGP announcer's reload/retry
decisions (:class:`speaker.bgp.BGPAnnouncer`) with a fake driver."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from exalb.config.model import IPNetwork
from speaker import metrics
from speaker.announcer import Inputs
from speaker.app import Settings, Speaker, burst_delay
from speaker.bgp import BGPAnnouncer, BGPPlan
from speaker.cluster_store import ClusterStore
from speaker.decisions import Announcements, Route
from speaker.exabgp.driver import ConfigRefusedError, ReloadError
from speaker.exabgp.render import Rendered
from speaker.exabgp.show import AdjRibEntry, NeighborStatus
from tests.unit.helpers import sync
from tests.unit.test_speaker_core import NS, loaded_world, svc

# -- fakes ------------------------------------------------------------------------------------


class FakeDriver:
    """Records what the announcer asks; ``refuse``/``refuse_text``/``fail_reload`` script
    apply_config and validation (``refuse_text``: a text containing it is invalid)."""

    def __init__(self, *, connected: bool = True) -> None:
        self.connections = 1 if connected else 0
        self.last_error: str | None = None
        self.last_down: dict[str, str] = {}
        self._connected = connected
        self.applied: list[str] = []
        self.validated: list[str] = []
        self.routes: list[frozenset[Route]] = []
        self.shutdowns: list[bool] = []
        self.refuse = False
        self.refuse_text: str | None = None
        self.fail_reload = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self) -> None:
        await asyncio.Event().wait()

    def _judge(self, text: str) -> str | None:
        self.validated.append(text)
        if self.refuse:
            return "exabgp validate: nonsense"
        if self.refuse_text is not None and self.refuse_text in text:
            return f"error: not valid\nline 9: {self.refuse_text}\nholdtime must be <= 65535"
        return None

    async def validate_text(self, text: str) -> str | None:
        return self._judge(text)

    async def apply_config(self, rendered: Rendered) -> bool:
        complaint = self._judge(rendered.text)
        if complaint is not None:
            raise ConfigRefusedError(complaint)
        if self.fail_reload:
            raise ReloadError("no ack")
        self.applied.append(rendered.text)
        return True

    def set_routes(self, routes: Iterable[Route]) -> None:
        self.routes.append(frozenset(routes))

    async def show_neighbors(self) -> list[NeighborStatus]:
        return []

    async def show_adj_rib_out(self) -> dict[str, dict[IPNetwork, AdjRibEntry]]:
        return {}

    async def wait_converged(self, timeout: float | None = None) -> None:
        return None

    async def shutdown(self, *, withdraw: bool = True, timeout: float = 10.0) -> None:
        self.shutdowns.append(withdraw)


class FakeAnnouncer:
    """A protocol that records the order of calls into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, in_force: bool = True) -> None:
        self.name = name
        self.journal = journal
        self.in_force = in_force
        self.crash = False
        self.inputs: list[Inputs] = []

    def decide(self, inputs: Inputs) -> str:
        self.inputs.append(inputs)
        return f"plan-{self.name}"

    async def apply(self, plan: str) -> bool:
        self.journal.append(f"{self.name}:{plan}")
        if self.crash:
            raise RuntimeError("bug")
        return self.in_force

    async def run(self) -> None:
        return None

    async def stop(self, *, withdraw: bool) -> None:
        self.journal.append(f"{self.name}:stop:{withdraw}")

    def ready(self) -> bool:
        return self.in_force


def speaker_with(
    store: ClusterStore, *announcers: Any, settings: Settings | None = None
) -> tuple[Speaker, list[str]]:
    """A Speaker over fake protocols (its typed ``bgp`` slot holds the last one)."""
    sp = Speaker(settings or Settings("n1", NS, retry_delay=60), store, announcers[-1])
    sp.announcers = tuple(announcers)
    return sp, []


# -- the loop's handler -----------------------------------------------------------------------


@sync
async def test_plans_are_applied_in_protocol_order_and_a_failure_means_retry() -> None:
    journal: list[str] = []
    l2, bgp = FakeAnnouncer("layer2", journal), FakeAnnouncer("bgp", journal, in_force=False)
    sp, _ = speaker_with(loaded_world(), l2, bgp)
    sp._loop = asyncio.get_running_loop()
    computed = await sp.recompute()
    assert computed is not None
    assert journal == ["layer2:plan-layer2", "bgp:plan-bgp"]
    # both decided on the same snapshot and config
    assert l2.inputs[0] is bgp.inputs[0]
    assert l2.inputs[0].node.name == "n1"
    assert not sp._dirty.is_set()  # the retry is scheduled after retry_delay, not now
    assert not sp.ready()


@sync
async def test_one_protocol_crashing_does_not_stop_the_other() -> None:
    journal: list[str] = []
    l2, bgp = FakeAnnouncer("layer2", journal), FakeAnnouncer("bgp", journal)
    l2.crash = True
    sp, _ = speaker_with(loaded_world(), l2, bgp)
    await sp.recompute()
    assert journal == ["layer2:plan-layer2", "bgp:plan-bgp"]


def test_burst_delay_is_none_when_idle_and_the_last_computation_time_in_a_burst() -> None:
    assert burst_delay(since_last=0.5, last_took=0.3, debounce=0.02) == 0.0  # idle
    assert burst_delay(since_last=0.001, last_took=0.002, debounce=0.02) == 0.002  # small
    assert burst_delay(since_last=0.001, last_took=0.4, debounce=0.02) == 0.02  # capped
    assert burst_delay(since_last=float("inf"), last_took=0.0, debounce=0.02) == 0.0


@sync
async def test_an_isolated_change_is_decided_at_once_and_a_burst_waits() -> None:
    """The debounce here is an hour, and every computation seems to take ten minutes (the
    clock jumps during apply): a computation that happens at all happened without a wait."""
    now = [100.0]

    class Slow(FakeAnnouncer):
        async def apply(self, plan: str) -> bool:
            now[0] += 600.0
            return await super().apply(plan)

    bgp = Slow("bgp", [])
    settings = Settings("n1", NS, retry_delay=60, debounce=3600.0)
    sp = Speaker(settings, loaded_world(), bgp, clock=lambda: now[0])  # type: ignore[arg-type]
    sp.announcers = (bgp,)
    sp._loop = asyncio.get_running_loop()

    async def recomputes_after(seconds: float, want: int) -> int:
        deadline = time.monotonic() + seconds
        while sp.recomputes < want and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return sp.recomputes

    loop = asyncio.create_task(sp._recompute_loop())
    try:
        sp.notify()  # idle: decided at once
        assert await recomputes_after(10.0, 1) == 1
        sp.notify()  # right after a computation of "ten minutes": a burst, it waits
        assert await recomputes_after(0.3, 2) == 1
        loop.cancel()
        now[0] += 3600.0  # long after the last computation: idle again
        loop = asyncio.create_task(sp._recompute_loop())
        sp.notify()
        assert await recomputes_after(10.0, 2) == 2
    finally:
        loop.cancel()


@sync
async def test_nothing_is_decided_without_a_config_or_without_this_node() -> None:
    journal: list[str] = []
    bgp = FakeAnnouncer("bgp", journal)
    no_config = ClusterStore("n1")
    sp, _ = speaker_with(no_config, bgp)
    assert await sp.recompute() is None
    other_node = loaded_world()
    other_node.node_name = "n9"
    sp, _ = speaker_with(other_node, bgp)
    assert await sp.recompute() is None
    assert journal == [] and bgp.inputs == []


@sync
async def test_an_invalid_config_keeps_the_last_good_one_and_says_stale() -> None:
    journal: list[str] = []
    bgp = FakeAnnouncer("bgp", journal)
    store = loaded_world()
    sp, _ = speaker_with(store, bgp)
    await sp.recompute()
    good = sp.config
    bad = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {"addresses": ["nonsense"]},
    }
    store.on_config("modified", f"{NS}/o0", None, bad)
    computed = await sp.recompute()
    assert computed is not None and sp.config is good
    assert sp.config_state.stale and sp.config_state.loaded
    assert any("nonsense" in p for p in sp.config_state.problems)
    assert bgp.inputs[-1].config is good


@sync
async def test_stop_stops_every_protocol_with_the_withdraw_choice() -> None:
    journal: list[str] = []
    l2, bgp = FakeAnnouncer("layer2", journal), FakeAnnouncer("bgp", journal)
    sp, _ = speaker_with(loaded_world(), l2, bgp, settings=Settings("n1", NS))
    await sp.stop()
    await sp.stop(withdraw=False)
    assert journal == ["layer2:stop:True", "bgp:stop:True", "layer2:stop:False", "bgp:stop:False"]


# -- the BGP announcer ------------------------------------------------------------------------


def plan(text: str, prefix: str = "203.0.113.10/32") -> BGPPlan:
    route = Route(ipaddress.ip_network(prefix), "r1", "self")
    return BGPPlan(Announcements(routes=frozenset({route})), Rendered(text, (), ()))


def announcer(driver: FakeDriver, path: Path) -> BGPAnnouncer:
    return BGPAnnouncer(driver, bridge_argv=("bridge",), config_path=path)


@sync
async def test_first_config_is_applied_even_before_the_bridge_connects(tmp_path: Path) -> None:
    driver = FakeDriver(connected=False)
    bgp = announcer(driver, tmp_path / "exabgp.conf")  # no file yet: ExaBGP starts with it
    assert await bgp.apply(plan("a\n"))
    assert driver.applied == ["a\n"] and bgp.first_applied.is_set()
    assert driver.routes[-1] == plan("a\n").announcements.routes
    assert not bgp.ready()  # not connected yet


@sync
async def test_a_peer_change_waits_for_the_bridge_but_routes_still_flow(tmp_path: Path) -> None:
    path = tmp_path / "exabgp.conf"
    path.write_text("old\n")
    driver = FakeDriver(connected=False)
    bgp = announcer(driver, path)
    assert not await bgp.apply(plan("new\n", "203.0.113.11/32"))  # retry later
    assert driver.applied == []
    assert driver.routes[-1] == plan("x", "203.0.113.11/32").announcements.routes
    driver._connected = True
    assert await bgp.apply(plan("new\n", "203.0.113.11/32"))
    assert driver.applied == ["new\n"] and bgp.ready()
    # the same text again: no second reload
    assert await bgp.apply(plan("new\n", "203.0.113.12/32"))
    assert driver.applied == ["new\n"]


@sync
async def test_a_refused_config_is_not_revalidated_and_a_failed_reload_is_retried(
    tmp_path: Path,
) -> None:
    driver = FakeDriver()
    bgp = announcer(driver, tmp_path / "exabgp.conf")
    driver.refuse = True
    assert await bgp.apply(plan("bad\n"))  # refused: the old config stays in force
    driver.refuse = False
    assert await bgp.apply(plan("bad\n"))
    assert driver.applied == []  # not validated again
    driver.fail_reload = True
    assert not await bgp.apply(plan("good\n"))
    driver.fail_reload = False
    assert await bgp.apply(plan("good\n"))
    assert driver.applied == ["good\n"]


@sync
async def test_stop_withdraws_only_what_was_announced(tmp_path: Path) -> None:
    driver = FakeDriver()
    bgp = announcer(driver, tmp_path / "exabgp.conf")
    await bgp.stop(withdraw=True)  # nothing was ever applied: nothing to take back
    await bgp.apply(plan("a\n"))
    await bgp.stop(withdraw=True)
    await bgp.stop(withdraw=False)
    assert driver.shutdowns == [False, True, False]


@pytest.fixture(autouse=True)
def _no_real_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The announcer's default source-address lookup opens a UDP socket; not needed here."""
    monkeypatch.setattr("speaker.bgp.kernel_source_address", lambda _ip: None)


@sync
async def test_a_hostile_config_is_stale_in_status_and_new_services_still_announced(
    tmp_path: Path,
) -> None:
    """Issue 12, point 3: a 400-digit hold-time or 5,000-deep nesting used to raise out of the
    parser, so every recompute failed: no new Service was announced while ``/status`` said
    the config was current."""
    driver = FakeDriver()
    store = loaded_world()
    bgp = BGPAnnouncer(driver, bridge_argv=("/bridge",), config_path=tmp_path / "exabgp.conf")
    sp = Speaker(Settings("n1", NS, retry_delay=60), store, bgp)
    await sp.recompute()
    good = sp.config
    for text in (
        "peers:\n- {peer-address: 203.0.113.250, peer-asn: 1, my-asn: 2, hold-time: %ss}\n"
        % ("9" * 400),
        "address-pools: " + "[" * 5000 + "]" * 5000 + "\n",
    ):
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": NS},
            "data": {"config": text},
        }
        store.on_config("added", f"{NS}/config", None, cm)
        name = f"new{len(text)}"
        store.on_service("added", f"app/{name}", None, svc(name, "203.0.113.20"))
        computed = await sp.recompute()
        assert computed is not None and sp.config is good
        doc = sp.status({})
        assert doc["config"]["stale"] and doc["config"]["loaded"]
        assert doc["config"]["problems"] and metrics.CONFIG_STALE._value.get() == 1
        assert any(s["service"] == f"app/{name}" for s in doc["services"])
        store.on_config("deleted", f"{NS}/config", cm, None)


@sync
async def test_an_exception_escaping_the_parser_is_reported_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal: list[str] = []
    bgp = FakeAnnouncer("bgp", journal)
    store = loaded_world()
    sp, _ = speaker_with(store, bgp)
    await sp.recompute()

    def crash(*_a: Any, **_k: Any) -> Any:
        raise RecursionError("deep")

    monkeypatch.setattr("speaker.app.parse_documents", crash)
    store.on_config("modified", f"{NS}/o0", None, {"kind": "IPAddressPool"})
    assert await sp.recompute() is not None  # decided on the last good config
    assert sp.config_state.stale and "RecursionError" in sp.config_state.problems[0]
