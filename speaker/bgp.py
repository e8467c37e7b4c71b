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
* **One refused neighbor never freezes the others.** When ``exabgp validate`` refuses the
  rendered file (:class:`~speaker.exabgp.driver.ConfigRefusedError`), the neighbors to blame
  are found by validating parts of it (:mod:`speaker.exabgp.isolate`), left out, reported
  on their BGPPeer (an error in ``/status`` ``renderProblems``, a Warning event) and the
  rest is applied. Only a file refused for no single neighbor keeps the old one in force.
  Each text is judged once; ``configApplied`` in ``/status`` and
  ``exalb_speaker_exabgp_config_applied_bool`` say whether ExaBGP runs the latest decision.
* **A password once known stays** (:mod:`speaker.passwords`): a password Secret that cannot
  be read keeps the last known password (also the one in the file ExaBGP runs, across a
  speaker restart) with a warning, so a deleted Secret never tears down a session.

* **Drain before withdraw** (:mod:`speaker.drain`). Stopping with ``withdraw`` first
  announces every route with GRACEFUL_SHUTDOWN for ``drain_seconds``, then withdraws; a
  cordoned node that opted in does the same and announces normally again when uncordoned.
  What is handed to the driver is always "the plan's routes, as the drain phase wants them"
  (:meth:`BGPAnnouncer._push_routes`), so a Service change during a drain stays drained.

* **A new Local path waits for kube-proxy** (:mod:`speaker.proxy_hold`, optional
  :class:`~speaker.proxy_gate.ProxyGate`): the decisions are handed over with such paths
  held until the node's kube-proxy serves the local endpoints, at most a few seconds.

BFD (BGPPeer ``bfdProfile``) rides along: the same resolved peers give the node's BFD
sessions (:func:`speaker.bfd.render.plan_bfd`), which the optional :class:`BfdControl`
(:class:`speaker.bfd.control.BfdController`, the node's bfdd) puts into force.

The driver is reached through :class:`RouteDriver`, so the decisions about *when* to reload
and what to hand over are unit-tested with a fake (``tests/unit/test_speaker_loop.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from exalb.config.model import IPNetwork, Peer
from exalb.contracts.speaker_status import DrainSection
from speaker import metrics
from speaker.announcer import Inputs
from speaker.bfd.render import BfdPlan, BfdSession, plan_bfd
from speaker.decision_cache import DecisionCache
from speaker.decisions import Announcements, Route, cluster_warnings
from speaker.drain import cordon_drain_requested
from speaker.drain_control import DrainControl
from speaker.exabgp.connection import PEER_UP, CommandError
from speaker.exabgp.driver import ConfigRefusedError, ReloadError
from speaker.exabgp.isolate import TextValidator, refused_neighbors, summary
from speaker.exabgp.render import Rendered, RenderProblem, passwords_in_config, render_config
from speaker.exabgp.show import AdjRibEntry, NeighborStatus
from speaker.peer_events import PeerEvents
from speaker.proxy_gate import ProxyGate
from speaker.sources import Resolver, kernel_source_address, with_source_addresses
from speaker.status import WireView, established

log = structlog.get_logger("exalb.speaker")


class PasswordResolver(Protocol):
    """BGP passwords by peer (:class:`speaker.passwords.SecretPasswords`)."""

    def resolve(self, peers: list[Peer]) -> tuple[dict[str, str], list[RenderProblem]]: ...


class RouteDriver(Protocol):
    """What the announcer needs of :class:`speaker.exabgp.driver.Driver`."""

    connections: int
    last_error: str | None
    last_down: dict[str, str]

    @property
    def connected(self) -> bool: ...

    async def run(self) -> None: ...

    async def apply_config(self, rendered: Rendered) -> bool: ...

    @property
    def validate_text(self) -> TextValidator: ...

    def set_routes(self, routes: Iterable[Route]) -> None: ...

    async def show_neighbors(self) -> list[NeighborStatus]: ...

    async def show_adj_rib_out(self) -> dict[str, dict[IPNetwork, AdjRibEntry]]: ...

    async def wait_converged(self, timeout: float | None = None) -> None: ...

    async def shutdown(self, *, withdraw: bool = True, timeout: float = 10.0) -> None: ...


class BfdControl(Protocol):
    """What the announcer needs of :class:`speaker.bfd.control.BfdController`."""

    sessions: list[BfdSession]
    error: str | None

    def set_plan(self, plan: BfdPlan) -> None: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class BGPPlan:
    """This node's BGP decision and the ExaBGP config that serves it."""

    announcements: Announcements
    rendered: Rendered
    bfd: BfdPlan | None = None  # None: this speaker runs no bfdd
    cordoned: bool = False  # the node is cordoned and opted in to drain then


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
        events: PeerEvents | None = None,
        resolve_source: Resolver = kernel_source_address,
        session_poll: float = 2.0,
        drain_seconds: float = 0.0,
        drain_on_cordon: bool = False,
        clock: Callable[[], float] = time.monotonic,
        bfd: BfdControl | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        proxy_gate: ProxyGate | None = None,
    ) -> None:
        self.driver = driver
        self.bfd = bfd
        self.proxy_gate = proxy_gate
        self.bridge_argv = tuple(bridge_argv)
        self.config_path = config_path
        self.passwords = passwords
        self.events = events
        self.resolve_source = resolve_source
        self.session_poll = session_poll
        self.clock = clock
        self.sleep = sleep
        self.drain = DrainControl(drain_seconds, clock=clock, on_expired=self._drain_expired)
        self.drain_on_cordon = drain_on_cordon
        self.cache = DecisionCache()
        self.plan: BGPPlan | None = None  # the last plan handed to apply
        self.applied_text: str | None = None  # the config text ExaBGP runs (or will start with)
        # What /status shows: the config in force, with every problem of the latest plan.
        self.rendered: Rendered | None = None
        self.config_applied = False  # ExaBGP runs the latest plan's config (less refusals)
        # The verdict on the last refused text: what is applied instead (None: nothing).
        self._verdict: tuple[str, Rendered | None] | None = None
        self._file_passwords: dict[str, str] | None = None
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
        ann = self.proxy_gate.apply(ann, snap.services, inputs.node) if self.proxy_gate else ann
        extra = cluster_warnings(snap.nodes, inputs.options)
        if extra:
            ann = dataclasses.replace(ann, warnings=(*ann.warnings, *extra))
        if extra != self._cluster_warnings:
            for w in extra:
                log.warning("cluster_warning", warning=w)
            self._cluster_warnings = extra
        passwords, problems = self._passwords(ann.peers)
        peers = with_source_addresses(ann.peers, self.resolve_source)
        rendered = render_config(peers, inputs.node, self.bridge_argv, passwords)
        if problems:
            rendered = dataclasses.replace(rendered, problems=(*problems, *rendered.problems))
        bfd = plan_bfd(peers, inputs.config.bfd_profiles) if self.bfd is not None else None
        if self.bfd is None and any(p.bfd_profile for p in peers):
            off = tuple(
                f"BGPPeer/{p.name}: spec.bfdProfile: this speaker runs no bfdd (chart value "
                "bfd.enabled); the session has no BFD"
                for p in peers
                if p.bfd_profile
            )
            ann = dataclasses.replace(ann, warnings=(*ann.warnings, *off))
        cordoned = cordon_drain_requested(inputs.node, self.drain_on_cordon)
        return BGPPlan(ann, rendered, bfd=bfd, cordoned=cordoned)

    def _passwords(self, peers: Sequence[Peer]) -> tuple[dict[str, str], list[RenderProblem]]:
        """Passwords from Secrets; a peer whose Secret never yielded one in this process
        keeps the password of the file ExaBGP runs (a speaker restarted while the Secret
        is gone must not tear the session down either)."""
        if self.passwords is None:
            return {}, []
        passwords, problems = self.passwords.resolve(list(peers))
        out: list[RenderProblem] = []
        for p in problems:
            known = self._running_passwords().get(p.peer) if p.severity == "error" else None
            if known is not None and p.peer not in passwords:
                passwords[p.peer] = known
                p = dataclasses.replace(p, severity="warning",  # noqa: PLW2901
                                        message=f"{p.message}; the password ExaBGP runs with "
                                        "stays in use")  # fmt: skip
            log.warning("password_problem", problem=str(p))
            out.append(p)
        return passwords, out

    def _running_passwords(self) -> dict[str, str]:
        if self.applied_text is not None:
            return passwords_in_config(self.applied_text)
        if self._file_passwords is None:
            try:
                self._file_passwords = passwords_in_config(self.config_path.read_text())
            except (OSError, UnicodeDecodeError):
                self._file_passwords = {}
        return self._file_passwords

    async def apply(self, plan: BGPPlan) -> bool:
        self.plan = plan
        config_in_force = await self._apply_config(plan.rendered)
        if self.bfd is not None and plan.bfd is not None:
            self.bfd.set_plan(plan.bfd)
        if plan.cordoned:
            self.drain.start("cordoned")
        elif self.drain.reason == "cordoned":
            log.info("drain_ended", reason="uncordoned")
            self.drain.cancel()
        if not self._stopping:
            self._push_routes()
        _publish_plan_metrics(plan.announcements, self.rendered or plan.rendered)
        if self.events is not None:
            self.events.update(self.rendered.problems if self.rendered else ())
        return config_in_force

    async def run(self) -> None:
        """The driver, a poll of ``show neighbor`` for the session metrics (ExaBGP's up/down
        events can be missed across a bridge reconnect), bfdd's and the proxy gate's loops."""
        side = [self._poll_sessions(), *(x.run() for x in (self.bfd, self.proxy_gate) if x)]
        tasks = [asyncio.create_task(c) for c in side]
        try:
            await self.driver.run()
        finally:
            if self.bfd is not None:
                self.bfd.stop()
            for task in tasks:
                task.cancel()

    async def stop(self, *, withdraw: bool, converge_timeout: float = 10.0) -> None:
        """``withdraw``: drain first (GRACEFUL_SHUTDOWN for the rest of the drain time), then
        withdraw everything; otherwise leave the routes with ExaBGP (graceful restart)."""
        self._stopping = True
        withdraw = withdraw and self.first_applied.is_set()
        if withdraw and self.drain.seconds > 0 and self.driver.connected and self._routes():
            self.drain.start("stopping")
            self._push_routes()
            started = self.clock()
            with contextlib.suppress(TimeoutError):
                await self.driver.wait_converged(converge_timeout)
            remaining = self.drain.remaining()
            log.info("drain_announced", seconds=round(self.clock() - started, 3),
                     withdraw_in=round(remaining, 3))  # fmt: skip
            if remaining > 0:
                await self.sleep(remaining)
        self.drain.stop_timer()
        await self.driver.shutdown(withdraw=withdraw, timeout=converge_timeout)

    # -- drain ----------------------------------------------------------------------------------
    def _routes(self) -> frozenset[Route]:
        return self.plan.announcements.routes if self.plan is not None else frozenset()

    def _push_routes(self) -> None:
        """Hand the driver the plan's routes as the drain phase wants them (see module doc)."""
        peers = self.plan.announcements.peers if self.plan is not None else ()
        self.driver.set_routes(self.drain.shape(self._routes(), peers))

    def _drain_expired(self) -> None:
        if not self._stopping:
            log.info("drain_withdraw", reason=self.drain.reason)
            self._push_routes()

    def drain_status(self) -> DrainSection | None:
        """For ``/status``: the drain in progress, if any."""
        return self.drain.status()

    def ready(self) -> bool:
        return self.first_applied.is_set() and self.driver.connected

    # -- config -------------------------------------------------------------------------------
    async def _apply_config(self, rendered: Rendered) -> bool:
        """True when ExaBGP runs (or will start with) ``rendered`` less the neighbors it
        refuses, or when it refuses ``rendered`` as a whole (only a new config can help;
        :attr:`config_applied` tells which). False means: retry later."""
        target: Rendered | None = rendered
        if self._verdict is not None and self._verdict[0] == rendered.text:
            target = self._verdict[1]
            if target is None:
                return True  # judged before: refused as a whole; the old config stays
        assert target is not None
        if target.text == self.applied_text:
            self._in_force(target, None)
            return True
        for p in target.problems:
            log.warning("render_problem", problem=str(p), severity=p.severity)
        if not self.driver.connected and not self._file_holds(target.text):
            # ExaBGP runs (or will run) with the old file: the change needs a reload, which
            # needs the bridge. Converge the routes we can now, retry the config later.
            log.info("config_change_waits_for_bridge")
            self._not_in_force(rendered, None)
            return False
        try:
            reloaded = await self.driver.apply_config(target)
        except ConfigRefusedError as exc:
            return await self._refused(rendered, target, str(exc))
        except ReloadError as exc:
            metrics.CONFIG_APPLY_ERRORS.inc()
            log.warning("exabgp_reload_retry", error=str(exc))
            self._not_in_force(rendered, None)
            return False
        self._in_force(target, reloaded)
        return True

    async def _refused(self, rendered: Rendered, target: Rendered, complaint: str) -> bool:
        """ExaBGP refused ``target``: leave out the neighbors to blame and apply the rest
        (once: a reduced config refused again keeps the old one in force)."""
        metrics.CONFIG_APPLY_ERRORS.inc()
        log.error("exabgp_config_refused", error=complaint)
        blamed = {}
        if target is rendered:
            blamed = await refused_neighbors(target, self.driver.validate_text, complaint)
        if not blamed:
            self._verdict = (rendered.text, None)
            self._not_in_force(rendered, summary(complaint))
            return True
        for peer, why in sorted(blamed.items()):
            log.error("exabgp_refused_neighbor", peer=peer, error=why)
        self._verdict = (rendered.text, target.without(blamed))
        return await self._apply_config(rendered)

    def _in_force(self, target: Rendered, reloaded: bool | None) -> None:
        if self.applied_text != target.text:
            log.info("exabgp_config_applied", reloaded=reloaded,
                     neighbors=[n.address for n in target.neighbors])  # fmt: skip
        self.applied_text = target.text
        self.rendered = target
        self.config_applied = True
        metrics.CONFIG_APPLIED.set(1)
        self.first_applied.set()

    def _not_in_force(self, rendered: Rendered, refusal: str | None) -> None:
        """``rendered`` is not what ExaBGP runs: /status shows its problems, and the
        neighbors of the config that *is* in force."""
        problems = rendered.problems
        if refusal is not None:
            whole = RenderProblem("", "", f"ExaBGP refuses this config ({refusal}); the "
                                  "previous config stays in force", "error")  # fmt: skip
            problems = (*problems, whole)
        neighbors = self.rendered.neighbors if self.rendered is not None else ()
        self.rendered = Rendered(rendered.text, neighbors, problems)
        self.config_applied = False
        metrics.CONFIG_APPLIED.set(0)

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
            except Exception as exc:  # noqa: BLE001 (logged once per distinct error; polling goes on)
                error = repr(exc)
            if error != self._poll_error and error is not None:
                log.warning("session_poll_failed", error=error)  # once per distinct error
            self._poll_error = error

    # -- metrics ------------------------------------------------------------------------------
    def _update_session_metrics(self, neighbors: list[NeighborStatus]) -> None:
        names = self.peer_names()
        for n in neighbors:
            name = names.get(str(n.peer), str(n.peer))
            PEER_UP.labels(name).set(1 if established(n) else 0)

    def peer_names(self) -> Mapping[str, str]:
        """Peer address → BGPPeer name, for the peers of the last plan."""
        p = self.plan
        return {str(x.peer_address): x.name for x in p.announcements.peers} if p else {}


def _publish_plan_metrics(ann: Announcements, shown: Rendered) -> None:
    """Prefixes per peer, Services per decision, problems of the config /status shows."""
    per_peer = Counter(r.peer_name for r in ann.routes)
    for p in ann.peers:
        metrics.ANNOUNCED_PREFIXES.labels(p.name).set(per_peer.get(p.name, 0))
    decisions = Counter("announce" if d.announce else str(d.reason) for d in ann.decisions)
    for key in set(decisions) | {"announce"}:
        metrics.SERVICES.labels(key).set(decisions.get(key, 0))
    for sev in ("error", "warning"):
        metrics.RENDER_PROBLEMS.labels(sev).set(sum(1 for p in shown.problems if p.severity == sev))
