"""The speaker's ExaBGP adapter: converge ExaBGP's adj-rib-out onto the desired routes by diff.

It talks to the bridge's unix socket (``speaker/exabgp/bridge.py``), never to ExaBGP's pipes,
so it may crash, restart or be upgraded without ExaBGP noticing. Its rules:

* **Diff, never resend.** It keeps what ExaBGP holds per neighbor (read from
  ``show adj-rib out extensive``, then updated by acked commands) and sends only the
  difference to the desired set (``protocol.plan``).
* **Wire truth on every doubt.** On (re)connect (speaker restart, bridge respawn, ExaBGP
  restart), on a neighbor's ``up`` event, after a ``reload`` and after any ``error`` it re-reads
  adj-rib-out and converges from what is really there. So a restarted speaker withdraws
  nothing that is still wanted.
* **Exactly one ack per command.** Commands are pipelined; acks come back in order; an
  ``error`` is a failure (counter ``exalb_exabgp_command_errors_total`` + a log line) and
  triggers a re-read (with back-off) instead of guessing.
* **Peers change only by reload.** ``apply_config`` writes the rendered file, runs
  ``exabgp validate`` and sends ``reload``; ExaBGP then touches only the neighbors whose
  definition changed. Routes are only sent to neighbors of the applied config. The file
  (it holds the MD5 passwords) and its scratch copies are written 0640: the ExaBGP
  container's user reads them through the pod's group, and only the speaker and ExaBGP
  mount their volume.
* **Graceful restart.** For neighbors rendered with ``manual-eor``, ``announce eor`` follows
  the first convergence after the driver connects, after the neighbor's session comes up,
  and after the neighbor is first learned (a peer added by ``reload``, or every peer when the
  driver connected before the speaker's first computation: a speaker and ExaBGP restarted
  together find the sessions already up), so a router holding stale routes flushes only what
  is really gone, and never waits for an End-of-RIB that nobody owes it. ExaBGP refuses an
  End-of-RIB for a session that is not established; such a neighbor gets it when its ``up``
  event arrives.
* **Shutdown.** ``shutdown(withdraw=True)`` withdraws everything and waits for the acks (a
  node leaving); ``withdraw=False`` leaves the routes with ExaBGP (a speaker restart).

Clock, sleep and the connection factory are injected, so tests run against a fake ExaBGP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge

from exalb.config.model import IPNetwork
from exalb.filechannel import write_file
from speaker.decisions import Route
from speaker.exabgp import protocol, show
from speaker.exabgp.connection import (
    PEER_UP,
    BridgeConnection,
    CommandError,
    Connector,
)
from speaker.exabgp.protocol import Command
from speaker.exabgp.render import Neighbor, Rendered
from speaker.exabgp.show import AdjRibEntry

log = structlog.get_logger("exalb.speaker.exabgp")

RESYNCS = Counter("exalb_exabgp_resyncs", "adj-rib-out re-reads", ["trigger"])
RELOADS = Counter("exalb_exabgp_reloads", "config reloads", ["result"])
CONNECTED = Gauge("exalb_exabgp_bridge_connected", "1 while connected to the ExaBGP bridge")

Validator = Callable[[Path], Awaitable[str | None]]  # None = valid, else the error text
TextValidator = Callable[[str], Awaitable[str | None]]  # the same, for a text


class ConfigRefusedError(Exception):
    """``exabgp validate`` refused the rendered config; the old file stays in force.

    A named exception (not ``ValueError``) so that a bug raising ``ValueError`` anywhere in
    ``apply_config`` is never mistaken for "ExaBGP refused the config" and swallowed."""


class ReloadError(Exception):
    """A ``reload`` could not be sent or was not applied; the old config file is restored."""


def exabgp_validate(exabgp: str) -> Validator:
    """A validator running ``<exabgp> validate <file>`` (exit 0 = valid)."""

    async def validate(path: Path) -> str | None:
        proc = await asyncio.create_subprocess_exec(
            exabgp,
            "validate",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return None if proc.returncode == 0 else out.decode(errors="replace").strip()

    return validate


def routes_by_neighbor(
    routes: Iterable[Route], neighbors: Mapping[str, Neighbor]
) -> dict[str, dict[IPNetwork, Route]]:
    """Desired routes per neighbor address; routes for a peer ExaBGP does not run are held
    back until a reload brings it in."""
    out: dict[str, dict[IPNetwork, Route]] = {n.address: {} for n in neighbors.values()}
    dropped = 0
    for r in routes:
        n = neighbors.get(r.peer_name)
        if n is None:
            dropped += 1
            continue
        out[n.address][r.prefix] = r
    if dropped:
        log.debug("routes_without_neighbor", count=dropped)
    return out


def scratch_validator(config_path: Path | None, validate: Validator | None) -> TextValidator:
    """``exabgp validate`` on a text in a scratch file next to the config (never the file
    ExaBGP runs): ``None`` when valid or when there is no validator, else ExaBGP's
    complaint. Finds the neighbors of a refused config that are to blame
    (:mod:`speaker.exabgp.isolate`)."""

    async def validate_text(text: str) -> str | None:
        if validate is None or config_path is None:
            return None
        scratch = config_path.with_name(config_path.name + ".check")
        write_file(scratch, text.encode())
        try:
            return await validate(scratch)
        finally:
            scratch.unlink(missing_ok=True)

    return validate_text


@dataclass(frozen=True)
class Staged:
    """What :func:`stage_config` did."""

    changed: bool  # the file now holds the new text
    previous: str | None  # what it held before (None: there was no file)


async def stage_config(path: Path, text: str, validate: Validator | None) -> Staged:
    """Put ``text`` in ``path`` if it differs, validated first (write to ``.new``, validate,
    rename: the file never holds an invalid config); raises :class:`ConfigRefusedError`."""
    try:
        current: str | None = path.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        return Staged(False, current)
    tmp = path.with_name(path.name + ".new")
    write_file(tmp, text.encode())  # 0640: ExaBGP's user reads it through the pod's group
    if validate is not None:
        problem = await validate(tmp)
        if problem is not None:
            RELOADS.labels("invalid").inc()
            log.error("exabgp_config_invalid", error=problem)
            tmp.unlink(missing_ok=True)
            raise ConfigRefusedError(
                f"rendered exabgp config rejected by exabgp validate: {problem}"
            )
    os.replace(tmp, path)
    return Staged(True, current)


class Driver:  # size: one state machine (inputs, convergence, events, stop) on one lock
    """Keeps ExaBGP's adj-rib-out equal to the desired routes; see the module docstring."""

    def __init__(
        self,
        connect: Connector,
        *,
        config_path: Path | None = None,
        validate: Validator | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reconnect_delay: float = 0.5,
        command_timeout: float = 30.0,
        error_backoff: float = 1.0,
    ) -> None:
        self._connect = connect
        self._config_path = config_path
        self._validate = validate
        self.validate_text = scratch_validator(config_path, validate)
        self._clock = clock or time.monotonic
        self._sleep = sleep
        self._reconnect_delay = reconnect_delay
        self._command_timeout = command_timeout
        self._error_backoff = error_backoff
        self._conn: BridgeConnection | None = None
        self._neighbors: dict[str, Neighbor] = {}  # peer name -> applied neighbor
        self._routes: frozenset[Route] = frozenset()
        self._actual: dict[str, dict[IPNetwork, AdjRibEntry | Route]] | None = None
        self._resync_reasons: set[str] = set()
        # neighbor addresses that had their End-of-RIB (or were refused it: session down)
        # since the driver connected or their session came up; every other GR neighbor is owed
        self._eor_sent: set[str] = set()
        self._wake = asyncio.Event()
        self._converged = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()  # one converge / reload / show at a time
        self.connections = 0  # how many times we connected (for tests and status)
        self.last_error: str | None = None
        # ExaBGP's own words for the last time each neighbor (by address) went down, e.g.
        # "notification received (2,2)": /status shows it next to a session that is not up
        self.last_down: dict[str, str] = {}

    # -- inputs -------------------------------------------------------------------------------
    def set_routes(self, routes: Iterable[Route]) -> None:
        """The desired routes (peer names as in the config); converged in the background."""
        routes = frozenset(routes)
        if routes != self._routes:
            self._routes = routes
            self._converged.clear()
            self._wake.set()

    def set_neighbors(self, neighbors: Iterable[Neighbor]) -> None:
        """The neighbors ExaBGP runs with (normally done by :meth:`apply_config`)."""
        self._neighbors = {n.peer_name: n for n in neighbors}
        if self._actual is not None and any(
            n.address not in self._actual for n in self._neighbors.values()
        ):
            # adj-rib-out was read before this neighbor was known (e.g. a restarted speaker
            # connects before its first computation): read it again rather than assume it
            # is empty, or routes ExaBGP still holds would be announced a second time.
            self._resync_reasons.add("neighbors")
        self._converged.clear()
        self._wake.set()

    async def apply_config(self, rendered: Rendered) -> bool:
        """Write, validate and ``reload`` the config if its text changed; True if reloaded.

        Invalid configs are refused (the old file stays in force) with
        :class:`ConfigRefusedError`; a reload that fails (not connected, no ack, not applied
        in time) restores the old file and raises :class:`ReloadError`, so calling again
        later retries it.
        """
        if self._config_path is None:
            raise RuntimeError("driver has no config path")
        path = self._config_path
        staged = await stage_config(path, rendered.text, self._validate)
        current = staged.previous
        if not staged.changed or current is None:
            # unchanged, or ExaBGP is started with this file afterwards: nothing to reload
            self.set_neighbors(rendered.neighbors)
            return False
        async with self._lock:
            # Routes towards neighbors that disappear go with their session; keep only the
            # neighbors that survive until the reload is acked.
            keep = {n.peer_name for n in rendered.neighbors} & set(self._neighbors)
            self._neighbors = {k: v for k, v in self._neighbors.items() if k in keep}
            try:
                await self._run_commands([protocol.RELOAD])
                await self._await_reload({n.address for n in rendered.neighbors})
                RELOADS.labels("ok").inc()
            except (CommandError, ConnectionError, TimeoutError) as exc:
                RELOADS.labels("failed").inc()
                log.error("exabgp_reload_failed", error=str(exc))
                # Put the old text back: the file must say what ExaBGP runs, or the next
                # apply_config would see "unchanged" and never reload. The caller retries.
                write_file(path, current.encode())
                self._resync_reasons.add("reload")
                self._wake.set()
                raise ReloadError(f"reload not applied: {exc}") from exc
            self._resync_reasons.add("reload")
        log.info("exabgp_config_reloaded", neighbors=[n.address for n in rendered.neighbors])
        self.set_neighbors(rendered.neighbors)
        return True

    async def _await_reload(self, addresses: set[str], timeout: float = 10.0) -> None:
        """``reload`` is acked before ExaBGP applies it (a signal handled by its loop): poll
        ``show neighbor`` until exactly the new neighbor set exists, so no route is sent to a
        neighbor that does not exist yet (which would answer ``error``)."""
        deadline = self._clock() + timeout
        while True:
            (out,) = await self._run_commands([protocol.SHOW_NEIGHBOR_JSON])
            if {str(s.peer) for s in show.parse_neighbor_json(out)} == addresses:
                return
            if self._clock() > deadline:
                raise TimeoutError(f"ExaBGP did not apply the reload within {timeout}s")
            await self._sleep(0.05)

    # -- introspection ------------------------------------------------------------------------
    async def show_adj_rib_out(self) -> dict[str, dict[IPNetwork, AdjRibEntry]]:
        async with self._lock:
            (out,) = await self._run_commands([protocol.SHOW_ADJ_RIB_OUT])
        return show.parse_adj_rib_out(out)

    async def show_neighbors(self) -> list[show.NeighborStatus]:
        async with self._lock:
            (out,) = await self._run_commands([protocol.SHOW_NEIGHBOR_JSON])
        return show.parse_neighbor_json(out)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    async def wait_converged(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._converged.wait(), timeout)

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, re-sync and converge forever (until :meth:`stop`)."""
        while not self._stopping:
            try:
                reader, writer = await self._connect()
            except OSError as exc:
                self.last_error = f"connect: {exc}"
                log.info("bridge_connect_failed", error=str(exc))
                await self._sleep(self._reconnect_delay)
                continue
            self._conn = BridgeConnection(reader, writer, self._on_event, self._command_timeout)
            self.connections += 1
            CONNECTED.set(1)
            log.info("bridge_connected", n=self.connections)
            self._actual = None
            self._resync_reasons.add("connect")
            self._eor_sent.clear()
            try:
                await self._serve(self._conn)
            except (ConnectionError, TimeoutError, OSError) as exc:
                self.last_error = str(exc)
                log.warning("bridge_connection_lost", error=str(exc))
            finally:
                CONNECTED.set(0)
                self._converged.clear()
                conn, self._conn = self._conn, None
                await conn.close()
            if not self._stopping:
                await self._sleep(self._reconnect_delay)

    async def _serve(self, conn: BridgeConnection) -> None:
        while not self._stopping and not conn.closed.is_set():
            self._wake.clear()
            failed = False
            async with self._lock:
                try:
                    await self._converge_once()
                except CommandError as exc:
                    failed = True
                    self.last_error = f"command failed: {exc}"
            if failed:
                await self._sleep(self._error_backoff)
                continue
            if not self._resync_reasons and not self._wake.is_set():
                self._converged.set()
            waiter = asyncio.create_task(self._wake.wait())
            closed = asyncio.create_task(conn.closed.wait())
            try:
                await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closed.cancel()

    async def _converge_once(self) -> None:
        """Re-read adj-rib-out if needed, send the diff, then owed End-of-RIBs."""
        if self._actual is None or self._resync_reasons:
            for reason in self._resync_reasons or {"unknown"}:
                RESYNCS.labels(reason).inc()
            log.info("adj_rib_out_resync", reasons=sorted(self._resync_reasons))
            self._resync_reasons.clear()
            (out,) = await self._run_commands([protocol.SHOW_ADJ_RIB_OUT])
            parsed = show.parse_adj_rib_out(out)
            known = {n.address for n in self._neighbors.values()}
            self._actual = {addr: dict(parsed.get(addr, {})) for addr in known}
        actual = self._actual
        desired = routes_by_neighbor(self._routes, self._neighbors)
        # neighbors no longer applied: their session (and RIB) goes with the reload
        for addr in list(actual):
            if addr not in desired:
                del actual[addr]
        commands = protocol.plan(desired, actual)
        if commands:
            started = self._clock()
            await self._apply(commands)
            log.info(
                "exabgp_converged",
                seconds=round(self._clock() - started, 4),
                announce=sum(len(c.announced) for c in commands),
                withdraw=sum(len(c.withdrawn) for c in commands),
                lines=len(commands),
            )
        await self._send_owed_eor()

    async def _send_owed_eor(self) -> None:
        """End-of-RIB to every graceful-restart neighbor that is owed one (module docstring).

        An ``error`` answer means ExaBGP has no established session with that neighbor: not a
        failure to retry, the neighbor's ``up`` event will owe it again."""
        owed = [
            n
            for n in self._neighbors.values()
            if n.graceful_restart and n.address not in self._eor_sent
        ]
        if not owed:
            return
        lines = [protocol.end_of_rib(n.address, n.family) for n in owed]
        results = await self._connection().request(lines, refusals_expected=True)
        for n, result in zip(owed, results, strict=True):
            self._eor_sent.add(n.address)
            if isinstance(result, BaseException):
                log.info("eor_waits_for_session", peer=n.address)

    async def _apply(self, commands: list[Command]) -> None:
        """Send pipelined; update the belief per acked command; any error → re-read later."""
        assert self._actual is not None
        results = await self._connection().request([c.line for c in commands])
        failed = 0
        for cmd, result in zip(commands, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                continue
            rib = self._actual.setdefault(cmd.neighbor, {})
            for p in cmd.withdrawn:
                rib.pop(p, None)
            for r in cmd.announced:
                rib[r.prefix] = r
        if failed:
            self._resync_reasons.add("error")
            raise CommandError(f"{failed} of {len(commands)} commands failed")

    async def _run_commands(self, lines: list[str]) -> list[list[str]]:
        """Send and require every command to succeed."""
        results = await self._connection().request(lines)
        out: list[list[str]] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    def _connection(self) -> BridgeConnection:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise ConnectionError("not connected to the ExaBGP bridge")
        return conn

    def _on_event(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.PeerStateEvent):
            names = [n.peer_name for n in self._neighbors.values() if n.address == str(msg.peer)]
            for name in names or [str(msg.peer)]:
                PEER_UP.labels(name).set(1 if msg.state == "up" else 0)
            log.info("bgp_peer_state", peer=str(msg.peer), state=msg.state, reason=msg.reason)
            if msg.state == "down":
                self.last_down[str(msg.peer)] = msg.reason or "down (no reason given)"
            if msg.state == "up":
                self._eor_sent.discard(str(msg.peer))  # a new session: owed its End-of-RIB
                self._resync_reasons.add("peer_up")
                self._converged.clear()
                self._wake.set()
        elif isinstance(msg, protocol.Shutdown):
            log.warning("exabgp_shutting_down")
        else:
            log.debug("exabgp_event", event=getattr(msg, "type", type(msg).__name__))

    # -- stop ---------------------------------------------------------------------------------
    async def shutdown(self, *, withdraw: bool = True, timeout: float = 10.0) -> None:
        """Withdraw everything (node leaving) or leave routes in place (speaker restart)."""
        if withdraw and self.connected:
            self.set_routes(())
            with contextlib.suppress(TimeoutError):
                await self.wait_converged(timeout)
        self.stop()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._conn is not None:
            self._conn.closed.set()
