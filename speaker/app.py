"""The speaker's loop: cluster change → (debounced) pure decision → ExaBGP, plus its status.

``main.py`` wires informers, HTTP and signals; this module owns the order of operations,
which is what the design's contracts depend on:

1. **Nothing before the caches are synced.** A speaker restarted with empty caches would
   otherwise decide "no Services" and withdraw every route; the driver is only given routes
   after the first complete computation.
2. **Debounced recompute.** Informer events only set a flag; the loop waits
   ``debounce`` seconds after the first event, so a burst (a Service plus its EndpointSlice,
   or a re-list after an API outage) costs one computation and the latency stays bounded.
3. **Config is parsed only when it changed; a bad config keeps the last good one**
   (metric ``exalb_speaker_config_stale_bool`` = 1, problems in the log and in ``/status``).
4. **Peers before routes.** The rendered ExaBGP config is applied (``reload`` only when its
   text changed, i.e. only when a peer of this node changed) before the routes, so routes
   for a new peer are not sent to a neighbor that does not exist yet. Service changes never
   touch the config file, so they never touch a session.
5. **Retry, never guess.** A reload that cannot be done now (bridge not connected, ExaBGP
   busy) is retried after ``retry_delay``; the driver converges routes by diff on its own.
6. **L2 before BGP, independent of it** (``--l2-state``, :mod:`speaker.l2.announcer`): the
   election runs with the BGP decision, and the sidecar's state is written before the
   ExaBGP config is applied, so a slow ``reload`` never delays an ARP hand-over, and an
   absent or broken ExaBGP does not stop L2.

The computation itself (snapshot, parse, decide, secrets, render) runs in a worker thread so
the driver's acks and events keep flowing while 10,000 Services are decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from exalb.config.documents import parse_documents
from exalb.config.model import Config, Peer
from exalb.views import NodeView
from speaker import metrics
from speaker.cluster_store import World
from speaker.decision_cache import DecisionMemo
from speaker.decisions import Announcements, Options, cluster_warnings
from speaker.exabgp import driver as drv
from speaker.exabgp.driver import Driver, ReloadError
from speaker.exabgp.render import Rendered, render_config
from speaker.l2.announcer import EventSink, Layer2
from speaker.l2.election import IPElection
from speaker.sources import Resolver, kernel_source_address, with_source_addresses
from speaker.status import ConfigState, L2View, WireView, established, status_document

log = structlog.get_logger("exalb.speaker")


class PasswordResolver(Protocol):
    def resolve(self, peers: list[Peer]) -> tuple[dict[str, str], list[str]]: ...


@dataclass(frozen=True)
class Settings:
    node_name: str
    namespace: str
    bridge_argv: tuple[str, ...]
    config_path: Path
    options: Options = field(default_factory=Options)
    debounce: float = 0.02
    retry_delay: float = 0.5
    resync_interval: float = 30.0  # periodic recompute: picks up rotated Secrets
    session_poll: float = 2.0  # show neighbor → exalb_exabgp_peer_up (events can be missed)
    withdraw_on_exit: bool = True
    resolve_source: Resolver = kernel_source_address  # see speaker/sources.py
    l2_state: Path | None = None  # the garp sidecar's desired-state file; None = L2 off


@dataclass(frozen=True)
class Computed:
    announcements: Announcements
    rendered: Rendered
    config_state: ConfigState
    seconds: float
    elections: tuple[IPElection, ...] = ()  # L2; empty when L2 is off
    nodes: tuple[NodeView, ...] = ()


class Speaker:
    """One node's speaker; see the module docstring for the order of operations."""

    def __init__(
        self,
        settings: Settings,
        world: World,
        driver: Driver,
        passwords: PasswordResolver | None = None,
        synced: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        events: EventSink | None = None,
    ) -> None:
        self.settings = settings
        self.world = world
        self.driver = driver
        self.passwords = passwords
        self.synced = synced
        self.clock = clock
        self.layer2 = (
            Layer2(
                settings.node_name,
                settings.l2_state,
                events=events,
                service_ref=world.service_ref,
            )
            if settings.l2_state is not None
            else None
        )
        self.config: Config | None = None
        self._cluster_warnings: tuple[str, ...] = ()
        self.config_state = ConfigState()
        self._config_generation = -1
        self.computed: Computed | None = None
        self.memo = DecisionMemo()
        self.applied_text: str | None = None
        self.first_applied = asyncio.Event()
        self.recomputes = 0
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- inputs from other threads ------------------------------------------------------------
    def notify(self, kind: str = "change") -> None:
        """Thread-safe: something changed; recompute soon."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop shutting down
            loop.call_soon_threadsafe(self._dirty.set)

    # -- life ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the driver, the recompute loop and the session poller until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self.driver.run(), name="driver"),
            asyncio.create_task(self._recompute_loop(), name="recompute"),
            asyncio.create_task(self._periodic(), name="periodic"),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)

    async def stop(self, withdraw: bool | None = None) -> None:
        """Withdraw (node leaving) or keep the routes (restart) and stop every task."""
        withdraw = self.settings.withdraw_on_exit if withdraw is None else withdraw
        self._stopping = True
        self._dirty.set()
        started = self.clock()
        await self.driver.shutdown(withdraw=withdraw and self.first_applied.is_set())
        log.info("speaker_stopped", withdrew=withdraw, seconds=round(self.clock() - started, 3))
        for t in self._tasks:
            t.cancel()
        if self.layer2 is not None:
            self.layer2.close()

    # -- loop ---------------------------------------------------------------------------------
    async def _recompute_loop(self) -> None:
        while not self._stopping:
            await self._dirty.wait()
            if self._stopping:
                return
            await asyncio.sleep(self.settings.debounce)
            self._dirty.clear()
            if not self.synced():
                continue  # main notifies once every informer has synced
            try:
                await self.recompute()
            except Exception:  # the loop must survive any single bad computation
                log.exception("recompute_failed")
                self._retry_later()

    async def _periodic(self) -> None:
        last_resync = self.clock()
        while not self._stopping:
            await asyncio.sleep(self.settings.session_poll)
            if self.driver.connected:
                with contextlib.suppress(Exception):
                    self._update_session_metrics(await self.driver.show_neighbors())
            if self.clock() - last_resync >= self.settings.resync_interval:
                last_resync = self.clock()
                self.notify("resync")

    def _retry_later(self) -> None:
        if self._loop is not None and not self._stopping:
            self._loop.call_later(self.settings.retry_delay, self._dirty.set)

    async def recompute(self) -> Computed | None:
        """Decide, render, apply the config if it changed, hand the routes to the driver."""
        computed = await asyncio.to_thread(self._compute)
        if computed is None:
            return None
        self.computed = computed
        self.recomputes += 1
        metrics.RECOMPUTES.inc()
        if self.layer2 is not None:
            try:
                await asyncio.to_thread(self.layer2.apply, computed.elections, computed.nodes)
            except OSError as exc:
                log.error("l2_state_write_failed", error=str(exc))
                self._retry_later()
        if not await self._apply_config(computed.rendered):
            self._retry_later()
        self.driver.set_routes(computed.announcements.routes)
        self._update_metrics(computed)
        return computed

    def _compute(self) -> Computed | None:
        started = self.clock()
        snap = self.world.snapshot()
        if snap.config_generation != self._config_generation:
            self._parse_config(snap.config_documents, snap.config_generation)
        if self.config is None:
            log.info("waiting_for_config")
            return None
        if snap.node is None:
            log.warning("node_not_found", node=self.settings.node_name)
            return None
        ann = self.memo.decide(
            self.config, snap.node, snap.services, snap.endpoints, self.settings.options
        )
        extra = cluster_warnings(snap.nodes, self.settings.options)
        if extra:
            ann = dataclasses.replace(ann, warnings=(*ann.warnings, *extra))
        if extra != self._cluster_warnings:
            for w in extra:
                log.warning("cluster_warning", warning=w)
            self._cluster_warnings = extra
        passwords: dict[str, str] = {}
        problems: list[str] = []
        if self.passwords is not None:
            passwords, problems = self.passwords.resolve(list(ann.peers))
        elections: tuple[IPElection, ...] = ()
        if self.layer2 is not None:
            elections = self.layer2.elect(
                self.config,
                snap.services,
                snap.endpoints,
                snap.nodes,
                load_balancer_class=self.settings.options.load_balancer_class,
                ignore_exclude_lb=self.settings.options.ignore_exclude_lb,
            )
        peers = with_source_addresses(ann.peers, self.settings.resolve_source)
        rendered = render_config(peers, snap.node, self.settings.bridge_argv, passwords)
        for p in problems:
            log.warning("password_problem", problem=p)
        seconds = self.clock() - started
        metrics.RECOMPUTE_SECONDS.observe(seconds)
        return Computed(ann, rendered, self.config_state, seconds, elections, snap.nodes)

    def _parse_config(self, docs: tuple[tuple[str, Any], ...], generation: int) -> None:
        result = parse_documents(docs, namespace=self.settings.namespace)
        self._config_generation = generation
        problems = tuple(str(p) for p in result.problems)
        if result.config is not None:
            changed = result.config != self.config
            self.config = result.config
            self.config_state = ConfigState(True, False, result.config.source, problems)
            if changed:
                log.info("config_loaded", source=result.config.source, warnings=list(problems))
        else:
            self.config_state = ConfigState(
                self.config is not None, True, self.config_state.source, problems
            )
            log.error("config_invalid_keeping_last_good", problems=list(problems),
                      have_last_good=self.config is not None)  # fmt: skip
        metrics.CONFIG_STALE.set(1 if self.config_state.stale else 0)
        metrics.CONFIG_PROBLEMS.labels("error").set(len(result.errors))
        metrics.CONFIG_PROBLEMS.labels("warning").set(len(result.warnings))

    async def _apply_config(self, rendered: Rendered) -> bool:
        """True when ExaBGP runs (or will start with) exactly ``rendered``."""
        for p in rendered.problems:
            if rendered.text != self.applied_text:
                log.warning("render_problem", problem=str(p), severity=p.severity)
        if rendered.text == self.applied_text:
            return True
        path = self.settings.config_path
        if path.exists() and not self.driver.connected:
            # ExaBGP runs (or will run) with the old file: the change needs a reload, which
            # needs the bridge. Converge the routes we can now, retry the config later.
            try:
                same = path.read_text() == rendered.text
            except OSError:
                same = False
            if not same:
                log.info("config_change_waits_for_bridge")
                return False
        try:
            reloaded = await self.driver.apply_config(rendered)
        except ValueError as exc:  # exabgp validate refused it: keep the old file in force
            metrics.CONFIG_APPLY_ERRORS.inc()
            log.error("exabgp_config_refused", error=str(exc))
            self.applied_text = rendered.text  # do not re-validate the same text forever
            return True
        except ReloadError as exc:
            metrics.CONFIG_APPLY_ERRORS.inc()
            log.warning("exabgp_reload_retry", error=str(exc))
            return False
        self.applied_text = rendered.text
        self.first_applied.set()
        log.info("exabgp_config_applied", reloaded=reloaded,
                 neighbors=[n.address for n in rendered.neighbors])  # fmt: skip
        return True

    # -- metrics ------------------------------------------------------------------------------
    def _update_metrics(self, c: Computed) -> None:
        per_peer = Counter(r.peer_name for r in c.announcements.routes)
        for p in c.announcements.peers:
            metrics.ANNOUNCED_PREFIXES.labels(p.name).set(per_peer.get(p.name, 0))
        decisions = Counter(
            "announce" if d.announce else str(d.reason) for d in c.announcements.decisions
        )
        for key in set(decisions) | {"announce"}:
            metrics.SERVICES.labels(key).set(decisions.get(key, 0))
        for sev in ("error", "warning"):
            metrics.RENDER_PROBLEMS.labels(sev).set(
                sum(1 for p in c.rendered.problems if p.severity == sev)
            )

    def _update_session_metrics(self, neighbors: list[Any]) -> None:
        names = self._peer_names()
        for n in neighbors:
            name = names.get(str(n.peer), str(n.peer))
            drv.PEER_UP.labels(name).set(1 if established(n) else 0)

    def _peer_names(self) -> Mapping[str, str]:
        c = self.computed
        return {str(p.peer_address): p.name for p in c.announcements.peers} if c else {}

    # -- status -------------------------------------------------------------------------------
    async def read_wire(self, timeout: float = 5.0) -> WireView:
        """``show neighbor`` + ``show adj-rib out`` from ExaBGP (through the driver)."""
        if not self.driver.connected:
            return WireView(error=self.driver.last_error or "not connected to the bridge")
        try:
            neighbors = await asyncio.wait_for(self.driver.show_neighbors(), timeout)
            rib = await asyncio.wait_for(self.driver.show_adj_rib_out(), timeout)
        except (TimeoutError, ConnectionError, drv.CommandError) as exc:
            return WireView(error=f"ExaBGP did not answer: {exc!r}", connected=True)
        self._update_session_metrics(neighbors)
        return WireView(neighbors, rib, None, True)

    def status(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The ``/status`` document; called from the HTTP server's thread."""
        loop = self._loop
        wire = WireView(error="speaker loop not running")
        if loop is not None and not loop.is_closed():
            try:
                wire = asyncio.run_coroutine_threadsafe(self.read_wire(), loop).result(10)
            except Exception as exc:
                wire = WireView(error=f"status read failed: {exc!r}")
        c = self.computed
        doc = status_document(
            node=self.settings.node_name,
            config=self.config_state,
            announcements=c.announcements if c else None,
            rendered=c.rendered if c else None,
            wire=wire,
            service=params.get("service"),
            l2=self.layer2.view() if self.layer2 is not None else L2View(),
        )
        doc["speaker"] = {
            "recomputes": self.recomputes,
            "lastRecomputeSeconds": round(c.seconds, 4) if c else None,
            "configApplied": self.applied_text is not None,
            "driverConnections": self.driver.connections,
        }
        return doc

    def ready(self) -> bool:
        return self.synced() and self.first_applied.is_set() and self.driver.connected
