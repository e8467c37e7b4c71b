"""Small frozen views of the Kubernetes objects exalb decides on.

Kubernetes objects are reduced here, at the edge, to the few fields the pure core needs, so
the allocator and the announcement decisions never see a ``kubernetes`` model and can be
tested with plain data. The reducers take the JSON form (plain mappings, as the API server
sends them) and never raise on bad user input: a malformed annotation becomes an entry in
``ServiceView.errors`` that the controller turns into an event.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exalb.config.model import Family, IPAddress

ANNOTATION_PREFIX = "metallb.io/"
DEPRECATED_ANNOTATION_PREFIX = "metallb.universe.tf/"
ADDRESS_POOL = "address-pool"
LOAD_BALANCER_IPS = "loadBalancerIPs"
ALLOW_SHARED_IP = "allow-shared-ip"
ALLOCATED_FROM_POOL = "ip-allocated-from-pool"
# exalb's own: an explicit operator request to move an out-of-pool IP into the config.
MIGRATE_ANNOTATION = "exalb.io/migrate"
# exalb's own, on a Node: "true" drains the node's BGP routes gracefully while it is cordoned
# (``kubectl cordon`` / ``kubectl drain``), "false" never does; absent: the speaker's default.
DRAIN_ON_CORDON_ANNOTATION = "exalb.io/drain-on-cordon"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

FamilyPolicy = Literal["SingleStack", "PreferDualStack", "RequireDualStack"]
TrafficPolicy = Literal["Cluster", "Local"]


@dataclass(frozen=True)
class ServiceView:
    """What exalb needs of a Service."""

    namespace: str
    name: str
    creation_timestamp: str = ""  # RFC 3339; orders restores (older Service wins a clash)
    is_load_balancer: bool = True
    load_balancer_class: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    traffic_policy: TrafficPolicy = "Cluster"
    ports: tuple[tuple[str, int], ...] = ()  # (protocol, port)
    # spec.healthCheckNodePort (Local Services): kube-proxy's per-Service health check,
    # which says when the node's proxy rules hold a local endpoint (speaker.proxy_hold)
    health_check_node_port: int | None = None
    cluster_ip_families: tuple[Family, ...] = (4,)
    ip_families: tuple[Family, ...] = ()
    family_policy: FamilyPolicy = "SingleStack"
    requested_ips: tuple[IPAddress, ...] = ()
    requested_pool: str | None = None
    # The ``allow-shared-ip`` value; None when the annotation is absent, "" when it is
    # present but empty (no sharing, but MetalLB's L2 rule looks at presence).
    sharing_key: str | None = None
    assigned_ips: tuple[IPAddress, ...] = ()
    allocated_pool: str | None = None
    migrate: bool = False
    deprecated_annotations: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def has_allow_shared_ip(self) -> bool:
        """The ``allow-shared-ip`` annotation is set (any value), as MetalLB's speaker tests
        it (``speaker/layer2_controller.go``, ``serviceHasSharedIP``)."""
        return self.sharing_key is not None

    @property
    def backend_key(self) -> str:
        """MetalLB's sharing backend key: empty for Cluster, the pod selector for Local."""
        if self.traffic_policy != "Local":
            return ""
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector))

    @property
    def primary_family(self) -> Family:
        if self.ip_families:
            return self.ip_families[0]
        return self.cluster_ip_families[0] if self.cluster_ip_families else 4


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of an EndpointSlice."""

    addresses: tuple[str, ...]
    node_name: str | None
    ready: bool | None = None
    serving: bool | None = None

    @property
    def is_serving(self) -> bool:
        """MetalLB's rule: has addresses and (ready unset or true, or serving true)."""
        if not self.addresses:
            return False
        return self.ready is None or self.ready or bool(self.serving)


@dataclass(frozen=True)
class EndpointsView:
    """All endpoints of one Service, merged over its EndpointSlices."""

    namespace: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()

    def has_serving(self) -> bool:
        return any(e.is_serving for e in self.endpoints)

    def has_serving_on(self, node: str) -> bool:
        return any(e.is_serving and e.node_name == node for e in self.endpoints)

    def ready_count_on(self, node: str) -> int:
        """Ready endpoints on ``node`` (unset ``ready`` counts as ready, as MetalLB reads it);
        terminating endpoints that still serve are not counted: they are leaving."""
        return sum(
            1
            for e in self.endpoints
            if e.node_name == node and e.addresses and (e.ready is None or e.ready)
        )


@dataclass(frozen=True)
class NodeView:
    """What exalb needs of a Node."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    network_unavailable: bool = False
    addresses: tuple[IPAddress, ...] = ()  # InternalIPs first, then ExternalIPs
    unschedulable: bool = False  # spec.unschedulable: cordoned (``kubectl cordon``/``drain``)
    drain_on_cordon: bool | None = None  # DRAIN_ON_CORDON_ANNOTATION; None = not set or invalid

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def excluded_from_lb(self) -> bool:
        return any(k == EXCLUDE_LB_LABEL for k, _ in self.labels)


def _mapping(obj: Any) -> Mapping[str, Any]:
    return obj if isinstance(obj, Mapping) else {}


def _sequence(obj: Any) -> Sequence[Any]:
    return obj if isinstance(obj, list | tuple) else ()


def _str_pairs(obj: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in _mapping(obj).items()))


def parse_address(text: str) -> IPAddress | None:
    """An address as Kubernetes writes it, or ``None``. A zone (``2001:db8::5%x``) is not an
    address here: Python keeps it, so ``2001:db8::5%x`` and ``2001:db8::5`` would be two
    keys for one address on the wire, and one IP could be held by two Services."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _family_of(text: str) -> Family | None:
    ip = parse_address(text)
    return None if ip is None else (4 if ip.version == 4 else 6)


def _annotation(annotations: Mapping[str, Any], suffix: str, deprecated: list[str]) -> str | None:
    """Current prefix wins; the deprecated one is still read (and reported)."""
    old = annotations.get(DEPRECATED_ANNOTATION_PREFIX + suffix)
    if old is not None:
        deprecated.append(DEPRECATED_ANNOTATION_PREFIX + suffix)
    new = annotations.get(ANNOTATION_PREFIX + suffix)
    value = new if new is not None else old
    return None if value is None else str(value)


def _requested_ips(
    annotations: Mapping[str, Any], spec: Mapping[str, Any], deprecated: list[str]
) -> tuple[tuple[IPAddress, ...], list[str]]:
    """The IPs asked for (annotation ``loadBalancerIPs`` or ``spec.loadBalancerIP``) and
    what is wrong with the request."""
    lb_ips = _annotation(annotations, LOAD_BALANCER_IPS, deprecated)
    spec_ip = spec.get("loadBalancerIP")
    if lb_ips and spec_ip:
        return (), [
            f"both annotation {ANNOTATION_PREFIX}{LOAD_BALANCER_IPS} and spec.loadBalancerIP "
            "are set; use only one"
        ]
    raw = [s.strip() for s in lb_ips.split(",")] if lb_ips else []
    if spec_ip:
        raw = [str(spec_ip).strip()]
    requested: list[IPAddress] = []
    errors: list[str] = []
    for text in raw:
        if not text:
            continue
        ip = parse_address(text)
        if ip is not None:
            requested.append(ip)
        elif "%" in text:
            errors.append(f"requested IP {_short(text)} has a zone (%...); give the address only")
        else:
            errors.append(f"requested IP {_short(text)} is not a valid IP address")
    if len(requested) > 2 or (len(requested) == 2 and requested[0].version == requested[1].version):
        errors.append("at most one requested IP per family (two in total) is allowed")
    return tuple(requested), errors


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."


def _port(raw: Any) -> tuple[str, int]:
    p = _mapping(raw)
    port = p.get("port")
    if isinstance(port, bool) or not isinstance(port, int):
        port = int(port) if isinstance(port, str) and port.isdigit() and len(port) < 6 else 0
    return str(p.get("protocol") or "TCP"), port


def _families(spec: Mapping[str, Any]) -> tuple[tuple[Family, ...], tuple[Family, ...]]:
    """(families of the cluster IPs, ``spec.ipFamilies``); the first falls back on the
    second when the Service has no cluster IP yet."""
    cluster_ips = [str(x) for x in _sequence(spec.get("clusterIPs"))]
    if not cluster_ips and spec.get("clusterIP"):
        cluster_ips = [str(spec["clusterIP"])]
    cluster = tuple(f for f in map(_family_of, cluster_ips) if f is not None)
    named: dict[Any, Family] = {"IPv4": 4, "IPv6": 6}
    ip_families = tuple(
        named[x] for x in _sequence(spec.get("ipFamilies")) if isinstance(x, str) and x in named
    )
    return cluster or ip_families[:1], ip_families


def _assigned_ips(status: Mapping[str, Any]) -> tuple[tuple[IPAddress, ...], list[str]]:
    assigned: list[IPAddress] = []
    errors: list[str] = []
    for ing in _sequence(_mapping(status.get("loadBalancer")).get("ingress")):
        ip_text = _mapping(ing).get("ip")
        if ip_text:
            ip = parse_address(str(ip_text))
            if ip is None:
                errors.append(
                    f"status.loadBalancer.ingress ip {_short(str(ip_text))} is not an IP address"
                )
            else:
                assigned.append(ip)
    return tuple(assigned), errors


_POLICIES: dict[Any, FamilyPolicy] = {
    "PreferDualStack": "PreferDualStack",
    "RequireDualStack": "RequireDualStack",
}


def _node_port(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 65536 else None


def service_view(obj: Mapping[str, Any]) -> ServiceView:
    """Reduce a Service (JSON form) to a :class:`ServiceView`. Never raises on user input."""
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    annotations = _mapping(meta.get("annotations"))
    deprecated: list[str] = []
    requested, errors = _requested_ips(annotations, spec, deprecated)
    assigned, status_errors = _assigned_ips(_mapping(obj.get("status")))
    cluster_families, ip_families = _families(spec)
    pool = _annotation(annotations, ADDRESS_POOL, deprecated)
    share = _annotation(annotations, ALLOW_SHARED_IP, deprecated)
    allocated = annotations.get(ANNOTATION_PREFIX + ALLOCATED_FROM_POOL)
    lb_class = spec.get("loadBalancerClass")
    policy = spec.get("ipFamilyPolicy")
    return ServiceView(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        creation_timestamp=str(meta.get("creationTimestamp") or ""),
        is_load_balancer=spec.get("type") == "LoadBalancer",
        load_balancer_class=str(lb_class) if lb_class else None,
        labels=_str_pairs(meta.get("labels")),
        selector=_str_pairs(spec.get("selector")),
        traffic_policy="Local" if spec.get("externalTrafficPolicy") == "Local" else "Cluster",
        ports=tuple(_port(p) for p in _sequence(spec.get("ports"))),
        health_check_node_port=_node_port(spec.get("healthCheckNodePort")),
        cluster_ip_families=cluster_families,
        ip_families=ip_families,
        family_policy=_POLICIES.get(policy, "SingleStack")
        if isinstance(policy, str)
        else "SingleStack",
        requested_ips=requested,
        requested_pool=pool or None,
        sharing_key=share,
        assigned_ips=assigned,
        allocated_pool=str(allocated) if allocated else None,
        migrate=str(annotations.get(MIGRATE_ANNOTATION, "")).lower() in ("true", "1", "yes"),
        deprecated_annotations=tuple(sorted(set(deprecated))),
        errors=(*errors, *status_errors),
    )


def namespace_labels(docs: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Namespace name → labels, from the Namespace objects among ``docs`` (a dump such as
    ``kubectl get svc,ns -A -o yaml``); anything else, or a malformed one, is skipped."""
    out: dict[str, dict[str, str]] = {}
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "Namespace":
            meta = _mapping(doc.get("metadata"))
            out[str(meta.get("name"))] = dict(_str_pairs(meta.get("labels")))
    return out


def endpoint_slice_endpoints(obj: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    """The endpoints of one EndpointSlice (JSON form)."""
    out: list[Endpoint] = []
    for raw in _sequence(obj.get("endpoints")):
        ep = _mapping(raw)
        cond = _mapping(ep.get("conditions"))
        ready = cond.get("ready")
        serving = cond.get("serving")
        out.append(
            Endpoint(
                addresses=tuple(str(a) for a in _sequence(ep.get("addresses"))),
                node_name=str(ep["nodeName"]) if ep.get("nodeName") else None,
                ready=None if ready is None else bool(ready),
                serving=None if serving is None else bool(serving),
            )
        )
    return tuple(out)


def endpoints_view(
    namespace: str, service: str, slices: Sequence[Mapping[str, Any]]
) -> EndpointsView:
    """Merge the EndpointSlices of one Service (label ``kubernetes.io/service-name``)."""
    eps: list[Endpoint] = []
    for s in slices:
        eps.extend(endpoint_slice_endpoints(s))
    return EndpointsView(namespace=namespace, service=service, endpoints=tuple(eps))


def node_view(obj: Mapping[str, Any]) -> NodeView:
    """Reduce a Node (JSON form) to a :class:`NodeView`."""
    meta = _mapping(obj.get("metadata"))
    status = _mapping(obj.get("status"))
    unavailable = any(
        _mapping(c).get("type") == "NetworkUnavailable" and _mapping(c).get("status") == "True"
        for c in _sequence(status.get("conditions"))
    )
    # InternalIP first, then ExternalIP (each in the Node's order): consumers take "the first
    # address of a family" (router-id fallback, the L2 candidates' ``nodeIP`` for data-path
    # probes), and the InternalIP is the node's address on the cluster segment, where the
    # L2 sidecars probe each other. A node with only ExternalIPs still gets one.
    addrs: list[IPAddress] = []
    for kind in ("InternalIP", "ExternalIP"):
        for raw in _sequence(status.get("addresses")):
            a = _mapping(raw)
            if a.get("type") != kind:
                continue
            ip = parse_address(str(a.get("address")))
            if ip is not None:
                addrs.append(ip)
    spec = _mapping(obj.get("spec"))
    drain = str(_mapping(meta.get("annotations")).get(DRAIN_ON_CORDON_ANNOTATION, "")).lower()
    return NodeView(
        name=str(meta.get("name") or ""),
        labels=_str_pairs(meta.get("labels")),
        network_unavailable=unavailable,
        addresses=tuple(addrs),
        unschedulable=spec.get("unschedulable") is True,
        drain_on_cordon=True if drain == "true" else False if drain == "false" else None,
    )
