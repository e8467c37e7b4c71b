"""A BGP announcer's drain over time: state, timer and metric (:mod:`speaker.drain` is the
pure part).

Kept apart from :class:`speaker.bgp.BGPAnnouncer` so that class holds only the order of
operations: :class:`DrainControl` knows which phase the drain is in (by the injected clock),
shapes the routes the driver gets accordingly, withdraws a cordoned node's routes when its
drain time is up (a timer: no recompute is due then) and keeps ``exalb_speaker_draining``
true.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import structlog

from exalb.config.model import Peer
from exalb.contracts.speaker_status import DrainSection
from speaker import metrics
from speaker.decisions import Route
from speaker.drain import Drain, DrainReason, graceful_shutdown

log = structlog.get_logger("exalb.speaker")


class DrainControl:
    """See the module docstring; ``on_expired`` runs when a cordon drain's time is up."""

    def __init__(
        self, seconds: float, *, clock: Callable[[], float], on_expired: Callable[[], None]
    ) -> None:
        self.state = Drain(seconds)
        self.clock = clock
        self._on_expired = on_expired
        self._timer: asyncio.TimerHandle | None = None

    @property
    def seconds(self) -> float:
        return self.state.seconds

    @property
    def reason(self) -> DrainReason | None:
        return self.state.reason

    def remaining(self) -> float:
        return self.state.remaining(self.clock())

    def shape(self, routes: frozenset[Route], peers: Iterable[Peer]) -> frozenset[Route]:
        """``routes`` as the drain phase wants them: as they are, with GRACEFUL_SHUTDOWN, or
        none once withdrawn."""
        phase = self.state.phase(self.clock())
        if phase == "gshut":
            routes = graceful_shutdown(routes, {p.name for p in peers if p.is_ibgp})
        elif phase == "withdrawn":
            routes = frozenset()
        for reason in ("stopping", "cordoned"):
            value = 0 if reason != self.state.reason else 1 if phase == "gshut" else 2
            metrics.DRAINING.labels(reason).set(value)
        return routes

    def start(self, reason: DrainReason) -> None:
        now = self.clock()
        if not self.state.start(now, reason):
            return
        log.info("drain_started", reason=reason, seconds=self.state.seconds)
        if reason == "cordoned":  # the withdraw comes later, without a recompute
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.state.remaining(now), self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._on_expired()

    def cancel(self) -> None:
        """The drain is over (an uncordoned node): announce normally again."""
        self.state.cancel()
        self.stop_timer()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def status(self) -> DrainSection | None:
        """For ``/status``: the drain in progress, if any."""
        if self.state.started is None or self.state.reason is None:
            return None
        now = self.clock()
        return {
            "reason": self.state.reason,
            "phase": self.state.phase(now),
            "seconds": self.state.seconds,
            "withdrawIn": round(self.state.remaining(now), 3),
        }
