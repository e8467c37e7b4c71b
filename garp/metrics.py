"""Prometheus metrics of the garp sidecar.

Same information as MetalLB's ``metallb_layer2_*`` counters, under exalb's own names with
proper ``_total`` suffixes (docs/metallb.md, "Metrics"). Series of an IP are removed when the IP
leaves the desired state, so moved Services leave no stale series behind (MetalLB #1972).
A private registry keeps the sidecar independent of whatever else is imported.

The sidecar serves them on the node's address (host network: Prometheus and the kubelet's
liveness probe dial it), so any host on the node network can connect: the listener is
bounded like every exalb listener (:mod:`exalb.httpd`: a few connections at once, a rate, a
deadline each), where prometheus_client's own server would start a thread per connection
and keep an idle one forever.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, MetricsHandler

from exalb import httpd
from exalb.config.model import IPAddress

_M = TypeVar("_M", Counter, Gauge)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._declare_per_ip(self.registry)
        self._declare_per_sidecar(self.registry)
        self._ips: set[IPAddress] = set()
        self._nodes: set[str] = set()
        # The labelled series of each (metric, IP), created once: labels() formats the IP
        # and takes a lock, which adds up per frame and per IP of a large takeover.
        self._children: dict[tuple[int, IPAddress], Any] = {}

    def _declare_per_ip(self, r: CollectorRegistry) -> None:
        """Series labelled with a Service IP: they go when the IP leaves the desired state
        (:meth:`track_ips`)."""
        self.requests = Counter(
            "exalb_l2_requests_received_total",
            "ARP requests / neighbour solicitations received for an IP this node may answer",
            ["ip"],
            registry=r,
        )
        self.responses = Counter(
            "exalb_l2_responses_sent_total", "ARP replies / NAs sent", ["ip"], registry=r
        )
        self.gratuitous = Counter(
            "exalb_l2_gratuitous_sent_total",
            "Gratuitous ARP / unsolicited NA frames sent",
            ["ip"],
            registry=r,
        )
        self.echo = Counter(
            "exalb_l2_echo_replies_sent_total",
            "ICMP echo replies sent (opt-in)",
            ["ip"],
            registry=r,
        )
        self.owner = Gauge(
            "exalb_l2_answering",
            "1 while this node answers for the IP (owner or data-path takeover)",
            ["ip"],
            registry=r,
        )
        self.takeovers = Counter(
            "exalb_l2_takeovers_total",
            "IPs taken over because every better-ranked candidate fell silent",
            ["ip"],
            registry=r,
        )
        self.conflicts = Counter(
            "exalb_l2_foreign_claims_total",
            "Frames from another MAC claiming an IP this node answers",
            ["ip"],
            registry=r,
        )
        self._per_ip: tuple[Counter | Gauge, ...] = (
            self.requests,
            self.responses,
            self.gratuitous,
            self.echo,
            self.owner,
            self.takeovers,
            self.conflicts,
        )

    def _declare_per_sidecar(self, r: CollectorRegistry) -> None:
        """Series of the sidecar itself: its peers, probe channel, state and loop."""
        self.peer_up = Gauge(
            "exalb_l2_peer_up", "Liveness of a better-ranked candidate", ["node"], registry=r
        )
        self.probes_sent = Counter("exalb_l2_probes_sent_total", "Liveness probes sent", registry=r)
        self.generation = Gauge(
            "exalb_l2_state_generation", "Generation of the applied desired state", registry=r
        )
        self.state_errors = Counter(
            "exalb_l2_state_errors_total", "Desired-state documents rejected", registry=r
        )
        self.probe_rejected = Counter(
            "exalb_l2_probe_rejected_total",
            "Probe-channel datagrams dropped: unknown-address, malformed, unauthenticated, "
            "unknown-node, wrong-address, rate-limited, replay, unsolicited-ack, unverified-bye",
            ["reason"],
            registry=r,
        )
        self.key_errors = Counter(
            "exalb_l2_probe_key_errors_total",
            "Changes of the probe key files refused (the keys in use stay in force)",
            registry=r,
        )
        self.stalls = Counter(
            "exalb_l2_loop_stalls_total",
            "Loop passes that could not listen to peers for over two probe intervals "
            "(the silence of that time is not held against them)",
            registry=r,
        )
        self.loop_errors = Counter(
            "exalb_l2_loop_errors_total",
            "Unexpected errors caught by the sidecar loop (logged; the loop goes on)",
            registry=r,
        )

    def of(self, metric: _M, ip: IPAddress) -> _M:
        """``metric.labels(str(ip))``, cached."""
        key = (id(metric), ip)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(str(ip))
        return child

    def track_ips(self, ips: set[IPAddress]) -> None:
        """Drop the series of IPs no longer in the desired state."""
        for gone in self._ips - ips:
            for m in self._per_ip:
                self._children.pop((id(m), gone), None)
                with contextlib.suppress(KeyError):
                    m.remove(str(gone))
        for new in ips - self._ips:
            self.of(self.owner, new).set(0)
        self._ips = set(ips)

    def set_peers(self, peers: tuple[tuple[str, bool], ...]) -> None:
        names = {n for n, _ in peers}
        for gone in self._nodes - names:
            with contextlib.suppress(KeyError):
                self.peer_up.remove(gone)
        for n, alive in peers:
            self.peer_up.labels(n).set(1 if alive else 0)
        self._nodes = names

    def serve(self, port: int, addr: str) -> httpd.BoundedHTTPServer:
        """Serve the registry on ``addr:port`` from a daemon thread; returns the server."""
        server = httpd.bounded_server(
            addr,
            port,
            MetricsHandler.factory(self.registry),
            listener="garp-metrics",
            limits=httpd.Limits(),
        )
        threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
        return server
