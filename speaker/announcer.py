"""The one interface every announcing protocol of the speaker implements (BGP, L2).

Why: the speaker's order of operations (nothing before the caches are synced, debounce,
parse the config once per change, decide in a worker thread, apply, retry what could not be
applied, stop) is the same whatever the protocol; what differs is *what* a protocol decides
from the cluster and *how* it puts that into force. MetalLB's speaker has the same split
(one ``Protocol`` per mode). So :mod:`speaker.app` owns the order and knows nothing of
ExaBGP or ARP, and each protocol owns its decision, its side effects and its background
work:

* :class:`speaker.bgp.BGPAnnouncer` decides routes per peer and renders ExaBGP's config;
  applying means ``reload`` when a peer changed and handing the routes to the driver.
* :class:`speaker.l2.announcer.L2Announcer` runs the L2 election; applying means writing the
  garp sidecar's desired state, metrics and ``nodeAssigned`` events.

A plan is whatever the protocol's ``decide`` returns (an immutable value); the loop only
carries it from ``decide`` (worker thread) to ``apply`` (event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from exalb.config.model import Config
from exalb.views import NodeView
from speaker.cluster_store import Snapshot
from speaker.decisions import Options

Plan = TypeVar("Plan")


@dataclass(frozen=True)
class Inputs:
    """What every protocol decides on: one consistent snapshot and the config in force."""

    config: Config
    node: NodeView  # this speaker's node
    snapshot: Snapshot
    options: Options


class Announcer(Protocol[Plan]):
    """One announcing protocol; see the module docstring."""

    @property
    def name(self) -> str:
        """``bgp`` or ``layer2`` (MetalLB's protocol names), for logs."""
        ...

    def decide(self, inputs: Inputs) -> Plan:
        """What this node should announce (runs in a worker thread; no event-loop calls)."""
        ...

    async def apply(self, plan: Plan) -> bool:
        """Put ``plan`` into force; False when part of it must be retried later."""
        ...

    async def run(self) -> None:
        """Background work until :meth:`stop` (e.g. the ExaBGP driver); may return at once."""
        ...

    async def stop(self, *, withdraw: bool) -> None:
        """Stop; ``withdraw`` = the node leaves (take routes back), else keep them."""
        ...

    def ready(self) -> bool:
        """True once this protocol's first plan is in force (``/readyz``)."""
        ...
