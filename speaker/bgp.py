"""BGP mode: decide this node's routes per peer, render ExaBGP's config, drive ExaBGP.

The :class:`~speaker.announcer.Announcer` for BGP. Its rules, which the design's contracts
depend on:

* **Peers before routes.** The rendered config is applied (``reload`` only when its text
  changed, i.e. only when a peer of this node changed) before the routes, so routes for a
  new peer are never sent to a neighbor that does not exist yet. Service changes never touch
  the config file, so they never touch a session.
* **Retry, never guess.** A reload that cannot be done now (bridge not connected, ExaBGP
  busy) makes :meth:`BGPAnnouncer.apply` return False and the loop retries; the driver
  converges routes by diff on its own meanwhile.
* **A refused config keeps the old one in force.** ``exabgp validate`` refusing the rendered
  file (:class:`~speaker.exabgp.driver.ConfigRefusedError`) is logged and counted once per text;
  the routes still converge towards the neighbors ExaBGP runs with.

The driver is reached through :class:`RouteDriver`, so the decisions about *when* to reload
and what to hand over are unit-tested with a fake (``tests/unit/test_speaker_loop.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from exalb.config.model import IPNetwork, Peer
from speaker import metrics
from speaker.announcer import Inputs
from speaker.decision_cache import DecisionCache
from speaker.decisions import Announcements, Route, cluster_warnings
from speaker.exabgp.connection import PEER_UP, CommandError
from speaker.exabgp.driver import ConfigRefusedError, ReloadError
from speaker.exabgp.protocol import AdjRibEntry, NeighborStatus
from speaker.exabgp.render import Rendered, render_config
from speaker.sources import Resolver, kernel_source_address, with_source_addresses
from speaker.status import WireView, established

log = structlog.get_logger("exalb.speaker")


class PasswordResolver(Protocol):
    """BGP passwords by peer (:class:`speaker.passwords.SecretPasswords`)."""

    def resolve(self, peers: list[Peer]) -> tuple[dict[str, str], list[str]]: ...


class RouteDriver(Protocol):
    """What the announcer needs of :class:`speaker.exabgp.driver.Driver`."""

    connections: int
    last_error: str | None
    last_down: dict[str, str]

    @property
    def connected(self) -> bool: ...

    async def run(self) -> None: ...

    async def apply_config(self, rendered: Rendered) -> bool: ...

    def set_routes(self, routes: Iterable[Route]) -> None: ...

    async def show_neighbors(self) -> list[NeighborStatus]: ...

    async def show_adj_rib_out(self) -> dict[str, dict[IPNetwork, AdjRibEntry]]: ...

    async def shutdown(self, *, withdraw: bool = True, timeout: float = 10.0) -> None: ...


@dataclass(frozen=True)
class BGPPlan:
    """This node's BGP decision and the ExaBGP config that serves it."""

    announcements: Announcements
    rendered: Rendered


class BGPAnnouncer:
    """Routes through ExaBGP; see the module docstring."""

    name = "bgp"

    def __init__(
        self,
        driver: RouteDriver,
        *,
        bridge_argv: Sequence[str],
        config_path: Path,
        passwords: PasswordResolver | None = None,
        resolve_source: Resolver = kernel_source_address,
        session_poll: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.bridge_argv = tuple(bridge_argv)
        self.config_path = config_path
        self.passwords = passwords
        self.resolve_source = resolve_source
        self.session_poll = session_poll
        self.clock = clock
        self.cache = DecisionCache()
        self.plan: BGPPlan | None = None  # the last plan handed to apply
        self.applied_text: str | None = None  # the config text ExaBGP runs (or will start with)
        self.first_applied = asyncio.Event()
        self._cluster_warnings: tuple[str, ...] = ()
        self._poll_error: str | None = None
        self._stopping = False

    # -- Announcer ----------------------------------------------------------------------------
    def decide(self, inputs: Inputs) -> BGPPlan:
        snap = inputs.snapshot
        ann = self.cache.decide(
            inputs.config, inputs.node, snap.services, snap.endpoints, inputs.options
        )
        extra = cluster_warnings(snap.nodes, inputs.options)
        if extra:
            ann = dataclasses.replace(ann, warnings=(*ann.warnings, *extra))
        if extra != self._cluster_warnings:
            for w in extra:
                log.warning("cluster_warning", warning=w)
            self._cluster_warnings = extra
        passwords: dict[str, str] = {}
        if self.passwords is not None:
            passwords, problems = self.passwords.resolve(list(ann.peers))
            for p in problems:
                log.warning("password_problem", problem=p)
        peers = with_source_addresses(ann.peers, self.resolve_source)
        rendered = render_config(peers, inputs.node, self.bridge_argv, passwords)
        return BGPPlan(ann, rendered)

    async def apply(self, plan: BGPPlan) -> bool:
        self.plan = plan
        config_in_force = await self._apply_config(plan.rendered)
        self.driver.set_routes(plan.announcements.routes)
        self._update_metrics(plan)
        return config_in_force

    async def run(self) -> None:
        """The driver, and a poll of ``show neighbor`` for the session metrics (ExaBGP's
        up/down events can be missed across a bridge reconnect)."""
        poller = asyncio.create_task(self._poll_sessions(), name="bgp-session-poll")
        try:
            await self.driver.run()
        finally:
            poller.cancel()

    async def stop(self, *, withdraw: bool) -> None:
        self._stopping = True
        await self.driver.shutdown(withdraw=withdraw and self.first_applied.is_set())

    def ready(self) -> bool:
        return self.first_applied.is_set() and self.driver.connected

    # -- config -------------------------------------------------------------------------------
    async def _apply_config(self, rendered: Rendered) -> bool:
        """True when ExaBGP runs (or will start with) exactly ``rendered``, or refused it."""
        if rendered.text == self.applied_text:
            return True
        for p in rendered.problems:
            log.warning("render_problem", problem=str(p), severity=p.severity)
        if not self.driver.connected and not self._file_holds(rendered.text):
            # ExaBGP runs (or will run) with the old file: the change needs a reload, which
            # needs the bridge. Converge the routes we can now, retry the config later.
            log.info("config_change_waits_for_bridge")
            return False
        try:
            reloaded = await self.driver.apply_config(rendered)
        except ConfigRefusedError as exc:
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

    def _file_holds(self, text: str) -> bool:
        """No file yet (ExaBGP will start with what we write), or the file holds ``text``."""
        try:
            return self.config_path.read_text() == text
        except FileNotFoundError:
            return True
        except OSError:
            return False

    # -- wire ---------------------------------------------------------------------------------
    async def read_wire(self, timeout: float = 5.0) -> WireView:
        """``show neighbor`` + ``show adj-rib out`` from ExaBGP (through the driver)."""
        if not self.driver.connected:
            return WireView(error=self.driver.last_error or "not connected to the bridge")
        try:
            neighbors = await asyncio.wait_for(self.driver.show_neighbors(), timeout)
            rib = await asyncio.wait_for(self.driver.show_adj_rib_out(), timeout)
        except (TimeoutError, ConnectionError, CommandError) as exc:
            return WireView(error=f"ExaBGP did not answer: {exc!r}", connected=True)
        self._update_session_metrics(neighbors)
        return WireView(neighbors, rib, None, True, dict(self.driver.last_down))

    async def _poll_sessions(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.session_poll)
            if not self.driver.connected:
                continue
            try:
                self._update_session_metrics(await self.driver.show_neighbors())
                error = None
            except Exception as exc:
                error = repr(exc)
            if error != self._poll_error and error is not None:
                log.warning("session_poll_failed", error=error)  # once per distinct error
            self._poll_error = error

    # -- metrics ------------------------------------------------------------------------------
    def _update_metrics(self, plan: BGPPlan) -> None:
        ann = plan.announcements
        per_peer = Counter(r.peer_name for r in ann.routes)
        for p in ann.peers:
            metrics.ANNOUNCED_PREFIXES.labels(p.name).set(per_peer.get(p.name, 0))
        decisions = Counter("announce" if d.announce else str(d.reason) for d in ann.decisions)
        for key in set(decisions) | {"announce"}:
            metrics.SERVICES.labels(key).set(decisions.get(key, 0))
        for sev in ("error", "warning"):
            metrics.RENDER_PROBLEMS.labels(sev).set(
                sum(1 for p in plan.rendered.problems if p.severity == sev)
            )

    def _update_session_metrics(self, neighbors: list[NeighborStatus]) -> None:
        names = self.peer_names()
        for n in neighbors:
            name = names.get(str(n.peer), str(n.peer))
            PEER_UP.labels(name).set(1 if established(n) else 0)

    def peer_names(self) -> Mapping[str, str]:
        """Peer address → BGPPeer name, for the peers of the last plan."""
        p = self.plan
        return {str(x.peer_address): x.name for x in p.announcements.peers} if p else {}
