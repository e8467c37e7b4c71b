"""The modes of what the speaker pod's containers share (README, "Security model").

The containers run as different users of one group (the pod's fsGroup): a file another
container must read is 0640, the bridge socket the speaker connects to is 0660, ExaBGP's CLI
FIFOs are ExaBGP's alone (0600 in a 0700 directory), whatever the process's umask.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from exalb.filechannel import write_atomic, write_file
from speaker.exabgp.bridge import Bridge
from speaker.exabgp.driver import scratch_validator, stage_config
from speaker.exabgp.launch import make_fifos


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_shared_files_are_0640(tmp_path: Path, umask: int) -> None:
    write_atomic(tmp_path / "l2-state.json", b"{}")
    assert mode(tmp_path / "l2-state.json") == 0o640
    existing = tmp_path / "f"
    existing.write_bytes(b"old")
    existing.chmod(0o666)
    write_file(existing, b"new")
    assert mode(existing) == 0o640 and existing.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_exabgp_conf_and_its_scratch_copies_are_0640(tmp_path: Path, umask: int) -> None:
    """exabgp.conf holds the MD5 passwords: never world-readable, not even for a moment."""
    conf = tmp_path / "exabgp.conf"
    seen: dict[str, int] = {}

    async def validate(path: Path) -> None:
        seen[path.name] = mode(path)

    async def run() -> None:
        await stage_config(conf, "neighbor 198.51.100.1 { md5-password x; }\n", validate)
        await stage_config(conf, "neighbor 198.51.100.2 { md5-password y; }\n", validate)
        assert await scratch_validator(conf, validate)("text") is None

    asyncio.run(run())
    assert mode(conf) == 0o640
    assert seen == {"exabgp.conf.new": 0o640, "exabgp.conf.check": 0o640}


def test_bridge_socket_is_0660(tmp_path: Path, umask: int) -> None:
    rd, wr = os.pipe()
    bridge = Bridge(str(tmp_path / "exabgp.sock"), stdin_fd=rd, stdout_fd=wr)
    try:
        bridge.listen()
        assert stat.S_ISSOCK((tmp_path / "exabgp.sock").lstat().st_mode)
        assert mode(tmp_path / "exabgp.sock") == 0o660
    finally:
        assert bridge.listener is not None
        bridge.listener.close()
        os.close(rd)
        os.close(wr)


def test_exabgp_cli_fifos_are_exabgps_own(tmp_path: Path, umask: int) -> None:
    make_fifos(tmp_path / "exabgp", "exabgp")
    assert mode(tmp_path / "exabgp") == 0o700 & ~umask
    assert mode(tmp_path / "exabgp" / "run") == 0o700 & ~umask
    fifo = tmp_path / "exabgp" / "run" / "exabgp.in"
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and mode(fifo) == 0o600 & ~umask
