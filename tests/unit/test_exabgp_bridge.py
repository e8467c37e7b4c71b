"""The bridge as ExaBGP sees it: a real subprocess with stdin/stdout pipes and a unix socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EVENT = '{ "exabgp": "5.0.0", "type": "state", "neighbor": {"state": "up"} }'


class BridgeProc:
    def __init__(self, tmp: Path) -> None:
        self.sock = tmp / "b.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speaker.exabgp.bridge", "--socket", str(self.sock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            assert time.monotonic() < deadline, "bridge did not listen"
            time.sleep(0.01)
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)

    def exabgp_writes(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def exabgp_reads(self, want: int, timeout: float = 5.0) -> list[str]:
        """Lines the bridge wrote to ExaBGP (its stdout)."""
        assert self.proc.stdout is not None
        buf = b""
        deadline = time.monotonic() + timeout
        while buf.count(b"\n") < want and time.monotonic() < deadline:
            try:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            buf += chunk
        return buf.decode().splitlines()

    def client(self) -> socket.socket:
        """Connect; the socket file exists from ``bind``, so ``listen`` may not have happened
        yet on a loaded machine: retry a refused connect for a while."""
        deadline = time.monotonic() + 10
        while True:
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect(str(self.sock))
                break
            except ConnectionRefusedError:
                c.close()
                assert time.monotonic() < deadline, "bridge did not accept"
                time.sleep(0.01)
        c.settimeout(2.0)
        return c

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeProc]:
    b = BridgeProc(tmp_path)
    try:
        yield b
    finally:
        b.stop()


def recv_lines(c: socket.socket, want: int) -> list[str]:
    buf = b""
    while buf.count(b"\n") < want:
        data = c.recv(65536)
        if not data:
            break
        buf += data
    return buf.decode().splitlines()


def test_relays_both_ways(bridge: BridgeProc) -> None:
    c = bridge.client()
    c.sendall(b"announce route 203.0.113.1/32 next-hop self\nshow adj-rib out\n")
    assert bridge.exabgp_reads(2) == ["announce route 203.0.113.1/32 next-hop self",
                                      "show adj-rib out"]  # fmt: skip
    bridge.exabgp_writes("done\n198.18.0.1 ipv4 unicast 203.0.113.1/32 next-hop 198.18.0.2\n")
    bridge.exabgp_writes(EVENT + "\ndone\n")
    assert recv_lines(c, 4) == [
        "done",
        "198.18.0.1 ipv4 unicast 203.0.113.1/32 next-hop 198.18.0.2",
        EVENT,
        "done",
    ]


def test_drains_stdin_without_a_client(bridge: BridgeProc) -> None:
    # 4 MiB is far above a pipe buffer: a bridge that stopped reading would block this write.
    chunk = ("x" * 1023 + "\n") * 4096
    start = time.monotonic()
    bridge.exabgp_writes(chunk)
    assert time.monotonic() - start < 5
    c = bridge.client()
    # the kernel completes a connect before the bridge accepts it: once the bridge relays
    # this client's line, it holds the client (else EVENT could go to nobody, rightly)
    c.sendall(b"show neighbor summary\n")
    assert bridge.exabgp_reads(1) == ["show neighbor summary"]
    bridge.exabgp_writes(EVENT + "\n")
    assert recv_lines(c, 1) == [EVENT]


def test_new_client_never_sees_answers_for_the_old_one(bridge: BridgeProc) -> None:
    old = bridge.client()
    old.sendall(b"show adj-rib out\nannounce route 203.0.113.1/32 next-hop self\n")
    assert len(bridge.exabgp_reads(2)) == 2
    old.close()
    time.sleep(0.1)
    new = bridge.client()
    new.sendall(b"version\n")
    assert bridge.exabgp_reads(1) == ["version"]
    time.sleep(0.05)
    # ExaBGP answers in order: the two old commands, then the new one.
    bridge.exabgp_writes("198.18.0.1 ipv4 unicast 203.0.113.1/32 next-hop self\ndone\n")
    bridge.exabgp_writes(EVENT + "\nerror\nexabgp 5.0.15\ndone\n")
    assert recv_lines(new, 3) == [EVENT, "exabgp 5.0.15", "done"]


def test_second_client_replaces_first(bridge: BridgeProc) -> None:
    first = bridge.client()
    second = bridge.client()
    assert first.recv(10) == b""  # closed by the bridge
    second.sendall(b"version\n")
    assert bridge.exabgp_reads(1) == ["version"]


def test_partial_line_of_a_dying_client_is_not_forwarded(bridge: BridgeProc) -> None:
    c = bridge.client()
    c.sendall(b"announce route 203.0.113.1/32 next-hop self\nwithdraw rou")
    c.close()
    time.sleep(0.1)
    c2 = bridge.client()
    c2.sendall(b"version\n")
    assert bridge.exabgp_reads(2) == ["announce route 203.0.113.1/32 next-hop self", "version"]


def test_an_over_long_line_is_dropped_whole_its_tail_never_reaches_exabgp(
    bridge: BridgeProc,
) -> None:
    """Issue 12, point 8: the bridge used to drop the first MiB of an over-long line and
    forward the rest as a command of its own; here the tail is a command ExaBGP would run."""
    c = bridge.client()
    c.sendall(b"announce route 203.0.113.1/32 next-hop self\n")
    padding = b"x" * ((1 << 20) + 100_000)  # past MAX_LINE, in many reads
    c.sendall(padding + b" withdraw route 203.0.113.1/32 next-hop self\nversion\n")
    # an over-long line that arrives complete in one read is dropped too
    c.sendall(b"y" * ((1 << 20) + 1) + b"\nshow neighbor\n")
    assert bridge.exabgp_reads(3) == [
        "announce route 203.0.113.1/32 next-hop self",
        "version",
        "show neighbor",
    ]
    # the client is still served, and its answers are still attributed to it
    bridge.exabgp_writes("done\nexabgp 5.0.15\ndone\ndone\n")
    assert recv_lines(c, 4) == ["done", "exabgp 5.0.15", "done", "done"]


def test_exits_on_stdin_eof_and_removes_socket(bridge: BridgeProc) -> None:
    c = bridge.client()
    assert bridge.proc.stdin is not None
    bridge.proc.stdin.close()
    assert bridge.proc.wait(5) == 0
    assert not bridge.sock.exists()
    assert c.recv(10) == b""
