"""One connection to the ExaBGP bridge: pipelined commands, in-order acks, events.

Why apart from the driver: the line discipline (exactly one ``done``/``error`` per command,
output lines belong to the oldest unanswered command, everything else is an event) is the
part that must never be wrong, and it does not care what the commands mean. The driver
(:mod:`speaker.exabgp.driver`) decides *what* to send; this module only guarantees that each
answer reaches the command it belongs to, or that the connection is dropped when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter, Gauge

from speaker.exabgp import protocol

log = structlog.get_logger("exalb.speaker.exabgp")

COMMANDS = Counter("exalb_exabgp_commands", "API commands sent to ExaBGP", ["verb"])
COMMAND_ERRORS = Counter(
    "exalb_exabgp_command_errors", "API commands ExaBGP answered with error", ["verb"]
)
PEER_UP = Gauge("exalb_exabgp_peer_up", "1 when the BGP session is established", ["peer"])

Connector = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class CommandError(Exception):
    """ExaBGP answered ``error`` (or the connection died before the ack)."""


@dataclass
class _Pending:
    command: str
    future: asyncio.Future[list[str]]
    output: list[str] = field(default_factory=list)


class BridgeConnection:
    """One bridge connection: pipelined commands, in-order acks, events to a callback."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[protocol.Message], None],
        command_timeout: float = 30.0,
    ) -> None:
        self.command_timeout = command_timeout
        self.reader = reader
        self.writer = writer
        self.on_event = on_event
        self.pending: deque[_Pending] = deque()
        self.closed = asyncio.Event()
        self._reader_failure_logged = False
        self.task = asyncio.create_task(self._read_loop())
        # The loop catches only connection errors; a bug (in parse_line, _dispatch or
        # on_event) ends the task. The connection then looks merely closed (pending
        # commands fail, ``closed`` is set), so log what really happened at once.
        self.task.add_done_callback(self._log_reader_failure)

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    break
                self._dispatch(raw.decode(errors="replace"))
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.warning("bridge_read_failed", error=str(exc))
        finally:
            self._fail_all(ConnectionError("bridge connection closed"))
            self.closed.set()

    def _dispatch(self, line: str) -> None:
        msg = protocol.parse_line(line)
        if isinstance(msg, protocol.Ack):
            if not self.pending:
                log.warning("stray_ack", ok=msg.ok)
                return
            p = self.pending.popleft()
            if p.future.done():
                return
            if msg.ok:
                p.future.set_result(p.output)
            else:
                p.future.set_exception(CommandError(p.command))
        elif isinstance(msg, protocol.Output):
            if self.pending:
                self.pending[0].output.append(msg.text)
            else:
                log.debug("stray_output", line=msg.text)
        else:
            self.on_event(msg)

    def _fail_all(self, exc: BaseException) -> None:
        while self.pending:
            p = self.pending.popleft()
            if not p.future.done():
                p.future.set_exception(exc)

    def send(self, commands: Sequence[str]) -> list[asyncio.Future[list[str]]]:
        """Queue the commands for ExaBGP; each future resolves with its output on ``done``."""
        if self.closed.is_set():
            raise ConnectionError("bridge connection closed")
        loop = asyncio.get_running_loop()
        futures = []
        for cmd in commands:
            fut: asyncio.Future[list[str]] = loop.create_future()
            self.pending.append(_Pending(cmd, fut))
            futures.append(fut)
        self.writer.write("".join(c + "\n" for c in commands).encode())
        return futures

    def _log_reader_failure(self, task: asyncio.Task[None]) -> None:
        """Log, once, the exception that ended the read loop (cancellation is no failure).
        Called by the task's done-callback and by :meth:`close`, whichever comes first."""
        if self._reader_failure_logged or not task.done() or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._reader_failure_logged = True
            log.error("bridge_reader_failed", error=repr(exc), exc_info=exc)

    async def close(self) -> None:
        """Close the connection; never raises what ended the read loop (that is logged)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.task.cancel()
        try:
            # wait() never raises the task's exception; a cancellation of close() itself
            # still propagates
            await asyncio.wait({self.task})
        finally:
            self._fail_all(ConnectionError("closed"))
            self.closed.set()
        self._log_reader_failure(self.task)

    async def request(
        self, lines: list[str], *, refusals_expected: bool = False
    ) -> list[list[str] | BaseException]:
        """Send ``lines`` pipelined and wait for every ack; per line its output or the
        :class:`CommandError` of an ``error`` ack (counted and logged unless
        ``refusals_expected``). Lost acks (timeout) close the connection: the ack count
        cannot be trusted any more."""
        verbs = [_verb(line) for line in lines]
        for verb in verbs:
            COMMANDS.labels(verb).inc()
        futures = self.send(lines)
        await self.writer.drain()
        timeout = self.command_timeout + 0.01 * len(lines)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), timeout
            )
        except TimeoutError:
            # Acks are lost or ExaBGP is stuck: the ack count cannot be trusted any more.
            log.error("exabgp_ack_timeout", commands=len(lines), timeout=timeout)
            await self.close()
            raise
        for line, verb, r in zip(lines, verbs, results, strict=True):
            if isinstance(r, CommandError):
                if not refusals_expected:
                    COMMAND_ERRORS.labels(verb).inc()
                    log.error("exabgp_command_failed", command=line)
            elif isinstance(r, BaseException) and not isinstance(r, ConnectionError):
                raise r
        if any(isinstance(r, ConnectionError) for r in results):
            raise ConnectionError("bridge connection closed before all acks arrived")
        return list(results)


def unix_connector(path: str | os.PathLike[str]) -> Connector:
    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(path), limit=1 << 24)

    return connect


def _verb(line: str) -> str:
    """The metric label of a command: ``neighbor <ip> announce ...`` counts as announce."""
    words = line.split()
    if len(words) > 2 and words[0] == "neighbor":
        words = words[2:]
    word = words[0] if words else "other"
    return word if word in ("announce", "withdraw", "show", "reload") else "other"
