"""Runs :mod:`speaker.proxy_hold`: keeps its state, asks kube-proxy, and wakes the loop.

:meth:`ProxyGate.apply` is called from the recompute's worker thread and :meth:`run` is a
task on the event loop, so the state they share sits behind a lock. A check is one HTTP/1.0
GET to kube-proxy's health-check port on this node's address (where kube-proxy listens with
any ``nodePortAddresses``), read to at most :data:`speaker.proxy_hold.MAX_ANSWER` bytes
within ``timeout``: the answer is judged as hostile input by
:func:`speaker.proxy_hold.verdict_of`. While paths are held the checks repeat every
``interval``; a verdict that releases one, or a hold that runs out, wakes the loop
(``on_change``), which then decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog

from exalb.views import NodeView, ServiceView
from speaker import metrics
from speaker.decisions import Announcements
from speaker.proxy_hold import (
    MAX_ANSWER,
    Check,
    HoldResult,
    HoldState,
    Verdict,
    hold,
    outcome,
    verdict_of,
)

log = structlog.get_logger("exalb.speaker")

#: Health checks in flight at once (a Deployment scaled over many nodes, many Services).
MAX_CONCURRENT_CHECKS = 32

Probe = Callable[[Check, float], Awaitable[Verdict]]


async def ask_kube_proxy(check: Check, timeout: float) -> Verdict:
    """One health check; any failure to get kube-proxy's answer is ``UNAVAILABLE``."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(check.host, check.port)
            writer.write(f"GET / HTTP/1.0\r\nHost: {check.host}\r\n\r\n".encode())
            await writer.drain()
            answer = b""
            while len(answer) < MAX_ANSWER and (chunk := await reader.read(MAX_ANSWER)):
                answer += chunk
    except ConnectionRefusedError:
        return Verdict.REFUSED
    except (OSError, TimeoutError):
        return Verdict.UNAVAILABLE
    finally:
        if writer is not None:
            writer.close()
    return verdict_of(answer, check.service)


class ProxyGate:
    """Holds new Local paths until kube-proxy serves them (:mod:`speaker.proxy_hold`)."""

    def __init__(
        self,
        max_hold: float,
        *,
        probe: Probe = ask_kube_proxy,
        interval: float = 0.1,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_hold = max_hold
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._last = HoldResult(Announcements(), HoldState())  # the last computation's hold
        self._verdicts: dict[str, Verdict] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)

    def apply(
        self, ann: Announcements, services: Iterable[ServiceView], node: NodeView
    ) -> Announcements:
        """The decisions with new, not yet served Local paths held (worker thread)."""
        with self._lock:
            result = hold(ann, services, node, self._last.state, self._verdicts,
                          self.clock(), self.max_hold)  # fmt: skip
            self._last = result
            self._verdicts = {s: v for s in result.held if (v := self._verdicts.get(s))}
        for service, verdict, seconds in result.released:
            metrics.PROXY_HOLDS.labels(outcome(verdict)).inc()
            metrics.PROXY_HOLD_SECONDS.observe(seconds)
            if verdict is None:
                log.warning("proxy_hold_expired", service=service, seconds=self.max_hold)
        metrics.PROXY_HELD.set(len(result.held))
        if result.checks:
            self._wake_up()
        return result.announcements

    def _wake_up(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop shutting down
                loop.call_soon_threadsafe(self._wake.set)

    async def _bounded(self, check: Check) -> Verdict:
        async with self._slots:
            return await self.probe(check, self.timeout)

    async def run(self) -> None:
        """Check the held paths every ``interval`` while there are any."""
        self._loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                checks, deadline = self._last.checks, self._last.deadline
            if not checks:
                self._wake.clear()
                await self._wake.wait()
                continue
            verdicts = await asyncio.gather(*(self._bounded(c) for c in checks))
            changed = False
            with self._lock:
                for check, verdict in zip(checks, verdicts, strict=True):
                    if check in self._last.checks:  # a new verdict can release or re-time it
                        changed |= verdict is not self._verdicts.get(check.service)
                        self._verdicts[check.service] = verdict
            # a hold ran out: the loop decides again (and the next hold has a later deadline)
            changed |= deadline is not None and self.clock() >= deadline
            if changed:
                self.on_change()
            await asyncio.sleep(self.interval)
