"""The doctor's only I/O: read what the checks look at into a :class:`Snapshot`.

Every part is read on its own; a refusal (403, an API the cluster does not serve) is
recorded in ``Snapshot.unreadable`` with the API server's words and the rest goes on, so a
user with partial rights still gets every check their rights allow. The speakers'
``/status`` documents come through :class:`exalbctl.source.LiveSource` (a port-forward, or
``--speaker NAME=URL``), exactly as the live views read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from exalb.k8s.client import ApiError
from exalb.k8s.resources import (
    CONFIG_KINDS,
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    EVENTS,
    NODES,
    PODS,
    SERVICES,
    Resource,
)
from exalbctl.doctor import snapshot as part
from exalbctl.doctor.snapshot import JSON, PORT_FORWARD, Access, Snapshot
from exalbctl.report import SpeakerStatus

DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
SERVICE_CIDRS = Resource("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR", False)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


class Kube(Protocol):
    """The calls the gatherer makes (:class:`exalb.k8s.client.KubeClient` fits)."""

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Any: ...

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON | None: ...

    def request(
        self, method: str, path: str, *, query: Any = None, body: Any = None, timeout: float = 30
    ) -> JSON: ...


class _Reader:
    """Reads parts, remembering which could not be read and why."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.unreadable: dict[str, str] = {}

    def items(
        self,
        name: str,
        resource: Resource,
        namespace: str | None = None,
        *,
        selector: str | None = None,
        fields: str | None = None,
        optional: bool = False,
    ) -> tuple[JSON, ...]:
        """A list; ``optional``: an API the cluster does not serve (404) is just empty."""
        try:
            found = self.kube.list(
                resource, namespace, label_selector=selector, field_selector=fields
            )
        except ApiError as exc:
            if not (optional and exc.not_found):
                self.unreadable.setdefault(name, _why(exc))
            return ()
        return tuple(found.items)

    def one(self, name: str, resource: Resource, obj: str, namespace: str) -> JSON | None:
        try:
            return self.kube.get(resource, obj, namespace)
        except ApiError as exc:
            self.unreadable.setdefault(name, _why(exc))
            return None

    def access(self, namespace: str) -> tuple[Access, ...]:
        out = []
        wanted = (("get", "pods", "portforward"), ("create", "pods", "portforward"),
                  ("list", "pods", ""))  # fmt: skip
        for verb, resource, sub in wanted:
            attrs = {"namespace": namespace, "verb": verb, "resource": resource}
            if sub:
                attrs["subresource"] = sub
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs},
            }
            try:
                st = self.kube.request("POST", ACCESS_REVIEWS, body=body).get("status") or {}
            except ApiError as exc:
                self.unreadable.setdefault(part.ACCESS, _why(exc))
                return ()
            what = f"{resource}/{sub}" if sub else resource
            out.append(
                Access(verb, what, namespace, bool(st.get("allowed")), str(st.get("reason") or ""))
            )
        return tuple(out)


def _why(exc: ApiError) -> str:
    return f"{exc.status} {exc.message}".strip()


def _config(r: _Reader, namespace: str, config_map: str) -> tuple[tuple[JSON, ...], JSON | None]:
    objects: list[JSON] = []
    for kind in CONFIG_KINDS:
        objects += r.items(part.CONFIG, kind, namespace, optional=True)  # 404: no CRDs
    cm = r.one(part.CONFIG, CONFIG_MAPS, config_map, namespace)
    return tuple(objects), cm


def gather(
    kube: Kube,
    *,
    namespace: str,
    selector: str,
    config_map: str,
    read_speakers: Callable[[], Sequence[SpeakerStatus]],
) -> Snapshot:
    r = _Reader(kube)
    objects, cm = _config(r, namespace, config_map)
    system = tuple(
        c
        for n in ("kube-proxy", "kubeadm-config")
        if (c := r.one(part.KUBE_SYSTEM, CONFIG_MAPS, n, "kube-system")) is not None
    )
    access = r.access(namespace)
    speakers: tuple[SpeakerStatus, ...] = ()
    denied = sorted({a.verb for a in access if a.resource == PORT_FORWARD and not a.allowed})
    if denied:
        r.unreadable[part.SPEAKERS] = (
            f"no {'/'.join(denied)} {PORT_FORWARD} in namespace {namespace}"
        )
    else:
        speakers = tuple(s for s in read_speakers() if not s.name.startswith("("))
    return Snapshot(
        namespace=namespace,
        selector=selector,
        config_map_name=config_map,
        nodes=r.items(part.NODES, NODES),
        pods=r.items(part.PODS, PODS),
        services=r.items(part.SERVICES, SERVICES),
        endpoint_slices=r.items(part.ENDPOINT_SLICES, ENDPOINT_SLICES),
        events=r.items(part.EVENTS, EVENTS, fields="involvedObject.kind=Service"),
        config_objects=objects,
        config_map=cm,
        kube_system_config_maps=system,
        service_cidrs=r.items(part.SERVICE_CIDRS, SERVICE_CIDRS, optional=True),
        workloads=r.items(part.WORKLOADS, DEPLOYMENTS) + r.items(part.WORKLOADS, DAEMONSETS),
        webhooks=r.items(part.WEBHOOKS, VALIDATING_WEBHOOKS),
        speaker_pods=r.items(part.SPEAKER_PODS, PODS, namespace, selector=selector),
        speaker_daemonsets=r.items(part.SPEAKER_PODS, DAEMONSETS, namespace, selector=selector),
        speakers=speakers,
        access=access,
        unreadable=dict(r.unreadable),
    )
