"""Graceful drain: tell the routers to move traffic away, wait, then withdraw (pure).

Withdrawing a route makes a router drop the path the moment the UPDATE arrives; any packet
already hashed to that node before the router has a new forwarding entry is lost, and a node
that goes away right after (reboot, ``kubectl drain``) blackholes what is still in flight.
RFC 8326 (GRACEFUL_SHUTDOWN) does better: first re-announce the same routes with the
well-known community ``65535:0`` (and LOCAL_PREF 0 towards iBGP peers, which the RFC asks
the sender to set), so every router prefers the other nodes' paths while this one still
forwards; then, after a drain time, withdraw. Nobody loses a packet to the withdraw.

Receivers: FRR honours ``65535:0`` from eBGP peers by default (it sets LOCAL_PREF 0 on such
paths itself); over iBGP the LOCAL_PREF 0 exalb sends does it. Other routers need an import
policy that matches ``65535:0`` and sets LOCAL_PREF 0 (the RFC's recommendation); without
it the community is inert and the drain time only delays the withdraw.

When a node drains (:class:`Drain` holds the state; the clock is passed in):

* the speaker stops with ``--withdraw-on-exit`` (pod deleted, rolling upgrade, node
  shutdown): drain, then withdraw, then exit;
* the Node is cordoned (``spec.unschedulable``, which ``kubectl drain`` sets first) and has
  opted in: annotation ``exalb.io/drain-on-cordon: "true"``, or the speaker's
  ``--drain-on-cordon`` default that ``"false"`` overrides per node. The routes come back as
  soon as the node is uncordoned. Opt-in, because MetalLB keeps announcing from a cordoned
  node (cordon only stops new pods, and a Cluster-policy node still forwards fine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from exalb.views import NodeView
from speaker.decisions import Route

GRACEFUL_SHUTDOWN = "65535:0"  # RFC 8326, well-known community
GSHUT_LOCAL_PREF = 0

Phase = Literal["announce", "gshut", "withdrawn"]
DrainReason = Literal["stopping", "cordoned"]


def graceful_shutdown(routes: Iterable[Route], ibgp_peers: Collection[str]) -> frozenset[Route]:
    """Each route with GRACEFUL_SHUTDOWN added, and LOCAL_PREF 0 when its peer (by name) is
    iBGP; over eBGP LOCAL_PREF is not sent (the receiver would drop it)."""
    out = []
    for r in routes:
        communities = tuple(sorted({*r.communities, GRACEFUL_SHUTDOWN}))
        local_pref = GSHUT_LOCAL_PREF if r.peer_name in ibgp_peers else r.local_pref
        out.append(dataclasses.replace(r, communities=communities, local_pref=local_pref))
    return frozenset(out)


def cordon_drain_requested(node: NodeView, default: bool) -> bool:
    """The node is cordoned and has opted in (its annotation wins over ``default``)."""
    if not node.unschedulable:
        return False
    return default if node.drain_on_cordon is None else node.drain_on_cordon


@dataclass
class Drain:
    """One node's drain: since when, why, and which phase that makes at a given time."""

    seconds: float  # how long GRACEFUL_SHUTDOWN is announced before the withdraw
    started: float | None = None
    reason: DrainReason | None = None

    def start(self, now: float, reason: DrainReason) -> bool:
        """Start draining (a drain already running keeps its start); True if it started."""
        if self.started is not None:
            if reason == "stopping":
                self.reason = reason  # stopping outranks a cordon: it will not be undone
            return False
        self.started, self.reason = now, reason
        return True

    def cancel(self) -> None:
        self.started = self.reason = None

    def phase(self, now: float) -> Phase:
        if self.started is None:
            return "announce"
        return "gshut" if now - self.started < self.seconds else "withdrawn"

    def remaining(self, now: float) -> float:
        """Seconds until the withdraw (0 when not draining or already withdrawn)."""
        if self.started is None:
            return 0.0
        return max(0.0, self.seconds - (now - self.started))
