"""The probe channel as an attacker on the segment sees it (issue 12, point 1).

What must hold: a forged probe gets no answer and changes nothing; a forged BYE changes
nothing; a genuine BYE recorded earlier and replayed after the sender restarted changes
nothing; a restarted sidecar (new session) is believed again; nobody outside the desired
state is ever acknowledged. The codec and the engine are pure, so every case is exact.
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exalb.config.model import IPAddress
from exalb.contracts.l2_state import Candidate, DesiredState, IPState
from garp import probe, probesock
from garp.failover import Engine, Heard, Timing
from garp.keys import KeyFileError, KeyWatcher, read_keyring
from garp.peers import CHALLENGE_TTL, MAX_SESSIONS, Budget
from garp.probe import ACK, BYE, COVERING, PROBE, Keyring, Message

KEY = Keyring((b"k" * 32,))
OTHER = Keyring((b"x" * 32,))
VIP = ipaddress.ip_address("198.51.100.50")
ADDR = {n: ipaddress.ip_address(f"198.51.100.{i}") for i, n in enumerate(("a", "b", "c"), 11)}
STRANGER = ipaddress.ip_address("198.51.100.99")
T = Timing()
_SEQ = itertools.count(1)


def state(node: str, order: tuple[str, ...] = ("a", "b", "c")) -> DesiredState:
    return DesiredState(node, 1, (IPState(VIP, tuple(Candidate(n, ADDR[n]) for n in order)),))


def engine(node: str = "b", **kw: object) -> Engine:
    e = Engine(session=100 + ord(node), timing=T, **kw)  # type: ignore[arg-type]
    e.apply_state(state(node), 0.0)
    return e


def msg(kind: int, node: str, session: int, flags: int = 0) -> Message:
    return Message(kind, node, session, next(_SEQ), flags)


def ack_to(e: Engine, node: str, session: int) -> Message:
    echo = max(e.peers.peers[node].outstanding)
    return Message(ACK, node, session, next(_SEQ), 0, e.session, echo)


def wire(e: Engine, m: Message | bytes, src: IPAddress, now: float) -> Heard | None:
    """The sidecar's receive path: source check, tag check, then the engine."""
    data = m if isinstance(m, bytes) else probe.encode(m, KEY)
    if not e.known_address(src):
        return None
    decoded = probe.decode(data, KEY)
    if isinstance(decoded, str):
        return None
    return e.receive(decoded, src, now)


def owner_alive(e: Engine, session: int, now: float) -> None:
    e.probes_due(now)
    heard = e.receive(ack_to(e, "a", session), ADDR["a"], now)
    assert heard.rejected is None and e.answering == frozenset()


# --------------------------------------------------------------------------- codec


def test_tag_covers_every_byte() -> None:
    data = probe.encode(Message(BYE, "a", 1, 5), KEY)
    for i in range(len(data)):
        mutated = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        assert isinstance(probe.decode(mutated, KEY), str), i
    assert probe.decode(data, OTHER) == "unauthenticated"
    assert probe.decode(data + b"\0", KEY) == "malformed"


def test_rotation_accepts_either_key_in_both_directions() -> None:
    old, new = b"o" * 32, b"n" * 32
    rotating = Keyring((new, old))
    m = Message(PROBE, "a", 1, 2, COVERING, 3, 4)
    for sender, receiver in [
        (rotating, Keyring((old,))),  # updated -> not yet updated
        (Keyring((old,)), rotating),  # not yet updated -> updated
        (rotating, Keyring((new,))),  # still rotating -> finished
        (Keyring((new,)), rotating),
    ]:
        assert probe.decode(probe.encode(m, sender), receiver) == m
    assert probe.decode(probe.encode(m, Keyring((new,))), Keyring((old,))) == "unauthenticated"


def test_keyring_refuses_weak_keys_and_never_prints_them() -> None:
    with pytest.raises(ValueError, match="16 to 4096 bytes"):
        Keyring((b"short",))
    with pytest.raises(ValueError, match="1 to 2 keys"):
        Keyring(())
    assert "kkkk" not in repr(KEY) and probe.key_id(b"k" * 32).hex() in repr(KEY)


# --------------------------------------------------------------------------- who is believed


def test_forged_probe_gets_no_answer_and_changes_nothing() -> None:
    e = engine("a")  # the owner: what an attacker probes to learn (node, session)
    data = probe.encode(msg(PROBE, "b", 9), OTHER)  # right format, wrong key
    assert wire(e, data, ADDR["b"], 0.1) is None
    assert e.answering == {VIP}
    # a key holder that is not in the state, or a peer's name from a stranger's address
    assert e.receive(msg(PROBE, "zz", 9), ADDR["b"], 0.1).rejected == "unknown-node"
    heard = e.receive(msg(PROBE, "b", 9), STRANGER, 0.1)
    assert heard.rejected == "wrong-address" and heard.reply is None
    assert not e.known_address(STRANGER)
    # the genuine peer at its address is answered, with the challenge echoed
    heard = e.receive(m := msg(PROBE, "b", 9), ADDR["b"], 0.1)
    assert heard.reply is not None and heard.reply.kind == ACK
    assert (heard.reply.echo_session, heard.reply.echo_seq) == (9, m.seq)


def test_forged_bye_changes_nothing() -> None:
    e = engine("b")
    owner_alive(e, 1, 0.1)
    forged = probe.encode(Message(BYE, "a", 1, 10**9), OTHER)
    assert wire(e, forged, ADDR["a"], 0.12) is None
    assert e.answering == frozenset()
    # the right name and session but not from the owner's address: refused too
    assert e.receive(msg(BYE, "a", 1), ADDR["c"], 0.12).rejected == "wrong-address"
    assert e.answering == frozenset()


def test_replayed_genuine_bye_after_restart_changes_nothing() -> None:
    e = engine("b")
    owner_alive(e, 1, 0.1)
    bye = probe.encode(msg(BYE, "a", 1), KEY)  # recorded by the attacker
    heard = wire(e, bye, ADDR["a"], 0.12)
    assert heard is not None and heard.bye and e.answering == {VIP}  # genuine: take over
    owner_alive(e, 2, 0.5)  # the owner's sidecar restarted (new session): we yield
    heard = wire(e, bye, ADDR["a"], 0.55)
    assert heard is not None and heard.rejected == "replay"  # session 1 still remembered
    for s in range(10, 10 + 2 * MAX_SESSIONS):  # make the table forget session 1's seq
        e.receive(msg(PROBE, "a", s), ADDR["a"], 0.56)
    heard = wire(e, bye, ADDR["a"], 0.57)
    assert heard is not None and heard.rejected == "unverified-bye"  # not the live session
    assert e.answering == frozenset()


def test_replay_in_the_same_session_is_dropped() -> None:
    e = engine("b")
    owner_alive(e, 1, 0.1)
    p = probe.encode(msg(PROBE, "a", 1), KEY)
    first, again = wire(e, p, ADDR["a"], 0.2), wire(e, p, ADDR["a"], 0.21)
    assert first is not None and first.reply is not None
    assert again is not None and again.rejected == "replay" and again.reply is None


def test_recorded_ack_cannot_keep_a_dead_owner_alive() -> None:
    e = engine("b")
    e.probes_due(0.0)
    a = probe.encode(ack_to(e, "a", 1), KEY)
    assert wire(e, a, ADDR["a"], 0.05).rejected is None  # type: ignore[union-attr]
    assert wire(e, a, ADDR["a"], 0.3).rejected == "replay"  # type: ignore[union-attr]
    # an ack to a probe that was never sent, to another session, or too old: no life
    fake = Message(ACK, "a", 1, next(_SEQ), 0, e.session, 999)
    assert e.receive(fake, ADDR["a"], 0.3).rejected == "unsolicited-ack"
    e.probes_due(0.3)
    other = Message(ACK, "a", 1, next(_SEQ), 0, e.session + 1, max(e.peers.peers["a"].outstanding))
    assert e.receive(other, ADDR["a"], 0.31).rejected == "unsolicited-ack"
    late = ack_to(e, "a", 1)
    assert e.tick(0.41).gained == {VIP}  # owner silent since 0.05
    stale = 0.3 + CHALLENGE_TTL + 0.01  # the probe it answers is too old to prove anything
    assert e.receive(late, ADDR["a"], stale).rejected == "unsolicited-ack"
    assert e.answering == {VIP}


def test_restarted_sidecar_is_believed_again() -> None:
    e = engine("b")
    owner_alive(e, 1, 0.1)
    assert e.receive(msg(BYE, "a", 1), ADDR["a"], 0.12).change.gained == {VIP}
    # the restarted owner probes us (we rank above it for nothing here: still answered)
    probe_from_new = e.receive(msg(PROBE, "a", 2), ADDR["a"], 0.2)
    assert probe_from_new.reply is not None and e.answering == {VIP}
    e.probes_due(0.3)
    change = e.receive(ack_to(e, "a", 2), ADDR["a"], 0.3).change
    assert change.lost == {VIP} and e.peers_alive(0.3) == (("a", True),)


def test_bye_from_a_session_never_seen_alive_is_ignored() -> None:
    e = engine("b")  # the owner has not answered yet (fresh standby): grace, not BYE
    assert e.receive(msg(BYE, "a", 5), ADDR["a"], 0.1).rejected == "unverified-bye"
    assert not e.tick(0.2) and e.answering == frozenset()


def test_lower_ranked_peer_is_answered_but_its_acks_are_not_life() -> None:
    e = engine("a")
    assert e.receive(msg(PROBE, "c", 3), ADDR["c"], 0.1).reply is not None
    unsolicited = Message(ACK, "c", 3, next(_SEQ), 0, e.session, 1)
    assert e.receive(unsolicited, ADDR["c"], 0.1).rejected == "unsolicited-ack"
    assert e.receive(msg(BYE, "c", 3), ADDR["c"], 0.1).rejected is None  # no effect
    assert e.answering == {VIP}


def test_per_peer_budget() -> None:
    e = engine("a", budget=Budget(rate=10.0, burst=5.0))
    results = [e.receive(msg(PROBE, "b", 9), ADDR["b"], 1.0).rejected for _ in range(8)]
    assert results == [None] * 5 + ["rate-limited"] * 3
    assert e.receive(msg(PROBE, "b", 9), ADDR["b"], 1.1).rejected is None  # refilled
    assert e.receive(msg(PROBE, "c", 9), ADDR["c"], 1.0).rejected is None  # its own budget


def test_old_sessions_cannot_push_out_the_verified_one() -> None:
    e = engine("b")
    owner_alive(e, 1, 0.1)
    recorded = probe.encode(msg(PROBE, "a", 1), KEY)
    assert wire(e, recorded, ADDR["a"], 0.15).rejected is None  # type: ignore[union-attr]
    for s in range(10, 10 + 3 * MAX_SESSIONS):  # replays from many old sessions
        e.receive(msg(PROBE, "a", s), ADDR["a"], 0.16)
    assert wire(e, recorded, ADDR["a"], 0.17).rejected == "replay"  # type: ignore[union-attr]


def test_early_probes_on_foreign_claims_are_bounded() -> None:
    e = engine("b")
    e.tick(1.0)  # took over
    assert e.probes_due(1.0)
    sent = 0
    for i in range(100):  # a flood of foreign claims within one probe interval
        now = 1.0 + i * 0.001
        e.foreign_claim(VIP, now)
        sent += len(e.probes_due(now))
    assert sent == 1


# --------------------------------------------------------------------------- keys on disk


def test_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="key: missing"):
        read_keyring(tmp_path)
    (tmp_path / "key").write_bytes(b"  " + b"n" * 40 + b"\n")
    assert read_keyring(tmp_path).keys == (b"n" * 40,)
    (tmp_path / "previous").write_bytes(b"o" * 40)
    assert read_keyring(tmp_path).keys == (b"n" * 40, b"o" * 40)
    (tmp_path / "previous").write_bytes(b"short")
    with pytest.raises(KeyFileError, match="previous: a key must be 16 to 4096 bytes"):
        read_keyring(tmp_path)


def test_key_watcher_sees_rotation(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"o" * 32)
    w = KeyWatcher(tmp_path)
    first = w.poll()
    assert first is not None and first.keys == (b"o" * 32,)
    assert w.poll() is None
    (tmp_path / "previous").write_bytes(b"o" * 32)
    (tmp_path / "key").write_bytes(b"N" * 33)
    rotating = w.poll()
    assert rotating is not None and rotating.keys == (b"N" * 33, b"o" * 32)
    (tmp_path / "previous").unlink()
    done = w.poll()
    assert done is not None and done.keys == (b"N" * 33,)


# --------------------------------------------------------------------------- incremental = full


NODES = ("n0", "n1", "n2", "n3")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[DesiredState, list[tuple[str, str, float]]]:
    addrs = {n: ipaddress.ip_address(f"198.51.100.{20 + i}") for i, n in enumerate(NODES)}
    ips: list[IPState] = []
    for i in range(draw(st.integers(1, 12))):
        order = draw(st.permutations(NODES))[: draw(st.integers(1, len(NODES)))]
        cands = tuple(
            Candidate(n, None if draw(st.integers(0, 9)) == 0 and n != "n0" else addrs[n])
            for n in order
        )
        if all(c.node != "n0" for c in cands):
            cands = (*cands, Candidate("n0", addrs["n0"]))
        ips.append(IPState(ipaddress.ip_address(f"203.0.113.{i + 1}"), cands))
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(("ack", "bye", "tick", "probe")),
                st.sampled_from(NODES[1:]),
                st.floats(0.0, 0.5),
            ),
            max_size=30,
        )
    )
    return DesiredState("n0", 1, tuple(ips)), events


def _reference(e: Engine, now: float) -> set[IPAddress]:
    """The rule of the module docstring, evaluated from scratch."""
    assert e.state is not None
    alive = dict(e.peers_alive(now))
    out = set()
    for entry in e.state.ips:
        rank = entry.rank_of("n0")
        if rank is None:
            continue
        if all(c.node_ip is not None and not alive[c.node] for c in entry.candidates[:rank]):
            out.add(entry.ip)
    return out


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_indexed_engine_matches_the_rule(scenario: tuple[DesiredState, list]) -> None:  # type: ignore[type-arg]
    desired, events = scenario
    e = Engine(session=1, timing=T)
    answering = set(e.apply_state(desired, 0.0).gained)
    now = 0.0
    sessions = dict.fromkeys(NODES, 1)
    for kind, node, dt in events:
        now += dt
        changes = [e.tick(now)]
        peer = e.peers.peers.get(node)
        addr = next(iter(peer.addrs)) if peer else STRANGER
        if kind == "probe":
            e.probes_due(now)
        elif kind == "ack" and peer is not None and peer.outstanding:
            sessions[node] += peer.bye_session == sessions[node]  # a restart after a BYE
            changes.append(e.receive(ack_to(e, node, sessions[node]), addr, now).change)
        elif kind == "bye":
            changes.append(e.receive(msg(BYE, node, sessions[node]), addr, now).change)
        changes.append(e.tick(now))
        for c in changes:
            assert not (c.gained & c.lost)
            answering = (answering - c.lost) | c.gained
        assert set(e.answering) == answering == _reference(e, now)


def test_own_stall_is_not_peer_silence() -> None:
    e = engine("b")
    owner_alive(e, 1, 1.0)
    e.stalled(0.5)  # our loop could not listen (parsing a large state, say)
    assert not e.tick(1.6)  # 0.6 s since the last ack, 0.1 s of it while listening
    assert e.tick(1.86).gained == {VIP}


def test_a_new_state_gives_live_peers_one_grace_period() -> None:
    e = engine("b")
    owner_alive(e, 1, 1.0)
    e.apply_state(state("b"), 1.3)  # every sidecar adopts it now: busy, acks late
    assert not e.tick(1.5)  # would be dead at 1.35 without the grace
    e.apply_state(state("b"), 1.5)  # again within state_grace_every: no more grace
    assert e.tick(1.66).gained == {VIP}
    e.apply_state(state("b"), 3.0)  # a dead owner stays dead
    assert e.answering == {VIP}


def test_every_copy_of_a_bye_is_genuine_and_only_the_first_acts() -> None:
    owner = engine("a")
    byes = owner.leave(rounds=2)
    assert len({m.seq for _, m in byes}) == len(byes) == 4  # b and c, twice
    e = engine("b")
    e.probes_due(0.1)
    echo = max(e.peers.peers["a"].outstanding)
    e.receive(Message(ACK, "a", owner.session, 0, 0, e.session, echo), ADDR["a"], 0.1)
    to_b = [m for a, m in byes if a == ADDR["b"]]
    first, second = (e.receive(m, ADDR["a"], 0.2) for m in to_b)
    assert first.bye and first.change.gained == {VIP}
    assert second.rejected is None and not second.bye and not second.change


# --------------------------------------------------------------------------- kernel filter


def _run_bpf(prog: list[tuple[int, int, int, int]], net_header: bytes) -> bool:
    """A tiny classic-BPF interpreter for the instructions ``peer_filter`` emits."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == 0x20:  # ld word at SKF_NET_OFF + offset
            off = k - (probesock.SKF_NET_OFF & 0xFFFFFFFF)
            a = int.from_bytes(net_header[off : off + 4], "big")
            pc += 1
        elif code == 0x15:  # jeq k
            pc += 1 + (jt if a == k else jf)
        elif code == 0x06:
            return k != 0
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def _v4(src: str) -> bytes:
    return bytes(12) + ipaddress.IPv4Address(src).packed + bytes(4)


def _v6(src: str) -> bytes:
    return bytes(8) + ipaddress.IPv6Address(src).packed + bytes(16)


def test_kernel_filter_admits_exactly_the_peers() -> None:
    v4 = [ipaddress.ip_address(f"198.51.{i // 250}.{i % 250 + 1}") for i in range(600)]
    v6 = [ipaddress.ip_address(f"2001:db8::{i:x}:1") for i in range(300)]
    prog4 = probesock.peer_filter(4, [*v4, *v6])
    prog6 = probesock.peer_filter(6, [*v4, *v6])
    assert prog4 is not None and prog6 is not None
    for a in v4[::37]:
        assert _run_bpf(prog4, _v4(str(a)))
    for bad in ("198.51.100.99", "0.0.0.0", "203.0.113.1"):
        assert not _run_bpf(prog4, _v4(bad))
    for a6 in v6[::29]:
        assert _run_bpf(prog6, _v6(str(a6)))
    for bad in ("2001:db8::1:2", "2001:db8::", "::1", "2001:db8::12b:1:0"):
        assert not _run_bpf(prog6, _v6(bad))
    assert not _run_bpf(probesock.peer_filter(4, ()) or [], _v4("198.51.0.1"))
    too_many = [ipaddress.ip_address(f"2001:db8::{i:x}") for i in range(600)]
    assert probesock.peer_filter(6, too_many) is None  # over BPF_MAXINSNS: no filter


def test_key_watcher_follows_a_secret_volume_update(tmp_path: Path) -> None:
    """kubelet updates a Secret volume by swapping the ``..data`` symlink to a new dir."""
    for name, key in (("..v1", b"1" * 32), ("..v2", b"2" * 32)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "key").write_bytes(key)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "key").symlink_to("..data/key")
    w = KeyWatcher(tmp_path)
    assert w.poll() == Keyring((b"1" * 32,))
    (tmp_path / "..data_tmp").symlink_to("..v2")
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")  # atomic, as kubelet does
    assert w.poll() == Keyring((b"2" * 32,))
