"""Kubernetes objects of the process-level labs, built as plain documents and created
through the API by :class:`Cluster`, which deletes all of them again in
:meth:`Cluster.cleanup` (no controller-manager runs there to garbage-collect).

Shared by the lab tests and the benchmarks (``tests/lab/speaker_lab.py`` runs the speakers
against them).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

from lab.controlplane import ControlPlane

if TYPE_CHECKING:
    from tests.lab.speaker_lab import NodeNet


def pool(name: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    }


def advertisement(name: str, pools: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": name},
        "spec": {"ipAddressPools": pools, **spec},
    }


def service_body(
    name: str,
    *,
    dual: bool = False,
    policy: str = "Cluster",
    labels: dict[str, str] | None = None,
    port: int = 8080,
    node_ports: bool = True,
) -> dict[str, Any]:
    """A LoadBalancer Service selecting ``app: <name>`` (without node ports: a benchmark's
    10,000 Services would exhaust the 2,768 of the default range)."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": policy,
            "selector": {"app": name},
            "ports": [{"port": port, "protocol": "TCP"}],
            "ipFamilyPolicy": "PreferDualStack" if dual else "SingleStack",
            "ipFamilies": ["IPv4"],
        },
    }
    if not node_ports:
        body["spec"]["allocateLoadBalancerNodePorts"] = False
    return body


def endpoint_slice_body(service: str, nodes: list[str], family: str = "IPv4") -> dict[str, Any]:
    """The Service's one EndpointSlice (``<service>-<family>``): a ready endpoint per node."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{family.lower()}",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": family,
        "endpoints": [
            {
                "addresses": [f"10.244.{i + 1}.10" if family == "IPv4" else f"fd00::{i + 1}"],
                "nodeName": node,
                "conditions": {"ready": True},
            }
            for i, node in enumerate(nodes)
        ],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }


PLURALS = {
    "IPAddressPool": "/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools",
    "BGPPeer": "/apis/metallb.io/v1beta2/namespaces/{ns}/bgppeers",
    "BGPAdvertisement": "/apis/metallb.io/v1beta1/namespaces/{ns}/bgpadvertisements",
    "Community": "/apis/metallb.io/v1beta1/namespaces/{ns}/communities",
    "BFDProfile": "/apis/metallb.io/v1beta1/namespaces/{ns}/bfdprofiles",
    "L2Advertisement": "/apis/metallb.io/v1beta1/namespaces/{ns}/l2advertisements",
}


class Cluster:
    """Creates the test's objects through the API and deletes all of them in cleanup()."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        run = uuid.uuid4().hex[:6]
        self.config_ns = f"lb-{run}"
        self.app_ns = f"app-{run}"
        self.created: list[str] = []  # object paths, deleted in reverse
        for ns in (self.config_ns, self.app_ns):
            cp.ensure_namespace(ns)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.cp.api("POST", path, body)
        assert resp.ok, f"POST {path}: {resp.status} {resp.message}"
        self.created.append(f"{path}/{body['metadata']['name']}")
        return resp.body

    def _patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        resp = self.cp.api("PATCH", path, patch, content_type="application/merge-patch+json")
        assert resp.ok, f"PATCH {path}: {resp.status} {resp.message}"
        return resp.body

    def delete(self, path: str) -> None:
        self.cp.api("DELETE", path)
        with contextlib.suppress(ValueError):
            self.created.remove(path)

    # config
    def apply_config(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            self._post(PLURALS[obj["kind"]].format(ns=self.config_ns), obj)

    def config_path(self, obj: dict[str, Any]) -> str:
        return PLURALS[obj["kind"]].format(ns=self.config_ns) + "/" + obj["metadata"]["name"]

    # nodes
    def node(self, n: NodeNet, labels: dict[str, str] | None = None) -> None:
        self.cp.api("DELETE", f"/api/v1/nodes/{n.name}")  # a leftover of a crashed run
        self._post(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n.name,
                    "labels": {"kubernetes.io/hostname": n.name, **(labels or {})},
                },
            },
        )
        self._patch(
            f"/api/v1/nodes/{n.name}/status",
            {
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": n.ipv4},
                        {"type": "InternalIP", "address": n.ipv6},
                        {"type": "Hostname", "address": n.name},
                    ]
                }
            },
        )

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        """A merge patch of a Node (spec.unschedulable = cordon, annotations)."""
        self._patch(f"/api/v1/nodes/{name}", patch)

    # services
    def service(
        self,
        name: str,
        ips: list[str],
        policy: str = "Cluster",
        labels: dict[str, str] | None = None,
        port: int = 8080,
    ) -> float:
        """Create a LoadBalancer Service and set its ingress IPs (if any); returns the
        monotonic time just before the status write was sent."""
        path = f"/api/v1/namespaces/{self.app_ns}/services"
        self._post(path, service_body(name, dual=len(ips) > 1, policy=policy, labels=labels,
                                      port=port))  # fmt: skip
        return self.set_ingress(name, ips) if ips else time.monotonic()

    def set_ingress(self, name: str, ips: list[str]) -> float:
        """What the controller does; returns the monotonic time just before the write."""
        t = time.monotonic()
        self._patch(
            f"/api/v1/namespaces/{self.app_ns}/services/{name}/status",
            {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}},
        )
        return t

    def endpoints(self, service: str, nodes: list[str], family: str = "IPv4") -> float:
        """Create or replace the Service's one EndpointSlice: one ready endpoint per node;
        returns the monotonic time just before the write was sent."""
        body = endpoint_slice_body(service, nodes, family)
        name = body["metadata"]["name"]
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.app_ns}/endpointslices"
        if f"{path}/{name}" in self.created:
            cur = self.cp.api("GET", f"{path}/{name}").body
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            t = time.monotonic()
            resp = self.cp.api("PUT", f"{path}/{name}", body)
            assert resp.ok, resp.message
        else:
            t = time.monotonic()
            self._post(path, body)
        return t

    def cleanup(self) -> None:
        """Delete everything this test created (no controller-manager garbage-collects)."""
        for path in reversed(self.created):
            self.cp.api("DELETE", path)
        self.created.clear()
        for ns in (self.config_ns, self.app_ns):
            self.cp.delete_namespace(ns)
