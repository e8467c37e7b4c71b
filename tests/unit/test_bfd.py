"""BFD: the node's sessions from BGPPeers and BFDProfiles, bfdd's config and commands, and
the controller's convergence against a fake vtysh (the lab runs the real bfdd)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from exalb.config.model import BFDProfile, Config, Peer
from exalb.views import NodeView
from speaker.announcer import Inputs
from speaker.bfd.control import BfdCollector, BfdController
from speaker.bfd.render import (
    BfdPlan,
    apply_commands,
    detection_ms,
    in_force,
    parse_running_config,
    parse_sessions,
    plan_bfd,
)
from speaker.bgp import BGPAnnouncer
from speaker.cluster_store import Snapshot
from speaker.decisions import Options


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


FAST = BFDProfile("fast", receive_interval=300, transmit_interval=300, detect_multiplier=3)


def peer(name: str, address: str, source: str | None, profile: str | None, **kw: object) -> Peer:
    return Peer(
        name=name, my_asn=64501, peer_asn=64500, peer_address=ip(address),
        source_address=ip(source) if source else None, bfd_profile=profile, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


# bfdd 8.4's `show running-config` as measured with this plan applied
RUNNING = """Building configuration...

Current configuration:
!
frr version 8.4.4
hostname vm
!
bfd
 profile fast
 exit
 !
 profile old
  receive-interval 200
 exit
 !
 peer 198.18.0.1 local-address 198.18.0.2
  profile fast
 exit
 !
 peer 198.18.0.99 multihop local-address 198.18.0.2
 exit
 !
exit
!
end
"""


def test_sessions_for_peers_with_a_profile_only() -> None:
    plan = plan_bfd(
        [
            peer("a", "198.18.0.1", "198.18.0.2", "fast"),
            peer("b", "2001:db8::1", "2001:db8::2", "fast"),
            peer("c", "198.18.0.5", "198.18.0.6", None),
            peer("m", "198.18.9.1", "198.18.0.2", "fast", ebgp_multihop=True),
        ],
        [FAST, BFDProfile("unused")],
    )
    assert [p.key for p in plan.peers] == [
        "peer 198.18.0.1 local-address 198.18.0.2",
        "peer 198.18.9.1 multihop local-address 198.18.0.2",
        "peer 2001:db8::1 local-address 2001:db8::2",
    ]
    assert [p.name for p in plan.profiles] == ["fast"]  # only profiles in use
    assert plan.problems == ()
    assert detection_ms(FAST) == 900


def test_every_setting_is_written_with_metallb_defaults() -> None:
    plan = plan_bfd([peer("a", "198.18.0.1", "198.18.0.2", "p")], [BFDProfile("p", echo_mode=True)])
    assert plan.text.splitlines()[1:] == [
        "bfd",
        " profile p",
        "  receive-interval 300",
        "  transmit-interval 300",
        "  detect-multiplier 3",
        "  echo receive-interval 50",
        "  echo transmit-interval 50",
        "  echo-mode",
        "  no passive-mode",
        "  minimum-ttl 254",
        " exit",
        " peer 198.18.0.1 local-address 198.18.0.2",
        "  profile p",
        " exit",
        "exit",
    ]


def test_problems_name_the_peer_and_leave_it_out() -> None:
    plan = plan_bfd(
        [
            peer("gone", "198.18.0.1", "198.18.0.2", "missing"),
            peer("mh", "198.18.9.1", None, "fast", ebgp_multihop=True),
            peer("long", "198.18.0.5", "198.18.0.6", "x" * 64),
        ],
        [FAST, BFDProfile("x" * 64)],
    )
    assert plan.peers == ()
    assert plan.problems == (
        "BGPPeer/gone: spec.bfdProfile: BFDProfile 'missing' does not exist; no BFD session",
        "BGPPeer/long: spec.bfdProfile: " + repr("x" * 64) + " is not a bfdd profile name "
        "(<= 63 characters)",
        "BGPPeer/mh: spec.bfdProfile: a multi-hop BFD session needs a source address",
    )
    assert plan.text.count("bfd") == 1  # the header only: no bfd block


def test_running_config_and_commands_remove_what_is_not_wanted() -> None:
    running = parse_running_config(RUNNING)
    assert running.profiles == {"fast", "old"}
    assert running.peers == {
        "peer 198.18.0.1 local-address 198.18.0.2",
        "peer 198.18.0.99 multihop local-address 198.18.0.2",
    }
    plan = plan_bfd([peer("a", "198.18.0.1", "198.18.0.2", "fast")], [FAST])
    commands = apply_commands(plan, running)
    assert commands[:3] == [
        "configure terminal",
        "bfd",
        "no peer 198.18.0.99 multihop local-address 198.18.0.2",
    ]
    assert commands[-3:] == ["no profile old", "exit", "end"]
    assert "peer 198.18.0.1 local-address 198.18.0.2" in commands


PEERS_JSON = json.dumps(
    [
        {"multihop": False, "peer": "198.18.0.1", "local": "198.18.0.2", "vrf": "default",
         "status": "up", "uptime": 12, "diagnostic": "ok", "remote-diagnostic": "ok",
         "receive-interval": 300, "transmit-interval": 300, "detect-multiplier": 3,
         "remote-receive-interval": 300, "remote-transmit-interval": 300,
         "remote-detect-multiplier": 3},
        {"peer": "2001:db8::1", "local": "2001:db8::2", "status": "down", "downtime": 3,
         "diagnostic": "control detection time expired"},
        "junk",
    ]
)  # fmt: skip
COUNTERS_JSON = json.dumps(
    [{"multihop": False, "peer": "198.18.0.1", "local": "198.18.0.2", "vrf": "default",
      "control-packet-input": 40, "control-packet-output": 41, "echo-packet-input": 0,
      "echo-packet-output": 0, "session-up": 1, "session-down": 0, "zebra-notifications": 1}]
)  # fmt: skip


def test_sessions_and_metallb_series() -> None:
    sessions = parse_sessions(PEERS_JSON, COUNTERS_JSON)
    assert [(s.peer, s.status, s.counter("control-packet-input")) for s in sessions] == [
        ("198.18.0.1", "up", 40),
        ("2001:db8::1", "down", 0),
    ]
    assert parse_sessions("not json") == []
    controller = BfdController(socket_dir=Path("/x"), config_path=Path("/x/c"))
    controller.sessions = sessions
    registry = CollectorRegistry()
    registry.register(BfdCollector(controller))
    text = generate_latest(registry).decode()
    assert 'metallb_bfd_session_up{peer="198.18.0.1",vrf="default"} 1.0' in text
    assert 'metallb_bfd_session_up{peer="2001:db8::1",vrf="default"} 0.0' in text
    assert 'metallb_bfd_control_packet_input{peer="198.18.0.1",vrf="default"} 40.0' in text
    assert 'metallb_bfd_session_down_events{peer="198.18.0.1",vrf="default"} 0.0' in text


class FakeBfdd:
    """Answers vtysh argv like bfdd: keeps the peer lines it was configured with."""

    def __init__(self) -> None:
        self.peers: set[str] = set()
        self.calls: list[list[str]] = []
        self.down = False

    async def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        commands = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
        self.calls.append(commands)
        if self.down:
            return 1, "", "bfdd is not running"
        if commands == ["show bfd peers json"]:
            return 0, json.dumps([self._session(k) for k in sorted(self.peers)]), ""
        if commands == ["show bfd peers counters json"]:
            return 0, "[]", ""
        if commands == ["show running-config"]:
            body = "".join(f" {k}\n exit\n" for k in sorted(self.peers))
            return 0, f"bfd\n{body}exit\n", ""
        for c in commands:
            if c.startswith("peer "):
                self.peers.add(c)
            elif c.startswith("no peer "):
                self.peers.discard(c[3:])
        return 0, "", ""

    @staticmethod
    def _session(key: str) -> dict[str, object]:
        words = key.split()
        return {"peer": words[1], "local": words[-1], "multihop": "multihop" in words,
                "status": "up"}  # fmt: skip


def test_controller_writes_the_file_applies_once_and_repairs_a_restart(tmp_path: Path) -> None:
    fake = FakeBfdd()
    conf = tmp_path / "bfdd.conf"
    c = BfdController(socket_dir=tmp_path, config_path=conf, vtysh="vtysh", run=fake)
    plan = plan_bfd([peer("a", "198.18.0.1", "198.18.0.2", "fast")], [FAST])

    async def scenario() -> None:
        c.set_plan(plan)
        assert conf.read_text() == plan.text  # the file first: a restarted bfdd reads it
        await c.converge_once()
        assert fake.peers == {"peer 198.18.0.1 local-address 198.18.0.2"}
        assert in_force(plan, c.sessions) and c.error is None
        applied = len(fake.calls)
        await c.converge_once()  # in force: reads only
        assert len(fake.calls) == applied + 2
        fake.peers.clear()  # bfdd restarted with an older file
        await c.converge_once()
        assert fake.peers == {"peer 198.18.0.1 local-address 198.18.0.2"}
        fake.down = True
        await c.converge_once()
        assert c.error is not None and "not answering" in c.error
        fake.down = False
        c.set_plan(BfdPlan((), ()))
        await c.converge_once()
        assert fake.peers == set()

    asyncio.run(scenario())


def test_announcer_plans_bfd_only_with_a_bfdd_and_says_so_without(tmp_path: Path) -> None:
    """With a controller the plan carries the node's sessions; without one (chart value
    bfd.enabled off) a BGPPeer naming a profile is a warning, never silently BFD-less."""
    node = NodeView("n1", addresses=(ip("198.18.0.2"),))
    config = Config(peers=(peer("r1", "198.18.0.1", "198.18.0.2", "fast"),), bfd_profiles=(FAST,))
    inputs = Inputs(config, node, Snapshot((), {}, node, (), 0, (node,)), Options())
    with_bfdd = BGPAnnouncer(
        None,  # type: ignore[arg-type]
        bridge_argv=("/bridge",),
        config_path=tmp_path / "exabgp.conf",
        resolve_source=lambda _ip: None,
        bfd=BfdController(socket_dir=tmp_path, config_path=tmp_path / "bfdd.conf"),
    )
    planned = with_bfdd.decide(inputs)
    assert planned.bfd is not None and [p.key for p in planned.bfd.peers] == [
        "peer 198.18.0.1 local-address 198.18.0.2"
    ]
    assert not any("bfd" in w for w in planned.announcements.warnings)
    without = BGPAnnouncer(
        None,  # type: ignore[arg-type]
        bridge_argv=("/bridge",),
        config_path=tmp_path / "exabgp.conf",
        resolve_source=lambda _ip: None,
    )
    plain = without.decide(inputs)
    assert plain.bfd is None
    assert any(
        "BGPPeer/r1: spec.bfdProfile: this speaker runs no bfdd" in w
        for w in plain.announcements.warnings
    )
