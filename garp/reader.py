"""Reads and parses the desired-state file on a thread of its own.

Why not in the loop: a state with thousands of IPs takes tens of milliseconds to parse (a
loaded node: hundreds), and every speaker rewrites its file at the same moment. A loop
busy that long stops answering its peers, which then see it as dead and take its IPs over
(false takeover), while it sees them the same way. On a thread the parse shares the CPU
with the loop instead of stopping it (the interpreter hands the loop the lock within a few
milliseconds of a datagram arriving), and so does indexing it for the engine
(:func:`garp.failover.index_state`); the loop then only swaps the finished index in.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

from exalb.contracts.l2_state import StateError, decode
from exalb.filechannel import FileWatcher
from garp import log
from garp.failover import StateIndex, index_state

Result = StateIndex | StateError


class StateReader:
    def __init__(
        self, path: str | os.PathLike[str], interval: float, ready: Callable[[], None]
    ) -> None:
        self.watcher = FileWatcher(path)
        self.interval = interval
        self._ready = ready
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log = log.get_logger()

    def read_once(self) -> Result | None:
        """The file's document if it changed since the last read (None: unchanged/absent)."""
        data = self.watcher.poll()
        if data is None:
            return None
        try:
            return index_state(decode(data))
        except StateError as exc:
            return exc

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="state-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def take(self) -> list[Result]:
        """Results parsed since the last call, oldest first."""
        out: list[Result] = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.read_once()
                if result is not None:
                    self._results.put(result)
                    self._ready()
            except Exception:  # e.g. a read error: log, keep the state in force, retry
                self.log.exception("state reader error, retrying")
            self._stop.wait(self.interval)
