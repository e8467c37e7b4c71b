"""Hostile files on the speaker ⇄ sidecar channel (issue 12, point 8): a state nested
100,000 deep, status reports of every wrong shape, and an unexpected error inside the
sidecar loop. Nothing may crash; the last good state stays in force."""

from __future__ import annotations

import ipaddress
import json
import signal
from pathlib import Path

import pytest

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
from exalb.filechannel import write_atomic
from garp.main import Sidecar, parse_args
from speaker.l2.publisher import StatePublisher

DEEP = b"[" * 100_000
ip = ipaddress.ip_address

BAD_STATUS = [
    DEEP,
    b"\xff\xfe",
    b"null",
    b"[]",
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "written": "x"}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "written": 1e999}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "written": 1'
    + b"0" * 400
    + b"}",
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "written": [1]}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "peers": {"a": "up"}}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [], "peers": [1]}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": [5]}',
    b'{"version": 1, "node": "n2", "generation": 1, "answering": ["10.0.0.300"]}',
    b'{"version": 1, "node": 5, "generation": 1, "answering": []}',
    b'{"version": 1, "node": "n2", "generation": -1, "answering": []}',
    b'{"version": 1, "node": "n2", "generation": true, "answering": []}',
]


@pytest.mark.parametrize("data", BAD_STATUS, ids=range(len(BAD_STATUS)))
def test_a_malformed_status_reads_as_not_reported(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(StateError):
        decode_status(data)
    pub = StatePublisher(tmp_path / "l2-state.json", "n2")
    write_atomic(pub.status_path, data)
    assert pub.sidecar_status() is None
    good = Status("n2", 1, (ip("198.51.100.50"),), written=0.0)
    write_atomic(pub.status_path, encode_status(good))
    assert pub.sidecar_status() == good


@pytest.mark.parametrize(
    "data",
    [
        DEEP,
        b'{"version": 1, "node": "n2", "generation": 1' + b"0" * 400 + b', "ips": []}',
        json.dumps({"version": 1, "node": "n2", "generation": 1, "ips": [[]] * 3}).encode(),
    ],
    ids=["deep", "huge-generation", "ips-not-objects"],
)
def test_a_malformed_state_is_a_state_error(data: bytes) -> None:
    with pytest.raises(StateError):
        decode(data)


def _sidecar(tmp_path: Path) -> Sidecar:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "key").write_bytes(b"k" * 32)
    args = parse_args(
        [
            "--state",
            str(tmp_path / "state.json"),
            "--node",
            "n2",
            "--metrics-port",
            "0",
            "--key-dir",
            str(tmp_path / "keys"),
        ]
    )
    return Sidecar(args)


def _value(sidecar: Sidecar, name: str) -> float:
    v = sidecar.metrics.registry.get_sample_value(name)
    return 0.0 if v is None else v


def test_sidecar_keeps_its_state_when_the_file_turns_hostile(tmp_path: Path) -> None:
    sc = _sidecar(tmp_path)
    good = DesiredState(
        "n2", 1, (IPState(ip("198.51.100.50"), (Candidate("n2", ip("198.51.100.12")),)),)
    )
    write_atomic(tmp_path / "state.json", encode(good))
    sc.poll_state(1.0)
    assert sc.engine.answering == {ip("198.51.100.50")}
    write_atomic(tmp_path / "state.json", DEEP)
    sc.poll_state(1.1)  # must not raise
    assert sc.engine.state == good and sc.engine.answering == {ip("198.51.100.50")}
    assert _value(sc, "exalb_l2_state_errors_total") == 1.0


def test_the_loop_survives_an_unexpected_error(tmp_path: Path) -> None:
    sc = _sidecar(tmp_path)
    calls: list[int] = []

    def iterate(_rd: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RecursionError("maximum recursion depth exceeded")
        sc.stop = True

    sc.iterate = iterate  # type: ignore[method-assign]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert sc.run() == 0
    finally:
        signal.set_wakeup_fd(-1)
        for s, h in handlers.items():
            signal.signal(s, h)
    assert len(calls) == 2
    assert _value(sc, "exalb_l2_loop_errors_total") == 1.0


def test_the_sidecar_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    args = parse_args(["--state", str(tmp_path / "s"), "--key-dir", str(tmp_path / "none")])
    assert Sidecar(args).run() == 2
