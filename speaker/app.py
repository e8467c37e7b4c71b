"""The speaker's loop: cluster change → (debounced) decision per protocol → apply, and status.

``main.py`` wires informers, HTTP and signals; each protocol (:mod:`speaker.announcer`:
BGP through ExaBGP, L2 through the garp sidecar) owns its decision and its side effects.
This module owns the order of operations, which is what the design's contracts depend on:

1. **Nothing before the caches are synced.** A speaker restarted with empty caches would
   otherwise decide "no Services" and withdraw every route; no protocol is given a plan
   before the first complete computation.
2. **Debounced recompute, only in a burst, and only as long as a computation takes.**
   Informer events only set a flag. A change that finds the loop idle (the last
   computation ended more than ``debounce`` ago) is decided at once: waiting would add to
   every route's latency for nothing. A change within ``debounce`` of the last computation
   is part of a burst (a Service, its IP and its EndpointSlice; a re-list after an API
   outage; thousands of Services being created): the loop first waits as long as the last
   computation took, at most ``debounce`` (:func:`burst_delay`). So at most about half the
   time of a burst is spent computing, a small cluster (a computation of a millisecond)
   adds a millisecond, and a large one collects a burst into few computations.
3. **Config is parsed only when it changed; a bad config keeps the last good one**
   (metric ``exalb_speaker_config_stale_bool`` = 1, problems in the log and in ``/status``).
4. **L2 before BGP, independent of it.** Plans are applied in the order the protocols are
   given (L2 first), and one protocol failing to apply does not stop the other.
5. **Retry, never guess.** A protocol that could not put its plan fully into force (a
   ``reload`` without a bridge, a state file that could not be written) makes the loop
   recompute after ``retry_delay``.

The computation (snapshot, parse, every protocol's decision) runs in a worker thread so the
driver's acks and events keep flowing while 10,000 Services are decided. :meth:`recompute`
is the handler; :meth:`_recompute_loop` only decides *when* it runs, so the handler is
unit-tested with fake protocols (``tests/unit/test_speaker_loop.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from exalb.config.documents import internal_error, parse_documents
from exalb.config.model import Config
from exalb.config.result import ParseResult
from exalb.contracts.speaker_status import StatusDocument
from speaker import metrics
from speaker.announcer import Announcer, Inputs
from speaker.bgp import BGPAnnouncer, BGPPlan
from speaker.cluster_store import ClusterStore
from speaker.decisions import Options
from speaker.l2.announcer import L2Announcer
from speaker.status import ConfigState, L2View, WireView, bfd_section, status_document
from speaker.status_cache import DocumentCache, WireCache

log = structlog.get_logger("exalb.speaker")

#: ``namespace/name`` is at most 63 + 1 + 63 characters; a longer query matches nothing.
MAX_SERVICE_PARAM = 128


@dataclass(frozen=True)
class Settings:
    node_name: str
    namespace: str
    options: Options = field(default_factory=Options)
    debounce: float = 0.02
    retry_delay: float = 0.5
    resync_interval: float = 30.0  # periodic recompute: picks up rotated Secrets
    withdraw_on_exit: bool = True
    status_refresh: float = 1.0  # /status: ExaBGP's wire view is read at most this often
    status_wait: float = 6.0  # a /status reader waits at most this long for a fresh one


def burst_delay(since_last: float, last_took: float, debounce: float) -> float:
    """Seconds to wait before computing (module docstring, item 2): none when idle, else as
    long as the last computation took, at most ``debounce``."""
    if since_last >= debounce:
        return 0.0
    return max(0.0, min(debounce, last_took))


@dataclass(frozen=True)
class Computed:
    """One recompute: each protocol with its plan, in the order they are applied."""

    plans: tuple[tuple[Announcer[Any], Any], ...]
    config_state: ConfigState
    seconds: float

    def plan_of(self, announcer: Announcer[Any]) -> Any:
        return next(plan for a, plan in self.plans if a is announcer)


class Speaker:
    """One node's speaker; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        store: ClusterStore,
        bgp: BGPAnnouncer,
        l2: L2Announcer | None = None,
        synced: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bgp = bgp
        self.l2 = l2
        # L2 first: an ARP hand-over must never wait for an ExaBGP reload.
        self.announcers: tuple[Announcer[Any], ...] = (*((l2,) if l2 else ()), bgp)
        self.synced = synced
        self.clock = clock
        self.config: Config | None = None
        self.config_state = ConfigState()
        self._config_generation = -1
        self.computed: Computed | None = None
        self.recomputes = 0
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.wire = WireCache(self._read_wire, interval=settings.status_refresh, clock=clock)
        self.documents = DocumentCache(ttl=settings.status_refresh, clock=clock)

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
        """Run every protocol's background work and the recompute loop until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            *(asyncio.create_task(a.run(), name=a.name) for a in self.announcers),
            asyncio.create_task(self._recompute_loop(), name="recompute"),
            asyncio.create_task(self._resync_loop(), name="resync"),
            asyncio.create_task(self.wire.run(), name="status-wire"),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)

    async def stop(self, withdraw: bool | None = None) -> None:
        """Withdraw (node leaving) or keep the routes (restart) and stop every task."""
        withdraw = self.settings.withdraw_on_exit if withdraw is None else withdraw
        self._stopping = True
        self._dirty.set()
        started = self.clock()
        for a in self.announcers:
            await a.stop(withdraw=withdraw)
        log.info("speaker_stopped", withdrew=withdraw, seconds=round(self.clock() - started, 3))
        for t in self._tasks:
            t.cancel()

    def ready(self) -> bool:
        return self.synced() and all(a.ready() for a in self.announcers)

    # -- loop ---------------------------------------------------------------------------------
    async def _recompute_loop(self) -> None:
        finished, took = -math.inf, 0.0  # the last computation (module docstring, item 2)
        while not self._stopping:
            await self._dirty.wait()
            if self._stopping:
                return
            delay = burst_delay(self.clock() - finished, took, self.settings.debounce)
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            if not self.synced():
                continue  # main notifies once every informer has synced
            started = self.clock()
            try:
                await self.recompute()
            except Exception:  # the loop must survive any single bad computation
                log.exception("recompute_failed")
                self._retry_later()
            finished = self.clock()
            took = finished - started

    async def _resync_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.resync_interval)
            self.notify("resync")

    def _retry_later(self) -> None:
        if self._loop is not None and not self._stopping:
            self._loop.call_later(self.settings.retry_delay, self._dirty.set)

    # -- the handler --------------------------------------------------------------------------
    async def recompute(self) -> Computed | None:
        """Decide (worker thread), then apply every protocol's plan in order."""
        computed = await asyncio.to_thread(self._compute)
        if computed is None:
            return None
        self.computed = computed
        self.recomputes += 1
        metrics.RECOMPUTES.inc()
        retry = False
        for announcer, plan in computed.plans:
            try:
                in_force = await announcer.apply(plan)
            except Exception:  # one protocol's failure must not stop the other
                log.exception("apply_failed", protocol=announcer.name)
                in_force = False
            retry = retry or not in_force
        if retry:
            self._retry_later()
        return computed

    def _compute(self) -> Computed | None:
        started = self.clock()
        snap = self.store.snapshot()
        if snap.config_generation != self._config_generation:
            self._parse_config(snap.config_documents, snap.config_generation)
        if self.config is None:
            log.info("waiting_for_config")
            return None
        if snap.node is None:
            log.warning("node_not_found", node=self.settings.node_name)
            return None
        inputs = Inputs(self.config, snap.node, snap, self.settings.options)
        plans = tuple((a, a.decide(inputs)) for a in self.announcers)
        seconds = self.clock() - started
        metrics.RECOMPUTE_SECONDS.observe(seconds)
        return Computed(plans, self.config_state, seconds)

    def _parse_config(self, docs: tuple[tuple[str, Any], ...], generation: int) -> None:
        """Parse a new config generation; a refused one keeps the last good config in force
        and says so (``config.stale`` in ``/status``, the stale metric), whatever the input:
        an exception escaping the parser counts as a refusal, never as a failed recompute
        that would leave ``/status`` claiming the config is current."""
        try:
            result = parse_documents(docs, namespace=self.settings.namespace)
        except Exception as exc:  # parse_documents promises not to raise; be sure
            log.exception("config_parse_crashed")
            result = ParseResult(None, (internal_error("config", exc),))
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

    # -- status -------------------------------------------------------------------------------
    async def _read_wire(self) -> WireView:
        return await self.bgp.read_wire()

    def status(self, params: Mapping[str, str]) -> StatusDocument:
        """The ``/status`` document; called from the HTTP server's threads. ExaBGP's wire
        view comes from :class:`~speaker.status_cache.WireCache` (never read per request)."""
        wire = self.wire.get(wait=self.settings.status_wait)
        c = self.computed
        plan: BGPPlan | None = c.plan_of(self.bgp) if c else None
        doc = status_document(
            node=self.settings.node_name,
            config=self.config_state,
            announcements=plan.announcements if plan else None,
            rendered=self.bgp.rendered or (plan.rendered if plan else None),
            wire=wire.view,
            service=params.get("service"),
            l2=self.l2.view() if self.l2 is not None else L2View(),
            wire_age=wire.age,
        )
        if self.bgp.bfd is not None:
            doc["bfd"] = bfd_section(
                self.bgp.bfd.sessions, self.bgp.bfd.error, plan.bfd if plan else None
            )
        doc["speaker"] = {
            "recomputes": self.recomputes,
            "lastRecomputeSeconds": round(c.seconds, 4) if c else None,
            "configApplied": self.bgp.config_applied,
            "driverConnections": self.bgp.driver.connections,
            "drain": self.bgp.drain_status(),
        }
        return doc

    def status_body(self, params: Mapping[str, str]) -> bytes:
        """``/status`` encoded, shared by every reader of the same query for up to
        ``status_refresh`` seconds (:class:`~speaker.status_cache.DocumentCache`), and
        rebuilt at once when anything this speaker decided changed since: a reader sees
        its own config, decisions and ExaBGP config at once; only what comes from outside
        (ExaBGP's wire view, the sidecar's report) may be up to that old."""
        service = params.get("service")
        query = {} if service is None else {"service": service[:MAX_SERVICE_PARAM]}
        return self.documents.get(
            (query.get("service"), self._decided_version()),
            lambda: json.dumps(self.status(query), indent=2, default=str).encode() + b"\n",
        )

    def _decided_version(self) -> tuple[object, ...]:
        """Changes whenever the speaker's own state behind ``/status`` does (cheap: no
        document is compared)."""
        l2 = self.l2.publisher.generation if self.l2 is not None else None
        drain = self.bgp.drain
        return (self._config_generation, self.recomputes, id(self.computed),
                id(self.bgp.rendered), self.bgp.config_applied, self.bgp.driver.connections,
                l2, drain.state.started, drain.reason)  # fmt: skip
