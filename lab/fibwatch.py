"""A router's FIB recorded over time, and the outages in the record.

Why: "the gap in announcements" during a change (a migration, a restart) is what the router
saw, not what the speakers believe they sent. :class:`FibRecorder` has ``ip monitor``
listen to the kernel's route notifications in the router's namespace and stamp each one (a
busy test process cannot delay them), and keeps each BGP prefix's next hops after every
change; :func:`outages`
(pure) turns a record into the intervals during which a prefix had no path at all, or no
path through one gateway (one node's announcement).
Times are CLOCK_MONOTONIC, the same clock as the test's ``time.monotonic()``.
:class:`MinNexthops` is the lighter question "did this prefix ever have fewer paths?",
answered by polling the FIB in a thread.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from lab.fib import Fib
from lab.runner import Lab

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
    samples: int = 0  # route notifications of BGP routes


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


def parse_monitor(lines: Iterable[str], offset: float) -> list[Change]:
    """``ip -o -ts monitor route`` lines -> changes of BGP routes; ``offset`` turns the wall
    clock timestamps into CLOCK_MONOTONIC (``time.time() - time.monotonic()``)."""
    out = []
    for line in lines:
        m = _MONITOR.match(line)
        if not m or " proto bgp " not in f"{line} ":
            continue
        stamp = datetime.fromisoformat(m.group(1)).timestamp()
        prefix = m.group(3)
        if "/" not in prefix:
            prefix += "/128" if ":" in prefix else "/32"
        gateways = frozenset() if m.group(2) else frozenset(_VIA.findall(line))
        out.append(Change(stamp - offset, prefix, gateways))
    return out


_MONITOR = re.compile(r"^\[([0-9T:.\-]+)\] (Deleted )?(\S+) ")
_VIA = re.compile(r"\bvia (?:inet6? )?([0-9a-fA-F.:]+)")


class FibRecorder:
    """Records a namespace's BGP route changes until :meth:`stop`.

    ``ip -o -ts monitor route`` does the listening: it reads the kernel's notifications as
    they come and stamps each one, whatever the test process is busy with."""

    def __init__(self, namespace: str, settle: float = 0.3) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(
            ["ip", "-n", namespace, "-o", "-ts", "monitor", "route"], stdout=self._out
        )
        time.sleep(settle)  # subscribed before the first dump: nothing falls in between
        fib = Fib(namespace)
        try:
            initial = fib.gateways()
        finally:
            fib.close()
        self._offset = time.time() - time.monotonic()
        self.record = Record(started=time.monotonic(), initial=initial)

    def stop(self) -> Record:
        time.sleep(0.2)  # the last notifications printed
        self._proc.terminate()
        self._proc.wait(10)
        self._out.seek(0)
        rec = self.record
        rec.changes = [c for c in parse_monitor(self._out, self._offset) if c.t >= rec.started]
        rec.samples = len(rec.changes)
        rec.stopped = time.monotonic()
        self._out.close()
        return rec


class MinNexthops:
    """Samples a router's FIB for a prefix in the background (every ``interval`` seconds);
    remembers the fewest paths seen."""

    def __init__(self, lab: Lab, prefix: str, *, router: str = "r1", interval: float = 0.002):
        self.lab, self.prefix, self.router, self.interval = lab, prefix, router, interval
        self.min = 99
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fib = Fib(self.lab.ns(self.router))  # its own netlink socket: not shared across threads
        try:
            while not self._stop.is_set():
                route = fib.route(self.prefix)
                self.min = min(self.min, len(route.nexthops) if route else 0)
                self.samples += 1
                time.sleep(self.interval)
        finally:
            fib.close()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.min
