"""Kubernetes Events with de-duplication (core/v1, the kind ``kubectl describe`` shows).

A reconcile loop converges the same object many times; an event is only worth sending
when what it says changed. The recorder remembers the last (reason, message) per object and
drops repeats; a failure to record is logged, never raised (events are advisory).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import EVENTS

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class EventRecorder:
    def __init__(
        self,
        kube: KubeClient,
        component: str,
        instance: str = "",
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.kube = kube
        self.component = component
        self.instance = instance or component
        self._clock = clock
        self._last: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def forget(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._last.pop(_uid(obj), None)

    def record(
        self,
        obj: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        dedupe: bool = True,
    ) -> bool:
        """Create an event about ``obj``; returns False when it was a repeat or failed."""
        uid = _uid(obj)
        with self._lock:
            if dedupe and self._last.get(uid) == (reason, message):
                return False
            self._last[uid] = (reason, message)
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'obj')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.create(EVENTS, body, namespace)
        except ApiError as exc:
            log.warning("event not recorded", reason=reason, error=str(exc))
            with self._lock:
                self._last.pop(uid, None)
            return False
        return True


def _uid(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{obj.get('kind')}/{meta.get('namespace')}/{meta.get('name')}")
