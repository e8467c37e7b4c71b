"""What ``/status`` answers from: a wire view refreshed at most every ``interval`` seconds,
and the encoded documents of the last ``interval``.

Why: reading ExaBGP's wire view (``show neighbor`` + ``show adj-rib out``) goes through the
one bridge connection, under the driver's lock that route changes need too. When every
``/status`` request read it, 100 concurrent requests queued 200 ``show`` commands ahead of
a route change and delayed it from 0.01 s to 5 s. Now:

* **the speaker's loop reads the wire, not the readers.** A reader that finds the view
  older than ``interval`` asks for a refresh and waits (at most ``wait`` seconds) for it;
  the loop refreshes once for all of them, and never more often than every ``interval``.
  However many readers come, ExaBGP sees at most one pair of ``show`` commands per
  interval; a route change waits at most for that pair;
* **one document is built at a time**, and an encoded document is reused for the same
  query during ``interval`` as long as nothing the speaker decided changed (the key holds
  a version of that), so readers do not compete with the loop for the interpreter by
  building the same JSON hundreds of times, and still see their own changes at once.

A view older than ``interval`` (ExaBGP slow, the loop stopped) is still answered, with its
age (``exabgp.wireAgeSeconds`` in the document) and the reason. Thread-safety: :meth:`get`
and :class:`DocumentCache` are called from the HTTP server's threads, :meth:`WireCache.run`
runs in the speaker's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from speaker.status import WireView


@dataclass(frozen=True)
class CachedWire:
    view: WireView
    age: float | None  # seconds since it was read; None: never read


class WireCache:
    """The wire view, refreshed on demand by the loop at most every ``interval`` seconds."""

    def __init__(
        self,
        read: Callable[[], Awaitable[WireView]],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.interval = interval
        self._clock = clock
        self._cond = threading.Condition()
        self._view: WireView | None = None
        self._read_at = 0.0
        self._generation = 0
        self._demand = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.refreshes = 0

    async def run(self) -> None:
        """In the speaker's loop: refresh when asked, at most every ``interval``."""
        self._loop = asyncio.get_running_loop()
        while True:
            await self._demand.wait()
            if self._view is not None:
                await asyncio.sleep(max(0.0, self._read_at + self.interval - self._clock()))
            self._demand.clear()
            try:
                view = await self._read()
            except Exception as exc:  # noqa: BLE001 (the reader gets the error in the document)
                view = WireView(error=f"status read failed: {exc!r}")
            with self._cond:
                self._view, self._read_at = view, self._clock()
                self._generation += 1
                self.refreshes += 1
                self._cond.notify_all()

    def get(self, wait: float) -> CachedWire:
        """The view, refreshed first if older than ``interval`` (waiting up to ``wait``)."""
        with self._cond:
            if self._view is not None and self._clock() - self._read_at <= self.interval:
                return CachedWire(self._view, self._clock() - self._read_at)
            generation = self._generation
        asked = self._ask()
        with self._cond:
            if asked:  # only a running refresher can answer; without one, waiting is in vain
                self._cond.wait_for(lambda: self._generation != generation, timeout=wait)
            if self._view is None:
                return CachedWire(WireView(error="ExaBGP's wire view was not read yet"), None)
            age = self._clock() - self._read_at
            view = self._view
            if self._generation == generation:  # no refresh in time: say how old it is
                view = WireView(
                    view.neighbors, view.adj_rib_out,
                    f"wire view is {age:.1f}s old: a refresh did not finish within {wait}s"
                    + (f" ({view.error})" if view.error else ""),
                    view.connected,
                )  # fmt: skip
            return CachedWire(view, age)

    def _ask(self) -> bool:
        """Ask the refresher for a new view; False when no refresher runs."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self._demand.set)
        except RuntimeError:  # loop shutting down
            return False
        return True


class DocumentCache:
    """Encoded documents by query, each reused for ``ttl`` seconds; one build at a time."""

    def __init__(
        self, *, ttl: float = 1.0, size: int = 32, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._docs: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self.builds = 0

    def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        with self._lock:  # readers of the same query wait for one build, then share it
            hit = self._docs.get(key)
            if hit is not None and self._clock() - hit[0] <= self.ttl:
                self._docs.move_to_end(key)
                return hit[1]
            body = build()
            self.builds += 1
            self._docs[key] = (self._clock(), body)
            self._docs.move_to_end(key)
            while len(self._docs) > self.size:
                self._docs.popitem(last=False)
            return body
