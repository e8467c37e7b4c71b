"""The speaker's end of the L2 channel: write the sidecar's desired state, read its status.

Why a separate, tiny adapter: the election (:mod:`speaker.l2.election`) and the document
(:mod:`exalb.contracts.l2_state`) are pure and shared with the sidecar; only this module touches the
files in the pod's shared emptyDir (``--l2-state``, default in the chart
``/run/exalb/l2-state.json``; the sidecar writes ``<state>.status`` next to it).

Rules it keeps:

* **Write only on change.** Every recompute builds the document, but the file is rewritten
  (atomically, :func:`exalb.filechannel.write_atomic`) only when its content other than
  ``generation`` changed, and only then does ``generation`` increase. An endpoint flapping on
  another Service, or a resync, costs the sidecar nothing.
* **Generations never go backwards across speaker restarts.** The publisher starts from the
  generation of the file already there (the emptyDir outlives the container), and a
  restarted speaker that computes the same state writes nothing at all, so the sidecar does
  not even notice the restart.
* **A speaker that exits leaves the file in place**: the sidecar keeps answering for the
  last known state (the IP contract outlives the speaker process; see ``state.py``).

The candidates' ``nodeIP`` (the address the sidecars probe each other on) is the Node's
first address of the IP's family, which is its **InternalIP** (``exalb.views.node_view``
orders InternalIPs before ExternalIPs); a node with only an ExternalIP uses that.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from exalb.config.model import IPAddress
from exalb.contracts.l2_state import (
    Candidate,
    DesiredState,
    IPState,
    StateError,
    Status,
    decode,
    decode_status,
    encode,
)
from exalb.filechannel import write_atomic
from exalb.views import NodeView
from speaker.l2.election import IPElection

log = structlog.get_logger("exalb.speaker")


# The sidecar rewrites its status every second; a report older than this is from a dead one.
SIDECAR_STALE_AFTER = 3.0


class StatePublisher:
    """Owns ``path`` (the desired state) for ``node``; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        node: str,
        *,
        ping: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._wall = wall
        self.status_path = Path(f"{self.path}.status")
        self.node = node
        self.ping = ping
        self.writes = 0
        self.generation = 0
        self._written: DesiredState | None = None  # with generation 0, for comparison
        self._status_error: str | None = None
        self._adopt_existing()

    def _adopt_existing(self) -> None:
        try:
            old = decode(self.path.read_bytes())
        except (OSError, StateError):
            return
        self.generation = old.generation
        if old.node == self.node:
            self._written = dataclasses.replace(old, generation=0)

    @property
    def published(self) -> bool:
        """True once a state for this node is in the file (written now or adopted)."""
        return self._written is not None

    def publish(self, elections: Iterable[IPElection], nodes: Sequence[NodeView]) -> bool:
        """Write the document for these elections if it changed; True when written.

        Raises ``OSError`` when the file cannot be written (the caller retries later; the
        sidecar keeps the previous state meanwhile).
        """
        desired = desired_state(self.node, elections, nodes, generation=0, ping=self.ping)
        if desired == self._written:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        generation = self.generation + 1
        write_atomic(self.path, encode(dataclasses.replace(desired, generation=generation)))
        self.generation = generation
        self._written = desired
        self.writes += 1
        log.info(
            "l2_state_written",
            path=str(self.path),
            generation=generation,
            owned=[str(ip) for ip in desired.owned],
            candidate_for=len(desired.ips),
        )
        return True

    def sidecar_status(self) -> Status | None:
        """What the sidecar answers right now; None when it has not reported (yet), or when
        its report is older than :data:`SIDECAR_STALE_AFTER` (it rewrites it every second:
        an old one was left by a sidecar that died and must not read as "answering").
        A malformed report reads as "not reported" too, logged once per distinct error."""
        try:
            status = decode_status(self.status_path.read_bytes())
        except OSError:
            return None
        except StateError as exc:
            if str(exc) != self._status_error:
                self._status_error = str(exc)
                log.warning("l2_sidecar_status_unreadable", path=str(self.status_path),
                            error=str(exc))  # fmt: skip
            return None
        self._status_error = None
        if status.written and self._wall() - status.written > SIDECAR_STALE_AFTER:
            return None
        return status


def desired_state(
    node: str,
    elections: Iterable[IPElection],
    nodes: Sequence[NodeView],
    *,
    generation: int,
    ping: bool = False,
) -> DesiredState:
    """The document for ``node``: every IP where it is a candidate, with probe addresses.

    A candidate's probe address is its first Node address of the IP's family (segment
    liveness for that family), else its first address of any family, else ``None``.
    """
    addrs = {n.name: n.addresses for n in nodes}

    def node_ip(name: str, family: int) -> IPAddress | None:
        mine = addrs.get(name, ())
        same = [a for a in mine if a.version == family]
        pick = same or list(mine)
        return pick[0] if pick else None

    entries = tuple(
        IPState(
            ip=e.ip,
            candidates=tuple(Candidate(c, node_ip(c, e.ip.version)) for c in e.candidates),
            services=e.services,
            interfaces=e.interfaces_of(node),
        )
        for e in elections
        if e.rank(node) is not None
    )
    return DesiredState(node=node, generation=generation, ips=entries, ping=ping)
