"""The bridge connection's read loop: a bug in it is logged once, and close() stays quiet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from speaker.exabgp import protocol
from speaker.exabgp.connection import BridgeConnection


class FakeWriter:
    """What BridgeConnection uses of an asyncio.StreamWriter."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


def connect(on_event: Any) -> tuple[asyncio.StreamReader, BridgeConnection]:
    reader = asyncio.StreamReader()
    conn = BridgeConnection(reader, FakeWriter(), on_event)  # type: ignore[arg-type]
    return reader, conn


def failures(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "bridge_reader_failed"]


def test_a_bug_in_dispatch_is_logged_once_when_it_happens_and_close_returns() -> None:
    bug = RuntimeError("bug in on_event")

    def on_event(msg: protocol.Message) -> None:
        raise bug

    async def main() -> None:
        reader, conn = connect(on_event)
        (pending,) = conn.send(["show neighbor json"])
        reader.feed_data(b"shutdown\n")  # an event: reaches on_event, which raises
        await asyncio.wait_for(asyncio.wait({conn.task}), 5)
        # noticed when it happens, not only at close(): logged, pending commands failed
        (entry,) = failures(logs)
        assert entry["log_level"] == "error"
        assert entry["exc_info"] is bug
        assert conn.closed.is_set()
        with pytest.raises(ConnectionError):
            await pending
        await conn.close()  # returns normally, and does not log it a second time

    with capture_logs() as logs:
        asyncio.run(main())
    assert len(failures(logs)) == 1


def test_close_logs_a_failure_not_logged_yet_once() -> None:
    """close() before the done-callback has run (same tick): close() logs it, once."""

    def on_event(msg: protocol.Message) -> None:
        raise ValueError("bad event")

    async def main() -> None:
        reader, conn = connect(on_event)
        # stands in for "the task failed, its callback is not run yet"
        conn.task.remove_done_callback(conn._log_reader_failure)
        reader.feed_data(b"shutdown\n")
        await asyncio.wait_for(asyncio.wait({conn.task}), 5)
        assert failures(logs) == []
        await conn.close()
        (entry,) = failures(logs)
        assert isinstance(entry["exc_info"], ValueError)
        await conn.close()  # a second close() does not log it again
        assert len(failures(logs)) == 1

    with capture_logs() as logs:
        asyncio.run(main())


def test_closing_a_healthy_connection_logs_nothing() -> None:
    async def main() -> None:
        reader, conn = connect(lambda msg: None)
        reader.feed_data(b"shutdown\n")
        await asyncio.sleep(0)
        await conn.close()
        assert conn.task.cancelled()
        assert conn.closed.is_set()

    with capture_logs() as logs:
        asyncio.run(main())
    assert failures(logs) == []
