"""BFD end to end: the speaker runs FRR's bfdd next to ExaBGP on every node (as the chart's
``bfd`` container does) and r1 is FRR with ``neighbor ... bfd profile fast`` (300 ms x 3).

The ``bgp-bfd`` topology is bgp-ecmp's node plan with bfdd on r1 (``containerlab/bgp-bfd``).
The oracle is the router: FRR's ``show bfd peers json`` and r1's kernel FIB. The BGP hold
time is 9 s, so a path that leaves r1 within a second was taken away by BFD. Timings are
printed (``-s``); ``bench/bfd.py`` measures their distribution.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exalbctl.main import main as exalbctl
from lab import netns
from lab.controlplane import ControlPlane
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.api_objects import advertisement, pool
from tests.lab.speaker_lab import (
    NODES,
    SpeakerLab,
    bgp_peer,
    nexthops,
    speaker_lab,
    timed_wait_nexthops,
)

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

PREFIX = "203.0.113.90/32"
HOLD = 9  # r1's timers 3 9: without BFD a frozen node keeps its path this long


@pytest.fixture
def bfd_lab(lab_factory: Any, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    lab: Lab = lab_factory("bgp-bfd")
    with speaker_lab(lab, speaker_control_plane, bfd=True) as sl:
        yield sl


def bfd_profile(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BFDProfile",
        "metadata": {"name": name},
        "spec": spec,
    }


def router_bfd(sl: SpeakerLab) -> dict[str, dict[str, Any]]:
    """r1's bfdd: peer address -> its ``show bfd peers json`` entry."""
    peers = sl.lab.vtysh_json("r1", "show bfd peers json")
    return {str(p["peer"]): p for p in peers}


def frozen(sl: SpeakerLab, node: str) -> list[int]:
    """Every process of the node (speaker, ExaBGP and its children, bfdd)."""
    return netns.pids(sl.lab.ns(node))


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_bfd_takes_a_frozen_or_cut_off_node_out_within_a_second(bfd_lab: SpeakerLab) -> None:
    sl, lab, c = bfd_lab, bfd_lab.lab, bfd_lab.cluster
    c.apply_config(
        bfd_profile("fast", receiveInterval=300, transmitInterval=300, detectMultiplier=3),
        pool("pool", ["203.0.113.0/24", "2001:db8:ffff::/64"]),
        *[bgp_peer(n, bfdProfile="fast", holdTime=f"{HOLD}s") for n in NODES.values()],
        *[bgp_peer(n, 6, bfdProfile="fast", holdTime=f"{HOLD}s") for n in NODES.values()],
        advertisement("ads", ["pool"]),
    )
    for n in NODES.values():
        c.node(n)
    c.service("web", ["203.0.113.90"])
    c.endpoints("web", list(NODES))
    sl.start()
    sl.wait_ready()
    try:
        lab.wait_route("r1", PREFIX, nexthops=3, timeout=15)
    except AssertionError:
        summary = lab.vtysh("r1", "show bgp summary", "show bfd peers brief")
        raise AssertionError(f"{summary}\n{sl.logs('n1')}") from None
    addresses = [a for n in NODES.values() for a in (n.ipv4, n.ipv6)]
    wait_for("r1's BFD sessions up", lambda: _all_up(sl, addresses), 15, 0.1)
    # the node's side: /status, kubectl exalb peers and MetalLB's series
    wait_for("n1 bfd up", lambda: _node_bfd_up(sl, "n1"), 10, 0.1)
    assert sl.metric("n1", "metallb_bfd_session_up", peer=NODES["n1"].router4) == 1
    assert sl.metric("n1", "metallb_bfd_control_packet_input", peer=NODES["n1"].router4) > 0
    out = io.StringIO()
    args = ["peers", "--kubeconfig", str(sl.cp.kubeconfig), "--timeout", "5"]
    assert exalbctl([*args, *_speaker_args(sl)], out) == 0
    peers_out = out.getvalue()
    print("\n$ kubectl exalb peers\n" + peers_out)
    assert "up 300/300x3" in peers_out

    # 1. n1 freezes: every process of the node stopped (TCP stays open: only BFD notices)
    pids = frozen(sl, "n1")
    t = time.monotonic()
    signal_all(pids, signal.SIGSTOP)
    try:
        took = timed_wait_nexthops(lab, PREFIX, 2, t, timeout=HOLD + 3)
        state = router_bfd(sl)[NODES["n1"].ipv4]
    finally:
        signal_all(pids, signal.SIGCONT)
    print(f"n1 frozen (SIGSTOP of {len(pids)} processes) -> path gone at r1: {took * 1000:.0f} ms")
    print(f"  r1's BFD session: {state['status']}, diagnostic {state.get('diagnostic')!r}")
    assert took < 2.0, f"{took:.2f}s: BFD did not take the path away (hold time is {HOLD}s)"
    assert state["status"] == "down"
    t = time.monotonic()
    lab.wait_route("r1", PREFIX, nexthops=3, timeout=30)
    print(f"n1 thawed -> BFD and BGP up again, path back: {time.monotonic() - t:.2f}s")

    # 2. n1's forwarding dies silently: every packet dropped inside n1, the link stays up
    wait_for("BFD up again", lambda: _all_up(sl, addresses), 15, 0.1)
    nft = _drop_all(sl, "n1")
    t = time.monotonic()
    try:
        took = timed_wait_nexthops(lab, PREFIX, 2, t, timeout=HOLD + 3)
        link = lab.exec("n1", ["ip", "-j", "link", "show", "eth1"]).stdout
    finally:
        lab.exec("n1", ["nft", "delete", "table", "inet", nft], check=False)
    assert json.loads(link)[0]["operstate"] == "UP"
    print(f"n1 drops every packet (nft, link up) -> path gone at r1: {took * 1000:.0f} ms")
    assert took < 2.0, f"{took:.2f}s: BFD did not take the path away (hold time is {HOLD}s)"
    t = time.monotonic()
    lab.wait_route("r1", PREFIX, nexthops=3, timeout=30)
    print(f"n1 forwards again -> path back: {time.monotonic() - t:.2f}s")
    assert sl.metric("n1", "metallb_bfd_session_down_events", peer=NODES["n1"].router4) >= 1

    # 3. a profile change reaches the running sessions (renegotiated, not torn down)
    c.cp.api(
        "PATCH",
        c.config_path(bfd_profile("fast")),
        {"spec": {"receiveInterval": 200, "transmitInterval": 200}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        "r1 sees n2's new intervals",
        lambda: router_bfd(sl)[NODES["n2"].ipv4].get("remote-receive-interval") == 200,
        15,
        0.1,
    )
    assert router_bfd(sl)[NODES["n2"].ipv4]["status"] == "up"
    assert nexthops(lab, PREFIX) == 3


def _all_up(sl: SpeakerLab, addresses: list[str]) -> bool:
    peers = router_bfd(sl)
    return all(peers.get(a, {}).get("status") == "up" for a in addresses)


def _node_bfd_up(sl: SpeakerLab, node: str) -> bool:
    section = sl.status(node).get("bfd") or {}
    states = {s["address"]: s["state"] for s in section.get("sessions", [])}
    return states.get(NODES[node].router4) == "up" and states.get(NODES[node].router6) == "up"


def _speaker_args(sl: SpeakerLab) -> list[str]:
    return [a for url in sl.speaker_urls() for a in ("--speaker", url)]


def _drop_all(sl: SpeakerLab, node: str) -> str:
    """An nftables table in the node's namespace dropping everything in and out."""
    table = "exalbdrop"
    rules = (
        f"table inet {table} {{\n"
        "  chain in { type filter hook input priority -300; policy drop; }\n"
        "  chain out { type filter hook output priority -300; policy drop; }\n"
        "}\n"
    )
    sl.lab.exec(node, ["nft", "-f", "-"], input=rules)
    return table
