"""The L2 ``elect`` with a per-Service cache: one changed Service costs one election.

Why: the speaker re-elects on every Service, EndpointSlice or Node change; the election's
context is config, *all* Nodes and the exclude flag, and any change of those clears the
cache (like :class:`speaker.decision_cache.DecisionCache` for BGP). An IP shared by several
Services (``allow-shared-ip``) needs one merged ranking over all of them, so such IPs are
re-elected from their Services on every call (rare, and still cheap); every other IP is the
Service's own result. The result is exactly :func:`speaker.l2.election.elect`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exalb.config.model import Config, IPAddress
from exalb.views import EndpointsView, NodeView, ServiceView
from speaker.l2.election import IPElection, elect

_L2Entry = tuple[ServiceView, EndpointsView | None, tuple[IPElection, ...]]


class ElectionCache:
    """Call :meth:`elect` like :func:`speaker.l2.election.elect`; reuses unchanged results."""

    def __init__(self) -> None:
        self._context: tuple[Config, tuple[NodeView, ...], bool] | None = None
        self._entries: dict[str, _L2Entry] = {}
        self.hits = 0
        self.misses = 0

    def elect(
        self,
        config: Config,
        services: Iterable[ServiceView],
        endpoints: Mapping[str, EndpointsView],
        nodes: tuple[NodeView, ...],
        *,
        ignore_exclude_lb: bool = False,
    ) -> tuple[IPElection, ...]:
        ctx = self._context
        if ctx is None or ctx[0] is not config or ctx[1] != nodes or ctx[2] != ignore_exclude_lb:
            self._entries = {}
            self._context = (config, nodes, ignore_exclude_lb)
        old = self._entries
        fresh: dict[str, _L2Entry] = {}
        by_ip: dict[IPAddress, list[tuple[ServiceView, EndpointsView, IPElection]]] = {}
        self.hits = self.misses = 0
        for s in services:
            eps = endpoints.get(s.key)
            hit = old.get(s.key)
            if hit is not None and hit[0] is s and hit[1] is eps:
                result = hit[2]
                self.hits += 1
            else:
                pair = (s, eps or EndpointsView(s.namespace, s.name))
                result = elect(config, (pair,), nodes, ignore_exclude_lb=ignore_exclude_lb)
                self.misses += 1
            fresh[s.key] = (s, eps, result)
            for e in result:
                by_ip.setdefault(e.ip, []).append((s, eps or EndpointsView(s.namespace, s.name), e))
        self._entries = fresh
        out: list[IPElection] = []
        for ip, items in by_ip.items():
            if len(items) == 1:
                out.append(items[0][2])
                continue
            merged = elect(
                config, [(s, e) for s, e, _ in items], nodes, ignore_exclude_lb=ignore_exclude_lb
            )
            out.extend(e for e in merged if e.ip == ip)
        return tuple(sorted(out, key=lambda e: (e.ip.version, int(e.ip))))
