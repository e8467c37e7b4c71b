"""L2 mode inside the speaker: elect every L2 IP, hand the result to the garp sidecar.

The :class:`~speaker.announcer.Announcer` for L2. Why the election runs in the speaker and
not in the sidecar: the sidecar (:mod:`garp`) has no Kubernetes access (design: it gets
``NET_RAW`` and nothing else). The speaker already holds every input of MetalLB's election
(config, Services, EndpointSlices, *all* Nodes), so on every recompute it runs the pure
:func:`speaker.l2.election.elect` (through :class:`speaker.l2.election_cache.ElectionCache`)
and :class:`speaker.l2.publisher.StatePublisher` writes the sidecar's document when it
changed. The loop applies L2 before BGP and independently of it, so a slow ``reload`` never
delays an ARP hand-over and an absent or broken ExaBGP does not stop L2.

BGP and L2 are independent decisions, as in MetalLB: a Service whose pool has both a
BGPAdvertisement and an L2Advertisement is routed by every eligible node *and* answered on
the segment by the elected one; nothing here reads or changes the BGP result.

Side effects, all off the speaker's loop thread:

* metric ``exalb_speaker_l2_owned{ip}`` (1 = this node is the elected owner), series
  removed when the IP is no longer L2-advertised;
* Event ``nodeAssigned`` "announcing from node <node> with protocol layer2" on a Service when
  this node *becomes* its owner (only the new owner emits it). The recorder de-duplicates
  repeats; losing ownership makes it forget the Service, so moving back emits again. Events
  go through a one-thread executor so a slow API server never delays the ARP hand-over.

BGP announcements emit no ``nodeAssigned`` here: every eligible node announces, so a fleet
would write (nodes times Services) events at start-up for information ``/status`` already gives.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from exalb.views import NodeView
from speaker import event_sink, metrics
from speaker.announcer import Inputs
from speaker.l2.election import IPElection
from speaker.l2.election_cache import ElectionCache
from speaker.l2.publisher import StatePublisher
from speaker.status import L2View

log = structlog.get_logger("exalb.speaker")

NODE_ASSIGNED = "nodeAssigned"
ANNOUNCE_FAILED = "announceFailed"


def _local_interfaces() -> set[str]:
    """Interface names of the network namespace the speaker runs in (the node's)."""
    return {name for _, name in socket.if_nameindex()}


class EventSink(event_sink.EventSink, Protocol):
    """The recorder, and its ``forget`` (a Service's de-duplication ends with the Service)."""

    def forget(self, obj: dict[str, Any]) -> None: ...


def owned_services(elections: Iterable[IPElection], node: str) -> frozenset[str]:
    """Services ``node`` owns at least one L2 IP of (a refused sharer is not owned)."""
    return frozenset(
        s for e in elections if e.owner == node for s in e.services if e.reason_for(node, s) is None
    )


@dataclass(frozen=True)
class L2Plan:
    """Every L2 IP of this speaker's ``loadBalancerClass`` with its ranked candidates, and
    the Nodes (their addresses are the sidecars' probe targets)."""

    elections: tuple[IPElection, ...]
    nodes: tuple[NodeView, ...]


class L2Announcer:
    """One node's L2 wiring; see the module docstring."""

    name = "layer2"

    def __init__(
        self,
        node: str,
        state_file: str | Path,
        *,
        events: EventSink | None = None,
        service_ref: Callable[[str], dict[str, Any] | None] = lambda _k: None,
        ping: bool = False,
        local_interfaces: Callable[[], set[str]] = _local_interfaces,
    ) -> None:
        self.local_interfaces = local_interfaces
        self.node = node
        self.publisher = StatePublisher(state_file, node, ping=ping)
        self.cache = ElectionCache()
        self.events = events
        self.service_ref = service_ref
        self.elections: tuple[IPElection, ...] = ()
        self._owned: frozenset[str] = frozenset()
        self._ips: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l2-events")

    # -- Announcer ----------------------------------------------------------------------------
    def decide(self, inputs: Inputs) -> L2Plan:
        """Pure (cached): every L2 IP of this speaker's ``loadBalancerClass``."""
        snap, options = inputs.snapshot, inputs.options
        mine = [s for s in snap.services if s.load_balancer_class == options.load_balancer_class]
        elections = self.cache.elect(
            inputs.config,
            mine,
            snap.endpoints,
            snap.nodes,
            ignore_exclude_lb=options.ignore_exclude_lb,
        )
        return L2Plan(elections, snap.nodes)

    async def apply(self, plan: L2Plan) -> bool:
        """Write the sidecar's state (off the loop thread); False when the file could not
        be written (the sidecar keeps the previous state; the loop retries)."""
        try:
            await asyncio.to_thread(self.publish, plan.elections, plan.nodes)
        except OSError as exc:
            log.error("l2_state_write_failed", error=str(exc))
            return False
        return True

    async def run(self) -> None:
        """Nothing runs in the background: the sidecar does the data-path work."""

    async def stop(self, *, withdraw: bool) -> None:
        """The state file stays (the sidecar keeps answering for the last known state: the
        IP contract outlives the speaker process; a leaving node's sidecar says BYE itself)."""
        self.close()

    def ready(self) -> bool:
        return True

    # -- effects ------------------------------------------------------------------------------
    def publish(self, elections: tuple[IPElection, ...], nodes: tuple[NodeView, ...]) -> None:
        """Write the sidecar's state (if changed), metrics, events. Raises ``OSError`` when
        the file cannot be written; everything else has been done by then."""
        self.elections = elections
        self._metrics(elections)
        self._events(owned_services(elections, self.node))
        if self.publisher.publish(elections, nodes):
            metrics.L2_STATE_WRITES.inc()
            metrics.L2_STATE_GENERATION.set(self.publisher.generation)

    def view(self) -> L2View:
        """The ``/status`` input; reads the sidecar's status file (called per request)."""
        return L2View(
            state_file=str(self.publisher.path),
            generation=self.publisher.generation if self.publisher.published else None,
            elections=self.elections,
            sidecar=self.publisher.sidecar_status(),
        )

    def drain_events(self, timeout: float = 10.0) -> None:
        """Wait until the events submitted so far have been sent (one worker: FIFO)."""
        self._pool.submit(lambda: None).result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _metrics(self, elections: tuple[IPElection, ...]) -> None:
        ips = {str(e.ip): e.owner == self.node for e in elections}
        for ip in self._ips - set(ips):
            metrics.L2_OWNED.remove(ip)
        for ip, owned in ips.items():
            metrics.L2_OWNED.labels(ip).set(1 if owned else 0)
        self._ips = set(ips)

    def _events(self, owned: frozenset[str]) -> None:
        gained, lost = owned - self._owned, self._owned - owned
        self._owned = owned
        if self.events is None:
            return
        for key in sorted(gained | lost):
            ref = self.service_ref(key)
            if ref is None:
                continue  # deleted meanwhile: nothing to attach an event to
            if key in gained:
                log.info("l2_owner", service=key, node=self.node)
                self._pool.submit(self._record, ref, self._missing_interfaces(key))
            else:
                log.info("l2_not_owner", service=key, node=self.node)
                self._pool.submit(self.events.forget, ref)

    def _missing_interfaces(self, service: str) -> tuple[str, ...]:
        """Interfaces the advertisements name for this node that the node does not have,
        when none of them exists (then the sidecar cannot answer anywhere)."""
        wanted: set[str] = set()
        for e in self.elections:
            if e.owner == self.node and service in e.services:
                wanted.update(dict(e.interfaces).get(self.node, ()))
        if not wanted:
            return ()  # () = every interface allowed
        present = self.local_interfaces()
        return () if wanted & present else tuple(sorted(wanted))

    def _record(self, ref: dict[str, Any], missing: tuple[str, ...] = ()) -> None:
        assert self.events is not None
        message = f"announcing from node {self.node} with protocol layer2"
        self.events.record(ref, NODE_ASSIGNED, message)
        if missing:
            self.events.record(
                ref,
                ANNOUNCE_FAILED,
                f"interfaces {', '.join(missing)} from the L2Advertisement do not exist on "
                f"node {self.node}",
                warning=True,
            )
