"""The controller's loop: informers in, one decision thread, status writes out.

One worker processes one de-duplicated queue of keys (``svc:<ns>/<name>``, ``config``,
``pools``), so the allocator needs no locks and every decision sees a consistent state. The
handlers (:mod:`controller.reconciler`) return a :class:`~controller.reconciler.Result`;
only this loop decides what it means (forget, requeue with backoff, requeue everything),
and runs a handler's writes on a small pool so that one slow request does not hold up every
other Service.

Start-up order is the no-churn contract in code: wait until every cache has synced, load
the config, restore every Service's status IPs (oldest first), and only then process keys;
no Service is touched until a valid config has been loaded once. An invalid config later
keeps the last good one in force and says what is wrong on the objects themselves.

This module also holds the two adapters the handlers see the cluster through: the
informers' caches (:class:`InformerCluster`) and the API client plus the event recorder
(:class:`KubeWriter`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from controller import metrics
from controller.reconciler import (
    CONFIG_KEY,
    POOLS_DELAY,
    POOLS_KEY,
    Reconciler,
    Result,
    Write,
)
from controller.status import ServicePatches
from exalb.config.problems import ObjectRef, Subject
from exalb.k8s.client import JSON, ApiError, KubeClient
from exalb.k8s.events import EventRecorder
from exalb.k8s.informer import Informer
from exalb.k8s.resources import (
    CONFIG_KINDS,
    CONFIG_MAPS,
    IP_ADDRESS_POOLS,
    NAMESPACES,
    SERVICES,
)
from exalb.k8s.workqueue import WorkQueue

log = structlog.get_logger(__name__)

WRITERS = 8
METRICS_INTERVAL = 1.0


def _always() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class _LoopState:
    """What :meth:`Controller.run` remembers between keys."""

    started: float
    settled: bool = False  # the initial reconcile is complete
    processed: int = 0
    booted: bool = False  # restored from status since leadership was (re)gained


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InformerCluster:
    """:class:`~controller.reconciler.ClusterReader` over the controller's informers."""

    def __init__(self, controller: Controller) -> None:
        self.c = controller

    def service(self, key: str) -> JSON | None:
        return self.c.services.get(key)

    def services(self) -> list[JSON]:
        return self.c.services.items()

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.c.namespaces.get(namespace) or {}
        labels = (ns.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def config_documents(self) -> list[tuple[str, Any]]:
        docs: list[tuple[str, Any]] = []
        for inf in self.c.config_informers:
            docs.extend((inf.resource.kind, obj) for obj in inf.items())
        cm = self.c.config_maps.get(f"{self.c.namespace}/{self.c.config_map}")
        if cm is not None:
            docs.append(("ConfigMap", cm))
        return docs

    def config_object(self, subject: Subject) -> JSON | None:
        """The object an event about ``subject`` goes on: the metallb.io object itself, or
        the legacy ConfigMap for anything converted from it (or the document as a whole)."""
        c = self.c
        if isinstance(subject, ObjectRef) and not subject.legacy:
            for inf in c.config_informers:
                if inf.resource.kind == subject.kind:
                    found = inf.get(f"{c.namespace}/{subject.name}")
                    if found is not None:
                        return found
        # converted from the legacy ConfigMap (a cross-object check names the converted
        # object), or about the document as a whole
        return c.config_maps.get(f"{c.namespace}/{c.config_map}")

    def pools(self) -> list[JSON]:
        inf = next(i for i in self.c.config_informers if i.resource == IP_ADDRESS_POOLS)
        return inf.items()


class KubeWriter:
    """:class:`~controller.reconciler.Writer` over the API client and the event recorder."""

    def __init__(self, kube: KubeClient, recorder: EventRecorder, namespace: str) -> None:
        self.kube = kube
        self.recorder = recorder
        self.namespace = namespace

    def patch_service(self, obj: JSON, patches: ServicePatches) -> None:
        """One PATCH to the status subresource carrying both the pool annotation and the
        status: one write and one watch event per Service, and a reader never sees the IP
        without its pool. The main resource would drop a status change, but the Service
        status strategy resets only ``spec`` (Kubernetes ``pkg/registry/core/service``:
        ``serviceStatusStrategy.PrepareForUpdate``), so metadata goes through (checked
        against the real API server by ``tests/k8s/test_controller.py``)."""
        meta = obj.get("metadata") or {}
        name, ns = str(meta.get("name")), str(meta.get("namespace"))
        body: JSON = {**(patches.metadata or {}), **(patches.status or {})}
        if body:
            self.kube.patch(SERVICES, name, body, ns, subresource="status")

    def patch_pool_status(self, name: str, status: dict[str, int]) -> None:
        self.kube.patch(
            IP_ADDRESS_POOLS, name, {"status": status}, self.namespace, subresource="status"
        )

    def record(
        self, obj: JSON, reason: str, message: str, *, warning: bool = False, dedupe: bool = True
    ) -> bool:
        return self.recorder.record(obj, reason, message, warning=warning, dedupe=dedupe)


class Controller:
    """Informers, the work queue and the loop around one :class:`Reconciler`."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        config_map: str = "config",
        lb_class: str | None = None,
        recorder: EventRecorder | None = None,
        now: Callable[[], str] = _now,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.config_map = config_map
        self.lb_class = lb_class
        self.now = now
        self.queue = WorkQueue()
        self.writer = KubeWriter(
            kube, recorder or EventRecorder(kube, "exalb-controller"), namespace
        )
        self.reconciler = self._new_reconciler()
        self._metrics_at = 0.0
        self.services = Informer(kube, SERVICES, self._on_service)
        self.namespaces = Informer(kube, NAMESPACES, self._on_namespace)
        self.config_informers = [
            Informer(kube, r, self._on_config, namespace=namespace) for r in CONFIG_KINDS
        ]
        self.config_maps = Informer(kube, CONFIG_MAPS, self._on_config_map, namespace=namespace)

    def _new_reconciler(self) -> Reconciler:
        return Reconciler(
            InformerCluster(self),
            self.writer,
            self.queue,
            namespace=self.namespace,
            lb_class=self.lb_class,
            now=self.now,
        )

    # ------------------------------------------------------------------ events
    def _on_service(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        if (
            event == "modified"
            and old is not None
            and new is not None
            and old.get("spec") == new.get("spec")
            and (old.get("metadata") or {}).get("annotations")
            == (new.get("metadata") or {}).get("annotations")
            and (old.get("metadata") or {}).get("labels")
            == (new.get("metadata") or {}).get("labels")
            and (old.get("status") or {}) == (new.get("status") or {})
        ):
            return  # nothing the allocator looks at changed (e.g. managedFields only)
        self.queue.add(f"svc:{key}")

    def _on_namespace(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        # Labels decide namespaceSelectors (allocation, and the notSelectedByPool flag); a
        # Namespace that arrives after its Services must not leave them judged without it.
        before = ((old or {}).get("metadata") or {}).get("labels")
        after = ((new or {}).get("metadata") or {}).get("labels")
        added_later = event == "added" and self.namespaces.synced.is_set()
        if (event == "modified" and before != after) or added_later:
            for obj in self.services.items():
                if (obj.get("metadata") or {}).get("namespace") == key:
                    self.queue.add(f"svc:{key}/{obj['metadata']['name']}")

    def _on_config(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        if (
            new is not None
            and old is not None
            and old.get("spec") == new.get("spec")
            and (
                (old.get("metadata") or {}).get("labels")
                == (new.get("metadata") or {}).get("labels")
            )
        ):
            return  # our own status writes
        self.queue.add(CONFIG_KEY)

    def _on_config_map(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        if key == f"{self.namespace}/{self.config_map}":
            self.queue.add(CONFIG_KEY)

    # ------------------------------------------------------------------ loop
    def informers(self) -> list[Informer]:
        return [self.services, self.namespaces, *self.config_informers, self.config_maps]

    def start_informers(self) -> None:
        for inf in self.informers():
            inf.start()

    def wait_synced(self, stop: threading.Event) -> bool:
        waiting = time.monotonic()
        for inf in self.informers():
            while not inf.synced.wait(1.0):
                if stop.is_set():
                    return False
                if time.monotonic() - waiting > 10:
                    log.warning("waiting for cache sync", resource=inf.resource.plural)
                    waiting = time.monotonic()
        return True

    def bootstrap(self, fresh: bool = False) -> None:
        """Load config, then restore every assignment from status before any allocation.

        ``fresh``: leadership was lost and regained; another replica may have assigned IPs
        meanwhile, so the handlers start over from a direct list of the Services (the
        caches may still be catching up after an outage).
        """
        if fresh:
            self.reconciler = self._new_reconciler()
        objects = self.kube.list(SERVICES).items if fresh else self.services.items()
        for key in self.reconciler.restore(objects):
            self.queue.add(key)

    def run(self, stop: threading.Event, leading: threading.Event | None = None) -> None:
        """Reconcile while ``leading`` is set (always, without leader election).

        Losing leadership pauses the loop instead of exiting: when it is regained, the
        allocator is rebuilt from the Services' status before anything else happens, since
        another replica may have acted in between.
        """
        leading = leading or _always()
        self.start_informers()
        if not self.wait_synced(stop):
            return
        loop = _LoopState(started=time.monotonic())
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="status-write") as writers:
            while not stop.is_set():
                if self._ready(loop, stop, leading):
                    self._step(loop, writers)
        for inf in self.informers():
            inf.stop()

    def _ready(self, loop: _LoopState, stop: threading.Event, leading: threading.Event) -> bool:
        """Whether to process keys now: leading, and booted from status since leadership
        was (re)gained. Waits a little when not."""
        if not leading.is_set():
            if loop.booted:
                log.warning("leadership lost: paused until it is regained")
                loop.booted = False
            leading.wait(0.5)
            return False
        if loop.booted:
            return True
        try:
            self.bootstrap(fresh=loop.processed > 0 or loop.settled)
        except ApiError as exc:
            log.warning("bootstrap failed, retrying", error=str(exc))
            stop.wait(1.0)
            return False
        loop.booted = True
        return True

    def _step(self, loop: _LoopState, writers: ThreadPoolExecutor) -> None:
        """Process one key, or note that the initial reconcile is done when none comes."""
        self._maybe_publish()
        key = self.queue.get(timeout=0.2)
        if key is None:
            if not loop.settled and self.reconciler.config_ready:
                loop.settled = True
                log.info(
                    "initial reconcile complete",
                    processed=loop.processed,
                    seconds=round(time.monotonic() - loop.started, 3),
                )
            return
        loop.processed += 1
        try:
            outcome = self.reconciler.process(key)
        except Exception:
            log.exception("reconcile crashed", key=key)
            outcome = Result.RETRY
        if isinstance(outcome, Result):
            self._finish(key, outcome)
        else:
            writers.submit(self._run_write, key, outcome)

    def _run_write(self, key: str, write: Write) -> None:
        try:
            result = write()
        except Exception:
            log.exception("status write crashed", key=key)
            result = Result.RETRY
        self._finish(key, result)

    def _maybe_publish(self, force: bool = False) -> None:
        r = self.reconciler
        now = time.monotonic()
        if r.metrics_dirty and (force or now - self._metrics_at >= METRICS_INTERVAL):
            metrics.publish_allocator(
                r.allocator, len(r.pending), len(r.conflicts), r.flag_counts()
            )
            r.metrics_dirty = False
            self._metrics_at = now

    def _finish(self, key: str, result: Result) -> None:
        metrics.UPDATES.inc()
        if result is Result.RETRY:
            metrics.UPDATE_ERRORS.inc()
            delay = self.queue.add_rate_limited(key)
            log.info("requeued", key=key, delay=round(delay, 3))
        else:
            self.queue.forget(key)
            if result is Result.PERMANENT:
                metrics.UPDATE_ERRORS.inc()
            if result is Result.REPROCESS_ALL:
                for obj in self.services.items():
                    meta = obj.get("metadata") or {}
                    self.queue.add(f"svc:{meta.get('namespace')}/{meta.get('name')}")
                self.queue.add_after(POOLS_KEY, POOLS_DELAY)
        self.queue.done(key)
