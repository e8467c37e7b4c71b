"""Where the live commands read from: the API server (Services, events, speaker pods) and
the speakers (:mod:`exalbctl.speakers`).

Why a protocol: the commands in :mod:`exalbctl.live_commands` only join and print; tests
hand them a fake :class:`Source` with canned Service objects and ``/status`` documents. The
API server is optional for the speaker-side answers: with ``--speaker`` and no kubeconfig,
``routes`` and ``peers`` work fully and ``status``/``why`` show the speakers' view and say
the API was not read (:class:`ApiUnavailableError`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from exalb.k8s.client import ApiError, KubeClient, default_namespace
from exalb.k8s.resources import EVENTS, PODS, SERVICES
from exalbctl.report import SpeakerStatus
from exalbctl.speakers import (
    DEFAULT_NAMESPACE,
    DEFAULT_PORT,
    DEFAULT_SELECTOR,
    Target,
    fetch,
    fetch_all,
    targets_from_pods,
)

JSON = dict[str, Any]


class ApiUnavailableError(Exception):
    """The API server could not be read (no kubeconfig, unreachable, forbidden)."""


class Source(Protocol):
    def default_namespace(self) -> str: ...

    def services(self, namespace: str | None) -> list[JSON]:
        """Services of one namespace (``None``: all); raises :class:`ApiUnavailableError`."""
        ...

    def service(self, namespace: str, name: str) -> JSON | None:
        """One Service or ``None``; raises :class:`ApiUnavailableError`."""
        ...

    def events(self, namespace: str, name: str, uid: str | None) -> list[JSON]:
        """Events about one Service (best effort: ``[]`` when they cannot be read)."""
        ...

    def speakers(self, service: str | None = None) -> list[SpeakerStatus]:
        """Every speaker's ``/status`` (narrowed to ``service``), or why it is missing."""
        ...


class LiveSource:
    """The API server through :class:`KubeClient`; speakers explicit or discovered."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        speakers: Sequence[Target] = (),
        speaker_namespace: str = DEFAULT_NAMESPACE,
        selector: str = DEFAULT_SELECTOR,
        port: int = DEFAULT_PORT,
        timeout: float = 10.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.explicit = list(speakers)
        self.speaker_namespace = speaker_namespace
        self.selector = selector
        self.port = port
        self.timeout = timeout
        self._kube: KubeClient | None = None
        self._kube_error: str | None = None
        self._lock = threading.Lock()

    def kube(self) -> KubeClient:
        """One client, made on first use; a CLI retries transient errors only briefly."""
        with self._lock:
            if self._kube is None and self._kube_error is None:
                try:
                    self._kube = KubeClient(self.kubeconfig, retry_for=min(self.timeout, 5.0))
                except (ApiError, OSError, ValueError) as exc:
                    self._kube_error = str(exc)
            if self._kube is None:
                raise ApiUnavailableError(self._kube_error or "no Kubernetes client")
            return self._kube

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()

    def default_namespace(self) -> str:
        return default_namespace(self.kubeconfig)

    def services(self, namespace: str | None) -> list[JSON]:
        try:
            return self.kube().list(SERVICES, namespace).items
        except ApiError as exc:
            raise ApiUnavailableError(str(exc)) from exc

    def service(self, namespace: str, name: str) -> JSON | None:
        try:
            return self.kube().get(SERVICES, name, namespace)
        except ApiError as exc:
            raise ApiUnavailableError(str(exc)) from exc

    def events(self, namespace: str, name: str, uid: str | None) -> list[JSON]:
        try:
            items = (
                self.kube()
                .list(
                    EVENTS,
                    namespace,
                    field_selector=f"involvedObject.kind=Service,involvedObject.name={name}",
                )
                .items
            )
        except (ApiError, ApiUnavailableError):
            return []  # events are advisory; the rest of the answer stands without them
        return [
            e
            for e in items
            if uid is None or (e.get("involvedObject") or {}).get("uid") in (None, uid)
        ]

    def targets(self) -> list[Target]:
        """The explicit speakers, else the discovered pods (an unusable discovery is one
        target carrying the error, so every report says why no speaker was read)."""
        if self.explicit:
            return self.explicit
        where = f"pods -l {self.selector} in namespace {self.speaker_namespace}"
        try:
            pods = (
                self.kube().list(PODS, self.speaker_namespace, label_selector=self.selector).items
            )
        except (ApiError, ApiUnavailableError) as exc:
            return [Target(name="(discovery)", url=where, error=f"cannot list speaker pods: {exc}")]
        if not pods:
            return [
                Target(
                    name="(discovery)",
                    url=where,
                    error="no speaker pods found; set --speaker-namespace, "
                    "--speaker-selector or --speaker NAME=URL",
                )
            ]
        return targets_from_pods(pods, default_port=self.port)

    def speakers(self, service: str | None = None) -> list[SpeakerStatus]:
        targets = self.targets()
        needs_api = any(t.pod is not None and t.error is None for t in targets)
        kube = self.kube() if needs_api else None
        return fetch_all(
            targets,
            lambda t: fetch(
                t,
                service=service,
                timeout=self.timeout,
                proxy=kube.request if kube else None,
                forward=kube.port_forward_get if kube else None,
            ),
        )
