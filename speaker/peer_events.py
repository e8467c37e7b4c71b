"""Warning events on BGPPeers for what this node's speaker cannot do with them.

Why events (and not only ``/status`` and logs): whoever edits a BGPPeer looks at it with
``kubectl describe``. A neighbor ExaBGP refuses and a password Secret that cannot be read
(its last known password stays in use) are news about that object, so the speaker of every
node concerned says so there, once per distinct message (the render problems that carry an
``event`` reason, :class:`speaker.exabgp.render.RenderProblem`). A legacy ConfigMap config
has no BGPPeer objects; the event then goes on the ConfigMap.

Recording is an API call: it runs on a worker thread so the event loop (the driver's acks,
route updates) never waits for the API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from speaker.event_sink import EventSink
from speaker.exabgp.render import RenderProblem

log = structlog.get_logger("exalb.speaker")


class PeerEvents:
    """Posts each new (peer, reason, message) once; a problem that went away and comes
    back is posted again."""

    def __init__(
        self,
        sink: EventSink | None,
        peer_ref: Callable[[str], dict[str, Any] | None],
        node: str,
    ) -> None:
        self.sink = sink
        self.peer_ref = peer_ref
        self.node = node
        self._posted: set[tuple[str, str, str]] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgp-events")

    def update(self, problems: Iterable[RenderProblem]) -> None:
        current = {(p.peer, p.event, str(p)) for p in problems if p.event and p.peer}
        if self.sink is not None:
            for peer, reason, message in sorted(current - self._posted):
                self._pool.submit(self._record, peer, reason, message)
        self._posted = current

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the events submitted so far have been sent (tests)."""
        self._pool.submit(lambda: None).result(timeout)

    def _record(self, peer: str, reason: str, message: str) -> None:
        assert self.sink is not None
        ref = self.peer_ref(peer)
        if ref is None:
            log.info("peer_event_without_object", peer=peer, reason=reason)
            return
        self.sink.record(ref, reason, f"node {self.node}: {message}", warning=True)
