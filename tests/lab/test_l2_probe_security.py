"""The probe channel under attack, with the real sidecars in namespaces (issue 12, point 1).

The attacker is the lab's client namespace, on the same segment as the nodes: it can send
any frame with any source address, and (from the bridge) record and replay the nodes' own
traffic. What the review showed before: one probe returned the owner's name and session,
one forged BYE then made the standby answer the owner's IPs for good. Now a forged or
foreign probe gets no answer, a forged BYE and a replayed genuine BYE change nothing, and a
restarted owner is believed again. Each case also checks the sidecar said why it dropped
the datagram.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import struct
import time
from collections.abc import Callable

import pytest

from garp import probe
from garp.keys import read_keyring
from lab.nsnet import in_netns
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.l2_attacker import capture, raw_socket, udp4_frame, udp4_payload
from tests.lab.l2_lab import (
    CLIENT,
    CLIENT_IP4,
    IFACE,
    NODE_IP4,
    NODES,
    PROBE_PORT,
    SWITCH,
    VIP4,
    VIP6,
    L2Lab,
    one_answer_within,
    open_l2,
)

pytestmark = pytest.mark.lab

WRONG = probe.Keyring((secrets.token_bytes(32),))


@pytest.fixture
def lab(lab_factory: Callable[[str], Lab]) -> L2Lab:
    """The lab with every sidecar running and hearing the owner (``l2_lab`` only waits for
    the owner to answer; on a loaded machine another sidecar may still be starting)."""
    lab = open_l2(lab_factory("l2-segment"))
    owner = lab.ranking()[0]

    def hears_owner(n: str) -> bool:
        st = lab.status(n)
        return st is not None and (n == owner or dict(st.peers).get(owner) is True)

    wait_for("every sidecar hears the owner", lambda: all(hears_owner(n) for n in NODES), 15, 0.05)
    time.sleep(0.3)  # a few probe rounds: each has verified the owner's session
    return lab


def _dropped(lab: L2Lab, node: str) -> set[str]:
    """Reasons ``node``'s sidecar logged for dropping probe datagrams."""
    out = set()
    for line in lab.log(node).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "probe datagram dropped":
            out.add(entry["reason"])
    return out


def _nothing_changes(lab: L2Lab, owner: str, seconds: float = 1.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert lab.who_answers(VIP4, 0.02) == [owner]
        assert lab.who_answers(VIP6, 0.02) == [owner]
    for n in NODES:
        st = lab.status(n)
        assert st is not None and bool(st.answering) == (n == owner), n


def _send_raw(lab: L2Lab, frames: list[bytes]) -> None:
    with in_netns(lab.lab.ns(CLIENT)):
        s = raw_socket(IFACE)
    try:
        for f in frames:
            s.send(f)
    finally:
        s.close()


def _spoofed(lab: L2Lab, src: str, dst: str, payload: bytes) -> bytes:
    """A datagram to ``dst``'s sidecar that claims to come from node ``src`` (its IP; the
    Ethernet source stays the client's, or the bridge would move ``src``'s MAC to the
    client's port and misdeliver the real probes: a different attack, outside this test)."""
    return udp4_frame(
        lab.mac[dst], lab.client_mac, NODE_IP4[src], NODE_IP4[dst], PROBE_PORT, PROBE_PORT, payload
    )


def test_forged_and_foreign_probes_get_no_answer(lab: L2Lab) -> None:
    owner, standby, _ = lab.ranking()
    keys = read_keyring(lab.key_dir)
    v1_probe = struct.pack("!4sBBHII", b"XLB1", probe.PROBE, 0, 2, 1, 1) + b"n9"
    probes = [
        v1_probe,  # the original attack: any well-formed probe used to be acked
        probe.encode(probe.Message(probe.PROBE, "intruder", 1, 1), keys),  # unknown node
        probe.encode(probe.Message(probe.PROBE, standby, 1, 2), keys),  # a peer's name
    ]
    with in_netns(lab.lab.ns(CLIENT)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((str(CLIENT_IP4), PROBE_PORT))
    try:
        for data in probes:
            s.sendto(data, (str(NODE_IP4[owner]), PROBE_PORT))
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recvfrom(2048)  # no ack: nothing about the owner (name, session) leaks
    finally:
        s.close()
    # a probe with the standby's address but not its key: dropped, no ack to anyone
    _send_raw(lab, [_spoofed(lab, standby, owner, probe.encode(
        probe.Message(probe.PROBE, standby, 7, 10**6), WRONG))])  # fmt: skip
    wait_for("the forged probe dropped", lambda: "unauthenticated" in _dropped(lab, owner), 3, 0.05)
    _nothing_changes(lab, owner, 0.5)
    # the client's datagrams never even reached the sidecar: its socket filter admits peers'
    # addresses only (the user-space check behind it would have logged "unknown-address")
    assert "unknown-address" not in _dropped(lab, owner)


def _learn_session(lab: L2Lab, owner: str) -> int:
    """Step one of the reported attack: probe the owner, read its session from the ack.
    A random guess when nothing answers (which is the point)."""
    with in_netns(lab.lab.ns(CLIENT)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((str(CLIENT_IP4), PROBE_PORT))
    try:
        s.sendto(struct.pack("!4sBBHII", b"XLB1", probe.PROBE, 0, 1, 1, 1) + b"x",
                 (str(NODE_IP4[owner]), PROBE_PORT))  # fmt: skip
        s.settimeout(0.3)
        data, _ = s.recvfrom(2048)
        return int(struct.unpack_from("!4sBBHII", data)[4])
    except (TimeoutError, struct.error):
        return secrets.randbits(32)
    finally:
        s.close()


def test_forged_bye_changes_nothing(lab: L2Lab) -> None:
    owner, standby, third = lab.ranking()
    session = _learn_session(lab, owner)
    v1_bye = struct.pack("!4sBBHII", b"XLB1", probe.BYE, 0, len(owner), session, 0)
    frames = [
        _spoofed(lab, owner, n, payload)
        for n in (standby, third)
        for payload in (
            v1_bye + owner.encode(),
            probe.encode(probe.Message(probe.BYE, owner, session, 10**9), WRONG),
            probe.encode(probe.Message(probe.BYE, owner, 2**63, 2**63), WRONG),
        )
    ]
    _send_raw(lab, frames)
    _nothing_changes(lab, owner)
    assert {"malformed", "unauthenticated"} <= _dropped(lab, standby)


def test_replayed_bye_changes_nothing_and_a_restarted_owner_is_believed(lab: L2Lab) -> None:
    owner, standby, _ = lab.ranking()
    port = lab.switch_port(standby)  # the bridge port towards the standby
    with in_netns(lab.lab.ns(SWITCH)):
        tap = raw_socket(port)
    try:

        def genuine_bye(frame: bytes, pkttype: int) -> bool:
            d = udp4_payload(frame)
            return (
                pkttype == 4  # leaving the bridge towards the standby
                and d is not None
                and d[0] == NODE_IP4[owner]
                and d[1] == PROBE_PORT
                and d[2][4:5] == bytes([probe.BYE])
            )

        os.kill(lab.sidecars[owner].pid, signal.SIGTERM)  # a genuine BYE, recorded
        byes = capture(tap, genuine_bye, 1.0)
        lab.stop_sidecar(owner)
        assert byes, "no BYE from the leaving owner was seen"
        one_answer_within(lab, standby)  # the genuine BYE was believed: hand-over
        lab.start_sidecar(owner)  # restarted: new session; the standby must yield
        one_answer_within(lab, owner, timeout=5)
        for _ in range(3):
            for frame in byes:
                tap.send(frame)  # the recorded BYE, byte for byte, at the standby
            time.sleep(0.05)
    finally:
        tap.close()
    _nothing_changes(lab, owner)
    assert _dropped(lab, standby) & {"replay", "unverified-bye"}
