"""Desired-state document, sidecar status, probe wire format, file channel, link selection."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from exalb.config.model import Config, L2Advertisement, Pool
from exalb.contracts.l2_state import (
    Candidate,
    DesiredState,
    IPState,
    StateError,
    Status,
    decode,
    decode_status,
    encode,
    encode_status,
)
from exalb.filechannel import FileWatcher, write_atomic
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView
from garp import probe
from garp.links import DEFAULT_EXCLUDES, select_interfaces
from speaker.l2.election import elect
from speaker.l2.publisher import desired_state

ip = ipaddress.ip_address
VIP = ip("198.51.100.50")
VIP6 = ip("2001:db8:50::50")


def sample() -> DesiredState:
    cands = (Candidate("a", ip("198.51.100.11")), Candidate("b", ip("198.51.100.12")))
    return DesiredState(
        "a",
        3,
        (
            IPState(VIP, cands, services=("default/web",)),
            IPState(
                VIP6,
                (Candidate("b", None), Candidate("a", ip("2001:db8:50::11"))),
                interfaces=("eth0",),
            ),
        ),
        ping=True,
    )


def test_roundtrip_and_owned() -> None:
    s = sample()
    assert decode(encode(s)) == s
    assert s.owned == (VIP,)
    doc = json.loads(encode(s))
    assert doc["owned"] == ["198.51.100.50"]
    assert doc["ips"][1]["candidates"][0] == {"node": "b", "nodeIP": None}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "unsupported version"),
        (lambda d: d.update(generation="1"), "$.generation"),
        (lambda d: d.update(generation=True), "$.generation"),
        (lambda d: d["ips"][0].update(ip="nope"), "$.ips[0].ip"),
        (lambda d: d["ips"][0]["candidates"].append({"node": "a"}), "listed twice"),
        (lambda d: d["ips"].append(dict(d["ips"][0])), "listed twice"),
        (lambda d: d.update(owned=[]), "owned disagrees"),
        (lambda d: d.update(ping="yes"), "$.ping"),
        (lambda d: d["ips"][0].update(interfaces="eth0"), "interfaces"),
    ],
)
def test_decode_rejects_with_a_path(mutate: object, message: str) -> None:
    doc = json.loads(encode(sample()))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(StateError, match=message.replace("$", r"\$").replace("[", r"\[")):
        decode(json.dumps(doc))


def test_decode_rejects_non_json() -> None:
    with pytest.raises(StateError, match="not JSON"):
        decode(b"{half")


def test_from_election_lists_only_own_candidacies_with_probe_addresses() -> None:
    pool = Pool("p", (ipaddress.ip_network("198.51.100.48/29"),
                      ipaddress.ip_network("2001:db8:50::50/124")))  # fmt: skip
    config = Config(pools=(pool,), l2_advertisements=(L2Advertisement("l2", ("p",)),))
    nodes = (
        NodeView("a", addresses=(ip("198.51.100.11"), ip("2001:db8:50::11"))),
        NodeView("b", addresses=(ip("198.51.100.12"),)),
        NodeView("c", addresses=()),
    )
    svc = ServiceView("default", "web", assigned_ips=(VIP, VIP6), traffic_policy="Local")
    eps = EndpointsView("default", "web", (Endpoint(("10.0.0.1",), "a"),
                                           Endpoint(("10.0.0.2",), "b")))  # fmt: skip
    elections = elect(config, [(svc, eps)], nodes)
    doc = desired_state("b", elections, nodes, generation=9)
    assert doc.generation == 9 and [e.ip for e in doc.ips] == [VIP, VIP6]
    v6 = doc.entry(VIP6)
    assert v6 is not None
    addrs = {c.node: c.node_ip for c in v6.candidates}
    assert addrs == {"a": ip("2001:db8:50::11"), "b": ip("198.51.100.12")}  # family fallback
    assert desired_state("c", elections, nodes, generation=9).ips == ()
    assert decode(encode(doc)) == doc


def test_status_roundtrip() -> None:
    st = Status("b", 4, (VIP6, VIP), (("a", False),))
    back = decode_status(encode_status(st))
    assert back.answering == (VIP, VIP6) and back.peers == (("a", False),)
    assert back.interfaces is None  # not reported (an older sidecar): unknown, not "none"
    st = Status("b", 4, (), interfaces=("eth1", "bond0"))
    assert decode_status(encode_status(st)).interfaces == ("bond0", "eth1")


def test_probe_codec() -> None:
    keys = probe.Keyring((b"k" * 32,))
    msg = probe.Message(probe.PROBE, "node-ä", 0xDEADBEEF, 7, probe.COVERING)
    data = probe.encode(msg, keys)
    assert probe.decode(data, keys) == msg and probe.decode(data, keys).covering  # type: ignore[union-attr]
    assert probe.decode(data[:-1], keys) == "malformed"
    assert probe.decode(b"XLB2" + b"\x09" + data[5:], keys) == "malformed"
    assert probe.decode(b"", keys) == "malformed"


def test_channel_atomic_write_and_watch(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    w = FileWatcher(path)
    assert w.poll() is None  # absent: nothing, no error
    write_atomic(path, b"one")
    assert w.poll() == b"one"
    assert w.poll() is None  # unchanged
    write_atomic(path, b"two")
    assert w.poll() == b"two"
    path.unlink()
    assert w.poll() is None  # the speaker's file vanished: keep the last state
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp files left behind


def test_interface_selection() -> None:
    names = ["eth0", "ens3", "lo", "veth1234", "cali9", "docker0", "bond0", "br0", "vxlan.calico"]
    assert select_interfaces(names, DEFAULT_EXCLUDES) == ["bond0", "br0", "ens3", "eth0"]
    assert select_interfaces(names, ()) == sorted(names)
    assert select_interfaces(["ethx", "eth"], ["eth"]) == ["ethx"]  # full match only
