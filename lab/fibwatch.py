"""A router's FIB recorded over time, and the outages in the record.

Why: "the gap in announcements" during a change (a migration, a restart) is what the router
saw, not what the speakers believe they sent. :class:`FibRecorder` dumps the router's BGP
routes in a tight loop (one netlink dump per sample, ~20 ms for a few hundred routes) and
keeps only the changes; :func:`outages` (pure) turns a record into intervals during which a
prefix had no path at all, or no path through one gateway (one node's announcement).
The sampling interval bounds the precision; :attr:`Record.worst_interval` says what it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from lab.fib import Fib

Gateways = frozenset[str]


@dataclass(frozen=True)
class Change:
    t: float
    prefix: str
    gateways: Gateways


@dataclass
class Record:
    started: float
    initial: dict[str, Gateways]
    changes: list[Change] = field(default_factory=list)
    stopped: float = 0.0
    samples: int = 0
    worst_interval: float = 0.0


def outages(
    record: Record, prefixes: Iterable[str], gateway: str | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Per prefix, the intervals (start, end) it had no path (``gateway`` None) or no path
    via ``gateway``; an outage still open at the end of the record ends there."""

    def down(gws: Gateways) -> bool:
        return not gws if gateway is None else gateway not in gws

    wanted = set(prefixes)
    out: dict[str, list[tuple[float, float]]] = {p: [] for p in wanted}
    since: dict[str, float] = {
        p: record.started for p in wanted if down(record.initial.get(p, frozenset()))
    }
    for ch in record.changes:
        if ch.prefix not in wanted:
            continue
        if down(ch.gateways):
            since.setdefault(ch.prefix, ch.t)
        elif ch.prefix in since:
            out[ch.prefix].append((since.pop(ch.prefix), ch.t))
    for p, t in since.items():
        out[p].append((t, record.stopped))
    return out


def longest(found: Mapping[str, list[tuple[float, float]]]) -> float:
    """The longest single outage in seconds (0 when there was none)."""
    return max((end - start for spans in found.values() for start, end in spans), default=0.0)


def span(found: Mapping[str, list[tuple[float, float]]]) -> tuple[float, float] | None:
    """From the first outage's start to the last one's end, or None."""
    spans = [s for spans in found.values() for s in spans]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


class FibRecorder:
    """Samples a namespace's BGP routes in a thread until :meth:`stop`."""

    def __init__(
        self,
        namespace: str,
        *,
        interval: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.interval, self.clock = namespace, interval, clock
        self._stop = threading.Event()
        self._fib = Fib(namespace)
        now = clock()
        self.record = Record(started=now, initial=self._fib.gateways())
        self._last = dict(self.record.initial)
        self._thread = threading.Thread(target=self._run, name="fib-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rec, prev = self.record, self.record.started
        try:
            while not self._stop.is_set():
                now_routes = self._fib.gateways()
                now = self.clock()
                for p in set(self._last) | set(now_routes):
                    gws = now_routes.get(p, frozenset())
                    if gws != self._last.get(p, frozenset()):
                        rec.changes.append(Change(now, p, gws))
                self._last = now_routes
                rec.samples += 1
                rec.worst_interval = max(rec.worst_interval, now - prev)
                prev = now
                time.sleep(self.interval)
        finally:
            self._fib.close()

    def stop(self) -> Record:
        self._stop.set()
        self._thread.join(10)
        self.record.stopped = self.clock()
        return self.record
