"""Lease-based leader election (coordination.k8s.io/v1), so two replicas are safe.

Same protocol as client-go: the holder renews ``renewTime`` every ``retry_period``; a
candidate takes the Lease over only after it has seen the same record unchanged for a full
``lease_duration`` on its *own* clock (so clock skew between nodes does not matter), and
every write is a compare-and-swap on resourceVersion. A leader that cannot renew within
``renew_deadline`` must stop acting at once; the caller exits and is restarted, which is the
simplest way to drop all in-memory state that assumed leadership.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import LEASES

log = structlog.get_logger(__name__)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._wall = wall
        self._observed: tuple[str, str] | None = None  # (holder, renewTime)
        self._observed_at = 0.0
        self.is_leader = threading.Event()

    def try_acquire_or_renew(self) -> bool:
        now = self._wall()
        try:
            lease = self.kube.get(LEASES, self.name, self.namespace)
        except ApiError as exc:
            log.warning("lease read failed", error=str(exc))
            return False
        spec_new: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": _stamp(now),
        }
        if lease is None:
            spec_new["acquireTime"] = _stamp(now)
            spec_new["leaseTransitions"] = 0
            try:
                self.kube.create(
                    LEASES,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": spec_new,
                    },
                    self.namespace,
                )
            except ApiError as exc:
                log.info("lease create lost", error=str(exc))
                return False
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and (self._clock() < self._observed_at + duration):
            return False
        if holder == self.identity:
            spec_new["acquireTime"] = spec.get("acquireTime") or _stamp(now)
            spec_new["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            spec_new["acquireTime"] = _stamp(now)
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec_new
        try:
            self.kube.replace(LEASES, self.name, lease, self.namespace)
        except ApiError as exc:
            log.info("lease update lost", error=str(exc))
            return False
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until leader (True) or ``stop`` is set (False)."""
        log.info(
            "waiting for leadership", lease=f"{self.namespace}/{self.name}", identity=self.identity
        )
        while not stop.is_set():
            if self.try_acquire_or_renew():
                self.is_leader.set()
                log.info("became leader", identity=self.identity)
                return True
            stop.wait(self.retry_period)
        return False

    def keep_renewing(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew until ``stop``; call ``on_lost`` if a renewal deadline passes."""
        last_ok = self._clock()
        while not stop.wait(self.retry_period):
            if self.try_acquire_or_renew():
                last_ok = self._clock()
            elif self._clock() - last_ok > self.renew_deadline:
                self.is_leader.clear()
                log.error("leadership lost", identity=self.identity)
                on_lost()
                return

    def run(self, stop: threading.Event, leading: threading.Event) -> None:
        """Hold ``leading`` set while this instance leads; re-campaign after a loss."""
        while not stop.is_set():
            if not self.acquire(stop):
                return
            leading.set()
            self.keep_renewing(stop, leading.clear)
        leading.clear()

    def release(self) -> None:
        """Give the Lease up on a clean exit so the other replica takes over at once."""
        try:
            lease = self.kube.get(LEASES, self.name, self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.replace(LEASES, self.name, lease, self.namespace)
        except ApiError as exc:
            log.warning("lease release failed", error=str(exc))
        self.is_leader.clear()
