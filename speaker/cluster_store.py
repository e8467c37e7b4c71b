"""What the speaker knows of the cluster: informer events reduced to frozen views, per key.

Why a store of *views* (not of JSON objects): the informer handlers run on their own threads
and already hold the object, so reducing it there (``service_view``, EndpointSlice endpoints,
``node_view``) costs nothing extra, and a recompute then only copies small dictionaries
instead of re-reducing 10,000 Services. The store is the only shared state between the
informer threads and the speaker's loop; every method takes the lock and ``snapshot`` hands
out copies, so the pure decision code never sees a dictionary change under it.

``on_change(kind)`` is called after every change that can alter this node's decisions:
Services, EndpointSlices, config objects and *any* Node. Other Nodes matter because the L2
election ranks every node (a Node gaining ``NetworkUnavailable`` or the exclude label hands
its IPs to the next node); a Node's heartbeat does not alter its view, so it costs nothing.

It also keeps, per Service, the reference an Event needs (``involvedObject``: name,
namespace, uid), because views deliberately drop the uid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exalb.views import (
    Endpoint,
    EndpointsView,
    NodeView,
    ServiceView,
    endpoint_slice_endpoints,
    node_view,
    service_view,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the store for one recompute."""

    services: tuple[ServiceView, ...]
    endpoints: Mapping[str, EndpointsView]
    node: NodeView | None
    config_documents: tuple[tuple[str, JSON], ...]
    config_generation: int
    nodes: tuple[NodeView, ...] = ()  # every Node, by name (the L2 election's candidates)


def _config_origin(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


class ClusterStore:
    """Thread-safe store fed by informer handlers (see the module docstring)."""

    def __init__(self, node_name: str, on_change: Callable[[str], None] = lambda _k: None) -> None:
        self.node_name = node_name
        self.on_change = on_change
        self._lock = threading.Lock()
        self._services: dict[str, ServiceView] = {}
        self._slices: dict[str, tuple[str, tuple[Endpoint, ...]]] = {}  # slice -> (svc, eps)
        self._by_service: dict[str, dict[str, tuple[Endpoint, ...]]] = {}
        self._endpoints: dict[str, EndpointsView] = {}
        self._nodes: dict[str, NodeView] = {}
        self._refs: dict[str, JSON] = {}  # Service key -> involvedObject fields for events
        self._config: dict[str, JSON] = {}  # "<kind>/<ns>/<name>" -> object
        self._config_generation = 0

    # -- informer handlers (signature: event, key, old, new) ----------------------------------
    def on_service(self, event: str, key: str, _old: JSON | None, new: JSON | None) -> None:
        with self._lock:
            if event == "deleted" or new is None:
                changed = self._services.pop(key, None) is not None
                self._refs.pop(key, None)
            else:
                view = service_view(new)
                changed = self._services.get(key) != view
                self._services[key] = view
                self._refs[key] = _service_ref(new)
        if changed:
            self.on_change("service")

    def on_endpoint_slice(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        with self._lock:
            before = self._slices.pop(key, None)
            if before is not None:
                self._drop_slice(key, before[0])
            if event != "deleted" and new is not None:
                svc = _slice_service(new)
                if svc is not None:
                    eps = endpoint_slice_endpoints(new)
                    self._slices[key] = (svc, eps)
                    self._by_service.setdefault(svc, {})[key] = eps
                    self._rebuild(svc)
            changed = before != self._slices.get(key)
        if changed:
            self.on_change("endpoints")

    def on_node(self, event: str, key: str, _old: JSON | None, new: JSON | None) -> None:
        with self._lock:
            if event == "deleted" or new is None:
                changed = self._nodes.pop(key, None) is not None
            else:
                view = node_view(new)
                changed = self._nodes.get(key) != view
                self._nodes[key] = view
        if changed:
            self.on_change("node")

    def on_config(self, event: str, key: str, _old: JSON | None, new: JSON | None) -> None:
        obj = new if new is not None else _old
        kind = str((obj or {}).get("kind", "?"))
        full = f"{kind}/{key}"
        with self._lock:
            if event == "deleted" or new is None:
                self._config.pop(full, None)
            else:
                self._config[full] = new
            self._config_generation += 1
        self.on_change("config")

    # -- internals ----------------------------------------------------------------------------
    def _drop_slice(self, key: str, svc: str) -> None:
        slices = self._by_service.get(svc)
        if slices is not None:
            slices.pop(key, None)
            if not slices:
                del self._by_service[svc]
        self._rebuild(svc)

    def _rebuild(self, svc: str) -> None:
        slices = self._by_service.get(svc)
        if not slices:
            self._endpoints.pop(svc, None)
            return
        namespace, _, name = svc.partition("/")
        eps = tuple(e for k in sorted(slices) for e in slices[k])
        self._endpoints[svc] = EndpointsView(namespace, name, eps)

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                services=tuple(self._services.values()),
                endpoints=dict(self._endpoints),
                node=self._nodes.get(self.node_name),
                config_documents=tuple(
                    (_config_origin(obj), obj)
                    for _key, obj in sorted(self._config.items(), key=lambda kv: kv[0])
                ),
                config_generation=self._config_generation,
                nodes=tuple(v for _k, v in sorted(self._nodes.items())),
            )

    def service_ref(self, key: str) -> JSON | None:
        """``apiVersion``/``kind``/``metadata`` of Service ``key``, enough to record an Event."""
        with self._lock:
            ref = self._refs.get(key)
            return None if ref is None else dict(ref)

    def peer_ref(self, name: str) -> JSON | None:
        """The reference an Event about BGPPeer ``name`` needs: the BGPPeer object, or the
        legacy ConfigMap when the config comes from one (it has no BGPPeer objects)."""
        with self._lock:
            found = [o for k, o in self._config.items() if k.startswith("BGPPeer/")]
            found = [o for o in found if (o.get("metadata") or {}).get("name") == name]
            if not found:
                found = [o for k, o in self._config.items() if k.startswith("ConfigMap/")]
            return _object_ref(found[0]) if found else None

    def nodes(self) -> tuple[NodeView, ...]:
        with self._lock:
            return tuple(self._nodes.values())

    @property
    def config_generation(self) -> int:
        with self._lock:
            return self._config_generation


def _service_ref(obj: Mapping[str, Any]) -> JSON:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace") or "default",
            "uid": meta.get("uid"),
        },
    }


def _object_ref(obj: Mapping[str, Any]) -> JSON:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
    }


def _slice_service(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not name:
        return None
    return f"{meta.get('namespace') or 'default'}/{name}"
