"""The loaded half of ``vs_metallb_speakers``: thousands of Services, each with an IP in
:data:`BULK_POOL`, through the API (8 writers), until r1 holds every route."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exalb.k8s.client import KubeClient
from exalb.k8s.resources import Resource
from lab.runner import Lab
from tests.lab.api_objects import Cluster, endpoint_slice_body, service_body
from tests.lab.speaker_lab import NODES

BULK_POOL = "198.19.0.0/16"  # benchmark range; 198.18.0.0/24 holds the lab links
SERVICES = Resource("", "v1", "services", "Service")
SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


def _bulk_name(i: int) -> str:
    return f"bulk{i}"


def _bulk_ip(i: int) -> str:
    return f"198.19.{i // 256}.{i % 256}"


def bulk_routes(
    lab: Lab, c: Cluster, routes: int, made: list[int], logs: Callable[[], str]
) -> tuple[float, int]:
    """``routes`` Services with an IP in :data:`BULK_POOL` (8 writers), until r1 holds them
    all; returns the seconds from the first write and the Services that needed a second
    event (:func:`_wait_bulk`). ``made`` collects what was created."""
    kube = KubeClient(str(c.cp.kubeconfig))
    nodes = list(NODES)

    def one(i: int) -> None:
        name = _bulk_name(i)
        kube.create(SERVICES, service_body(name, node_ports=False), c.app_ns)
        made.append(i)
        kube.create(SLICES, endpoint_slice_body(name, nodes), c.app_ns)
        ip = _bulk_ip(i)
        kube.patch(SERVICES, name, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}},
                   c.app_ns, subresource="status")  # fmt: skip

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool_:
            list(pool_.map(one, range(routes)))
        kicks = _wait_bulk(lab, kube, c, routes, logs)
        return time.monotonic() - t0, kicks
    finally:
        kube.close()


def _bulk_ips(lab: Lab) -> set[str]:
    """The bulk IPs among r1's BGP routes."""
    return {p.removesuffix("/32") for p in lab.fib("r1").prefixes(4) if p.startswith("198.19.")}


def _wait_bulk(lab: Lab, kube: KubeClient, c: Cluster, routes: int, logs: Callable[[], str]) -> int:
    """Until r1 holds every bulk route. When nothing arrives for 20 s, the Services whose IP
    is still missing get a label change, counted in the result (a lost event would
    otherwise stop the benchmark; the count says whether one was needed)."""
    deadline = time.monotonic() + 900
    kicks = 0
    last, since = -1, time.monotonic()
    while len(have := _bulk_ips(lab)) < routes:
        now = time.monotonic()
        if len(have) != last:
            last, since = len(have), now
        elif now - since > 20:
            missing = [i for i in range(routes) if _bulk_ip(i) not in have]
            for i in missing:
                kube.patch(SERVICES, _bulk_name(i), {"metadata": {"labels": {"kick": "1"}}},
                           c.app_ns)  # fmt: skip
            kicks += len(missing)
            since = now
        if now > deadline:
            raise RuntimeError(f"{routes} routes at r1: {len(have)} after 900 s\n{logs()}")
        time.sleep(0.2)
    return kicks


def delete_bulk(c: Cluster, made: list[int]) -> None:
    kube = KubeClient(str(c.cp.kubeconfig))

    def one(i: int) -> None:
        kube.delete(SLICES, f"{_bulk_name(i)}-ipv4", c.app_ns)
        kube.delete(SERVICES, _bulk_name(i), c.app_ns)

    try:
        with ThreadPoolExecutor(8) as pool_:
            list(pool_.map(one, made))
    finally:
        kube.close()
    made.clear()
