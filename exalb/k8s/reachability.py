"""Whether the API server answers, shared by every informer of one client.

Each informer backs off on its own (jitter, up to 15 s), so after an outage (a node cut off,
the API server restarting) they come back one by one, seconds apart: a speaker that sees the
new legacy ConfigMap but not yet the deletion of the CRD objects it replaces refuses the mix
and reports a stale config until the last informer is back. Measured in the demo: n2 back
on the network, its BGP session up at once, its config watches still asleep in their
backoff when the config changed.

:class:`Reachability` fixes the order: the client reports each connection failure and each
answer; the first answer after a failure wakes every informer waiting out a backoff, so they
all reconnect within a moment of each other.
"""

from __future__ import annotations

import threading


class Reachability:
    """A generation that moves on each time the API server answers after a failure."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._lost = False

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def failed(self) -> None:
        """A request could not reach the API server (connection refused, reset, timed out)."""
        with self._cond:
            self._lost = True

    def answered(self) -> None:
        """The API server answered a request (any status): if it had been lost, wake every
        waiter."""
        with self._cond:
            if not self._lost:
                return
            self._lost = False
            self._generation += 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check their stop condition (an informer being stopped)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float, stop: threading.Event) -> bool:
        """Sleep up to ``timeout`` seconds unless the API server answers again after
        generation ``seen`` (True) or ``stop`` is set."""
        with self._cond:
            return (
                self._cond.wait_for(lambda: self._generation != seen or stop.is_set(), timeout)
                and not stop.is_set()
            )
