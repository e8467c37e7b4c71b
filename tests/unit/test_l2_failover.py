"""The failover engine: who answers given ranks, probes, silence, BYE and partitions.

Messages reach the engine as the sidecar hands them over: authenticated, from the sender's
address, each with a new sequence number; an ack answers one of the engine's own probes.
"""

from __future__ import annotations

import ipaddress
import itertools

from exalb.contracts.l2_state import Candidate, DesiredState, IPState
from garp.failover import Change, Engine, Timing
from garp.probe import ACK, BYE, COVERING, PROBE, Message

VIP = ipaddress.ip_address("198.51.100.50")
VIP6 = ipaddress.ip_address("2001:db8::50")
ADDR = {n: ipaddress.ip_address(f"198.51.100.{i}") for i, n in enumerate(("a", "b", "c"), 11)}
T = Timing(probe_interval=0.1, dead_after=0.35, burst_interval=1.1, burst_duration=5.0)


def state(node: str, order: tuple[str, ...] = ("a", "b", "c"), gen: int = 1) -> DesiredState:
    cands = tuple(Candidate(n, ADDR[n]) for n in order)
    return DesiredState(node, gen, (IPState(VIP, cands), IPState(VIP6, cands)))


def engine(node: str, **kw: object) -> Engine:
    e = Engine(session=hash(node) & 0xFFFF, timing=T)
    e.apply_state(state(node, **kw), 0.0)  # type: ignore[arg-type]
    return e


_SEQ = itertools.count(1)


def msg(kind: int, node: str, session: int, flags: int = 0) -> Message:
    return Message(kind, node, session, next(_SEQ), flags)


def ack(e: Engine, node: str, session: int = 7, flags: int = 0, probe: int = -1) -> Message:
    """``node``'s answer to one of ``e``'s outstanding probes (default: the latest)."""
    echo = sorted(e.peers.peers[node].outstanding)[probe]
    return Message(ACK, node, session, next(_SEQ), flags, e.session, echo)


def hear(e: Engine, m: Message, now: float) -> Change:
    heard = e.receive(m, ADDR[m.node], now)
    assert heard.rejected is None, heard.rejected
    return heard.change


def test_owner_answers_at_once_and_bursts() -> None:
    e = Engine(session=1, timing=T)
    change = e.apply_state(state("a"), 10.0)
    assert change.gained == {VIP, VIP6} and not change.takeovers
    assert e.answering == {VIP, VIP6}
    assert e.probes_due(10.0) == []  # rank 0 probes nobody
    assert sorted(map(str, e.announcements_due(10.0))) == sorted([str(VIP), str(VIP6)])
    sends = [t for t in (10.0 + i * 0.05 for i in range(1, 200)) if e.announcements_due(t)]
    # 0.1 and 0.3 s (early repeats), then 1.1, 2.2, 3.3, 4.4 s; then quiet
    assert len(sends) == 6
    assert abs(sends[0] - 10.1) < 0.06 and abs(sends[1] - 10.3) < 0.06
    assert abs(sends[2] - 11.1) < 0.06 and abs(sends[-1] - 14.4) < 0.06


def test_standby_probes_owner_and_takes_over_after_silence() -> None:
    e = engine("b")
    assert e.answering == frozenset()
    probes = e.probes_due(0.0)
    assert [(a, m.kind) for a, m in probes] == [(ADDR["a"], PROBE)]
    assert e.probes_due(0.05) == []  # not due yet
    hear(e, ack(e, "a"), 0.1)
    assert not e.tick(0.4)  # 0.3 s of silence: still alive
    change = e.tick(0.46)  # 0.36 s: dead
    assert change.gained == {VIP, VIP6} == change.takeovers
    assert e.next_deadline(0.46) <= 0.56


def test_deadline_wakes_exactly_at_death() -> None:
    e = engine("b")
    e.probes_due(1.0)
    hear(e, ack(e, "a"), 1.0)
    e.probes_due(1.0)
    assert e.next_deadline(1.0) == 1.1  # next probe
    e.probes_due(1.3)
    assert e.next_deadline(1.3) == 1.35  # owner's death, before the next probe at 1.4


def test_new_peers_get_grace() -> None:
    e = Engine(session=1, timing=T)
    e.apply_state(state("b"), 5.0)
    assert not e.tick(5.3)
    assert e.tick(5.36).gained  # never heard: dead after one grace period


def test_third_rank_waits_for_both() -> None:
    e = engine("c")
    assert {a for a, _ in e.probes_due(0.0)} == {ADDR["a"], ADDR["b"]}
    hear(e, ack(e, "b"), 0.3)  # a silent, b alive: b's job
    assert not e.tick(0.5)
    assert e.tick(0.7).gained == {VIP, VIP6}


def test_yield_when_better_ranked_returns_and_covering_flag() -> None:
    e = engine("b")
    e.tick(1.0)
    assert e.answering == {VIP, VIP6}
    (_addr, probe), *_ = e.probes_due(1.0)
    assert probe.flags & COVERING  # "I answer what you rank above me for"
    change = hear(e, ack(e, "a"), 1.05)
    assert change.lost == {VIP, VIP6} and e.answering == frozenset()
    assert e.announcements_due(1.05) == []  # burst cancelled with the IP
    (_, probe), *_ = e.probes_due(1.2)
    assert not probe.flags & COVERING


def test_owner_reasserts_on_covering_probe_rate_limited() -> None:
    e = engine("a")
    e.announcements_due(0.0)
    e.announcements_due(10.0)  # burst over
    assert e.announcements_due(20.0) == []
    hear(e, msg(PROBE, "b", 9, flags=COVERING), 20.0)
    assert set(e.announcements_due(20.0)) == {VIP, VIP6}
    hear(e, msg(PROBE, "b", 9, flags=COVERING), 20.5)
    e.announcements_due(20.5)  # the early repeats (20.1, 20.3) of the running burst
    # within reassert_gap the burst continues as is: not restarted (which would send at
    # 20.6), next round at 21.1
    assert e.announcements_due(20.6) == []
    assert set(e.announcements_due(21.1)) == {VIP, VIP6}
    assert e.ack_for(Message(PROBE, "b", 9)).kind == ACK


def test_bye_means_dead_now_and_session_matters() -> None:
    e = engine("b")
    e.probes_due(0.0)
    e.probes_due(0.1)
    answer, late = ack(e, "a", session=1), ack(e, "a", session=1, probe=0)
    hear(e, answer, 0.1)
    change = hear(e, msg(BYE, "a", 1), 0.12)
    assert change.gained == {VIP, VIP6}
    # a late (reordered) ack of the dying process: older than its BYE, dropped as a replay
    assert not e.receive(late, ADDR["a"], 0.13).change
    e.probes_due(0.5)
    assert hear(e, ack(e, "a", session=2), 0.5).lost == {VIP, VIP6}  # restarted sidecar


def test_foreign_claim() -> None:
    owner = engine("a")
    owner.announcements_due(0.0)
    owner.announcements_due(10.0)
    owner.foreign_claim(VIP, 20.0)
    assert owner.announcements_due(20.0) == [VIP]
    standby = engine("b")
    standby.tick(1.0)  # took over
    standby.probes_due(1.0)
    assert standby.probes_due(1.01) == []
    standby.foreign_claim(VIP, 1.01)
    assert standby.probes_due(1.01) != []  # ask the better-ranked node right away


def test_state_change_moves_ownership_immediately() -> None:
    e = engine("a")
    change = e.apply_state(state("a", order=("b", "a")), 1.0)
    assert change.lost == {VIP, VIP6}
    change = e.apply_state(state("a", order=("b",)), 2.0)
    assert not change and e.probes_due(2.0) == []  # no longer a candidate, nobody to watch


def test_candidate_without_address_is_presumed_alive() -> None:
    cands = (Candidate("a", None), Candidate("b", ADDR["b"]))
    e = Engine(session=1, timing=T)
    e.apply_state(DesiredState("b", 1, (IPState(VIP, cands),)), 0.0)
    assert not e.tick(100.0)
    assert e.probes_due(0.0) == []


def test_leave_sends_bye_to_every_other_candidate() -> None:
    e = engine("b")
    e.tick(1.0)
    byes = e.leave()
    assert {a for a, _ in byes} == {ADDR["a"], ADDR["c"]}
    assert all(m.kind == BYE for _, m in byes)
    assert e.answering == frozenset()
