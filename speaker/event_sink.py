"""What the speaker's event writers need of :class:`exalb.k8s.events.EventRecorder`.

A protocol, so the BGP peer events (:mod:`speaker.peer_events`) and the L2 ``nodeAssigned``
events (:mod:`speaker.l2.announcer`) are unit-tested with a fake and never import the
Kubernetes client.
"""

from __future__ import annotations

from typing import Any, Protocol


class EventSink(Protocol):
    """What :class:`exalb.k8s.events.EventRecorder` offers (and tests fake)."""

    def record(
        self,
        obj: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        dedupe: bool = True,
    ) -> bool: ...
