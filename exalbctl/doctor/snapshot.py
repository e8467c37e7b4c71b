"""Everything the doctor looks at, as plain documents (what ``kubectl get -o json`` gives).

The gatherer fills it; the checks only read it, so every check is a unit test over dicts.
A part that could not be read is empty and named in :attr:`Snapshot.unreadable` with the
reason; checks that need it are skipped (and say so) rather than reporting an absence that
is only a missing permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exalbctl.report import SpeakerStatus

JSON = dict[str, Any]

# Parts of the snapshot, as named in ``unreadable`` and in each check's needs.
NODES = "nodes"
PODS = "pods"  # every pod: pod IPs (pod network), kube-system's programs
SERVICES = "services"
ENDPOINT_SLICES = "endpointslices"
EVENTS = "events"  # events about Services
CONFIG = "config"  # metallb.io objects and the legacy ConfigMap of exalb's namespace
KUBE_SYSTEM = "kube-system"  # ConfigMaps kube-proxy and kubeadm-config
SERVICE_CIDRS = "servicecidrs"
WORKLOADS = "workloads"  # Deployments and DaemonSets of every namespace
WEBHOOKS = "webhooks"  # ValidatingWebhookConfigurations
SPEAKER_PODS = "speaker pods"  # exalb's speaker pods and DaemonSet (by label)
SPEAKERS = "speakers"  # each speaker's /status
PORT_FORWARD = "pods/portforward"  # what the live views need in the speaker namespace
ACCESS = "access"  # the user's own permissions (SelfSubjectAccessReview)


@dataclass(frozen=True)
class Access:
    """One SelfSubjectAccessReview: may the user do ``verb`` on ``resource`` there?"""

    verb: str
    resource: str  # "pods" or PORT_FORWARD
    namespace: str
    allowed: bool
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.verb} {self.resource} in namespace {self.namespace}"


@dataclass(frozen=True)
class Snapshot:
    namespace: str  # exalb's: its config objects and speaker pods live here
    selector: str = ""  # the speaker pods' label selector
    config_map_name: str = "config"
    nodes: tuple[JSON, ...] = ()
    pods: tuple[JSON, ...] = ()
    services: tuple[JSON, ...] = ()
    endpoint_slices: tuple[JSON, ...] = ()
    events: tuple[JSON, ...] = ()
    config_objects: tuple[JSON, ...] = ()
    config_map: JSON | None = None
    kube_system_config_maps: tuple[JSON, ...] = ()
    service_cidrs: tuple[JSON, ...] = ()
    workloads: tuple[JSON, ...] = ()
    webhooks: tuple[JSON, ...] = ()
    speaker_pods: tuple[JSON, ...] = ()
    speaker_daemonsets: tuple[JSON, ...] = ()
    speakers: tuple[SpeakerStatus, ...] = ()
    access: tuple[Access, ...] = ()
    unreadable: Mapping[str, str] = field(default_factory=dict)  # part -> why


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, Mapping) else {}


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("status")
    return value if isinstance(value, Mapping) else {}


def name(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def ref(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (``name`` for cluster-scoped objects)."""
    m = meta(obj)
    return f"{m['namespace']}/{m.get('name', '')}" if m.get("namespace") else str(m.get("name"))


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    value = meta(obj).get("labels")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def condition_true(obj: Mapping[str, Any], ctype: str) -> bool:
    return any(
        isinstance(c, Mapping) and c.get("type") == ctype and c.get("status") == "True"
        for c in status(obj).get("conditions") or []
    )


def pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Deployment's or DaemonSet's pod template spec (a Pod's own spec for a Pod)."""
    template = spec(workload).get("template")
    if isinstance(template, Mapping):
        return spec(template)
    return spec(workload)


def containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in pod_spec(obj).get("containers") or [] if isinstance(c, Mapping)]


def argv(container: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def env(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's literal environment (``valueFrom`` entries read as ``""``)."""
    return {str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or []}


def flag(words: list[str], name_: str) -> str | None:
    """The value of ``--name=value`` or ``--name value``; ``""`` for a bare ``--name``."""
    for i, word in enumerate(words):
        if word == name_:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            return "" if nxt.startswith("-") else nxt
        if word.startswith(name_ + "="):
            return word[len(name_) + 1 :]
    return None
