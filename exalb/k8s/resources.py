"""The Kubernetes resources exalb reads and writes, as plain descriptors (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """Enough to build REST paths: group ("" = core), version, plural, and scope."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


SERVICES = Resource("", "v1", "services", "Service")
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
PODS = Resource("", "v1", "pods", "Pod")
EVENTS = Resource("", "v1", "events", "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")

METALLB = "metallb.io"
IP_ADDRESS_POOLS = Resource(METALLB, "v1beta1", "ipaddresspools", "IPAddressPool")
BGP_PEERS = Resource(METALLB, "v1beta2", "bgppeers", "BGPPeer")
BGP_ADVERTISEMENTS = Resource(METALLB, "v1beta1", "bgpadvertisements", "BGPAdvertisement")
L2_ADVERTISEMENTS = Resource(METALLB, "v1beta1", "l2advertisements", "L2Advertisement")
COMMUNITIES = Resource(METALLB, "v1beta1", "communities", "Community")
BFD_PROFILES = Resource(METALLB, "v1beta1", "bfdprofiles", "BFDProfile")
CONFIG_KINDS = (
    IP_ADDRESS_POOLS,
    BGP_PEERS,
    BGP_ADVERTISEMENTS,
    L2_ADVERTISEMENTS,
    COMMUNITIES,
    BFD_PROFILES,
)


def object_key(obj: dict[str, object]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return ""
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))
