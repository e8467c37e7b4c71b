"""The controller's reconcile loop: informers in, allocator decisions, status writes out.

One worker processes one de-duplicated queue of keys (``svc:<ns>/<name>``, ``config``,
``pools``), so the allocator needs no locks and every decision sees a consistent state.
Handlers return a :class:`Result`; only the loop decides what it means (forget, requeue
with backoff, requeue everything).

Start-up order is the no-churn contract in code: wait until every cache has synced, load
the config, restore every Service's status IPs (oldest first), and only then process keys;
no Service is touched until a valid config has been loaded once. An invalid config later
keeps the last good one in force and says what is wrong on the objects themselves.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import structlog

from controller import metrics
from controller.allocator import IP_CONFLICT, Allocator, Decision
from controller.plan import is_ours
from controller.status import ServicePatches, service_patches
from exalb.config.documents import parse_documents
from exalb.config.model import Config
from exalb.config.problems import ObjectRef, Problem, Subject
from exalb.contracts.service_status import POOL_ANNOTATION
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
from exalb.views import ServiceView, service_view

log = structlog.get_logger(__name__)

CONFIG_KEY = "config"
POOLS_KEY = "pools"
INT64_MAX = 2**63 - 1


class Result(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    REPROCESS_ALL = "reprocess-all"
    PERMANENT = "permanent-error"


# Status writes run on a small pool so that one slow request does not hold up every other
# Service; decisions stay on the single worker thread. The queue never hands out a key that
# is still being written, so writes for one Service keep their order.
Write = Callable[[], Result]
WRITERS = 8
METRICS_INTERVAL = 1.0


def _always() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
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
        self.recorder = recorder or EventRecorder(kube, "exalb-controller")
        self.now = now
        self.queue = WorkQueue()
        self.allocator = Allocator()
        self.config_ready = threading.Event()
        self._pending: set[str] = set()
        self._conflicts: set[str] = set()
        self._flags: dict[str, frozenset[str]] = {}
        # The events last recorded per Service: only what is new gets recorded again.
        self._said: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self._reported_problems: set[str] = set()
        self._metrics_dirty = True
        self._metrics_at = 0.0
        self.services = Informer(kube, SERVICES, self._on_service)
        self.namespaces = Informer(kube, NAMESPACES, self._on_namespace)
        self.config_informers = [
            Informer(kube, r, self._on_config, namespace=namespace) for r in CONFIG_KINDS
        ]
        self.config_maps = Informer(kube, CONFIG_MAPS, self._on_config_map, namespace=namespace)

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
        meanwhile, so the allocator starts over from a direct list of the Services (the
        caches may still be catching up after an outage).
        """
        if fresh:
            self.allocator = Allocator()
            self.config_ready.clear()
            self._pending.clear()
            self._conflicts.clear()
            self._flags.clear()
        self.handle_config()
        objects = self.kube.list(SERVICES).items if fresh else self.services.items()
        ours = [v for v in map(service_view, objects) if is_ours(v, self.lb_class)]
        restored = self.allocator.restore_all(ours)
        conflicts = [k for k, d in restored.items() if d.reason == IP_CONFLICT]
        log.info("restored assignments", services=len(restored), conflicts=len(conflicts))
        for v in sorted(ours, key=lambda v: (not v.assigned_ips, v.creation_timestamp, v.key)):
            self.queue.add(f"svc:{v.key}")
        self.queue.add(POOLS_KEY)

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
        started = time.monotonic()
        settled = False
        processed = 0
        booted = False
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="status-write") as writers:
            while not stop.is_set():
                if not leading.is_set():
                    if booted:
                        log.warning("leadership lost: paused until it is regained")
                        booted = False
                    leading.wait(0.5)
                    continue
                if not booted:
                    try:
                        self.bootstrap(fresh=processed > 0 or settled)
                    except ApiError as exc:
                        log.warning("bootstrap failed, retrying", error=str(exc))
                        stop.wait(1.0)
                        continue
                    booted = True
                self._maybe_publish()
                key = self.queue.get(timeout=0.2)
                if key is None:
                    if not settled and self.config_ready.is_set():
                        settled = True
                        log.info(
                            "initial reconcile complete",
                            processed=processed,
                            seconds=round(time.monotonic() - started, 3),
                        )
                    continue
                processed += 1
                try:
                    outcome = self.process(key)
                except Exception:
                    log.exception("reconcile crashed", key=key)
                    outcome = Result.RETRY
                if isinstance(outcome, Result):
                    self._finish(key, outcome)
                else:
                    writers.submit(self._run_write, key, outcome)
        for inf in self.informers():
            inf.stop()

    def _run_write(self, key: str, write: Write) -> None:
        try:
            result = write()
        except Exception:
            log.exception("status write crashed", key=key)
            result = Result.RETRY
        self._finish(key, result)

    def _maybe_publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._metrics_dirty and (force or now - self._metrics_at >= METRICS_INTERVAL):
            counts: dict[str, int] = {}
            for kinds in self._flags.values():
                for kind in kinds:
                    counts[kind] = counts.get(kind, 0) + 1
            metrics.publish_allocator(
                self.allocator, len(self._pending), len(self._conflicts), counts
            )
            self._metrics_dirty = False
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
                self.queue.add_after(POOLS_KEY, 1.0)
        self.queue.done(key)

    def process(self, key: str) -> Result | Write:
        if key == CONFIG_KEY:
            return self.handle_config()
        if key == POOLS_KEY:
            return self.write_pool_status()
        if key.startswith("svc:"):
            if not self.config_ready.is_set():
                return Result.OK  # the first valid config requeues everything
            return self.handle_service(key[4:])
        return Result.PERMANENT

    # ------------------------------------------------------------------ config
    def _config_objects(self) -> list[tuple[str, Any]]:
        docs: list[tuple[str, Any]] = []
        for inf in self.config_informers:
            docs.extend((inf.resource.kind, obj) for obj in inf.items())
        cm = self.config_maps.get(f"{self.namespace}/{self.config_map}")
        if cm is not None:
            docs.append(("ConfigMap", cm))
        return docs

    def handle_config(self) -> Result:
        result = parse_documents(self._config_objects(), namespace=self.namespace)
        self._report_problems(result.problems)
        if result.config is None:
            metrics.CONFIG_STALE.set(1)
            log.error(
                "config invalid; the last good config stays in force",
                errors=[str(p) for p in result.errors],
            )
            return Result.OK
        metrics.CONFIG_STALE.set(0)
        metrics.CONFIG_LOADED.set(1)
        first = not self.config_ready.is_set()
        if not first and result.config == self.allocator.config:
            return Result.OK
        changed = self.allocator.set_config(result.config)
        log.info(
            "config loaded",
            source=result.config.source,
            pools=[p.name for p in result.config.pools],
            moved_flags=len(changed),
        )
        self._warn_empty(result.config)
        self.config_ready.set()
        return Result.REPROCESS_ALL

    def _warn_empty(self, config: Config) -> None:
        """MetalLB clears every Service when no pool exists (``convergeBalancer``: "pools
        are empty") and says nothing on the Services. exalb keeps every IP (flagged
        out-of-pool) and gives each Service still waiting an ``AllocationFailed`` warning
        that names the cause (see the README)."""
        if not config.pools:
            log.warning("no address pools: existing IPs are kept, nothing new is allocated")

    def _report_problems(self, problems: tuple[Problem, ...]) -> None:
        """Events on the objects named by each problem, once per distinct problem."""
        current = {str(p) for p in problems}
        for problem in problems:
            text = str(problem)
            if text in self._reported_problems:
                continue
            obj = self._find_config_object(problem.obj)
            if problem.severity == "error":
                log.error("config problem", problem=text)
            else:
                log.warning("config warning", problem=text)
            if obj is not None:
                self.recorder.record(
                    obj,
                    "InvalidConfig" if problem.severity == "error" else "ConfigWarning",
                    text,
                    warning=True,
                )
        self._reported_problems = current

    def _find_config_object(self, subject: Subject) -> JSON | None:
        """The object an event about ``subject`` goes on: the metallb.io object itself, or
        the legacy ConfigMap for anything converted from it (or the document as a whole)."""
        if not isinstance(subject, ObjectRef) or subject.legacy or subject.kind == "ConfigMap":
            return self.config_maps.get(f"{self.namespace}/{self.config_map}")
        for inf in self.config_informers:
            if inf.resource.kind == subject.kind:
                return inf.get(f"{self.namespace}/{subject.name}")
        return None

    # ------------------------------------------------------------------ services
    def _views(self) -> list[ServiceView]:
        return [service_view(o) for o in self.services.items()]

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.namespaces.get(namespace) or {}
        labels = (ns.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def handle_service(self, key: str) -> Result | Write:
        """Decide now (single thread); return the writes to run on the writer pool."""
        obj = self.services.get(key)
        if obj is None:
            return self._release(key, None)
        view = service_view(obj)
        if not is_ours(view, self.lb_class):
            return self._release(key, obj)
        decision = self.allocator.assign(view, self._namespace_labels(view.namespace))
        self._track(key, decision)
        patches = service_patches(obj, decision, self.now())
        events = list(decision.events())
        if view.deprecated_annotations and decision.ips:
            events.append(
                (
                    "deprecatedAnnotation",
                    f"annotations {', '.join(view.deprecated_annotations)} are "
                    "deprecated; use the metallb.io/ prefix",
                    True,
                )
            )
        if decision.changed:
            self.queue.add_after(POOLS_KEY, 1.0)
        batch = tuple(events)
        said = self._said.get(key, ())
        news = [e for e in batch if e not in said]
        if patches.status is None and patches.metadata is None and not news:
            self._said[key] = batch
            return Result.OK

        def write() -> Result:
            result = self._write(obj, patches)
            if result is Result.OK:
                for reason, message, warning in news:
                    self.recorder.record(obj, reason, message, warning=warning, dedupe=False)
                self._said[key] = batch
            return result

        return write

    def _track(self, key: str, decision: Decision) -> None:
        if decision.pending:
            self._pending.add(key)
        else:
            self._pending.discard(key)
        if decision.reason == IP_CONFLICT:
            self._conflicts.add(key)
        else:
            self._conflicts.discard(key)
        kinds = frozenset(f.kind for f in decision.flags)
        if kinds:
            self._flags[key] = kinds
        else:
            self._flags.pop(key, None)
        self._metrics_dirty = True

    def _release(self, key: str, obj: JSON | None) -> Result:
        released = self.allocator.release(key)
        self._pending.discard(key)
        self._conflicts.discard(key)
        self._flags.pop(key, None)
        self._said.pop(key, None)
        if obj is not None:
            # Not ours any more (type or class changed): clear what we wrote.
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if released or POOL_ANNOTATION in annotations:
                result = self._write(obj, service_patches(obj, None, self.now()))
                if result is not Result.OK:
                    return result
        if released:
            log.info("released", service=key, ips=[str(i) for i in released])
            for pending in sorted(self._pending):
                self.queue.add(f"svc:{pending}")
            self.queue.add_after(POOLS_KEY, 1.0)
        self._metrics_dirty = True
        return Result.OK

    def _write(self, obj: JSON, patches: ServicePatches) -> Result:
        meta = obj.get("metadata") or {}
        name, ns = str(meta.get("name")), str(meta.get("namespace"))
        try:
            if patches.status is not None:
                self.kube.patch(SERVICES, name, patches.status, ns, subresource="status")
            if patches.metadata is not None:
                self.kube.patch(SERVICES, name, patches.metadata, ns)
        except ApiError as exc:
            if exc.not_found:
                return Result.OK  # deleted meanwhile; the delete event releases it
            if exc.conflict or exc.transient:
                return Result.RETRY
            log.error("status write refused", service=f"{ns}/{name}", error=str(exc))
            return Result.PERMANENT
        return Result.OK

    # ------------------------------------------------------------------ pools
    def write_pool_status(self) -> Result:
        """Per-pool counters on IPAddressPool.status (MetalLB's fields, int64-clamped)."""
        usage: dict[str, dict[str, int]] = {}
        for u in self.allocator.usage():
            fam = f"IPv{u.family}"
            usage.setdefault(u.pool, {})[f"assigned{fam}"] = min(u.in_use, INT64_MAX)
            usage[u.pool][f"available{fam}"] = min(u.capacity - u.in_use, INT64_MAX)
        pools = next(i for i in self.config_informers if i.resource == IP_ADDRESS_POOLS)
        result = Result.OK
        for obj in pools.items():
            name = str((obj.get("metadata") or {}).get("name"))
            want = {
                "assignedIPv4": 0,
                "availableIPv4": 0,
                "assignedIPv6": 0,
                "availableIPv6": 0,
                **usage.get(name, {}),
            }
            have = obj.get("status") or {}
            if all(have.get(k) == v for k, v in want.items()):
                continue
            try:
                self.kube.patch(
                    IP_ADDRESS_POOLS, name, {"status": want}, self.namespace, subresource="status"
                )
            except ApiError as exc:
                if exc.transient or exc.conflict:
                    result = Result.RETRY
                elif not exc.not_found:
                    log.warning("pool status write refused", pool=name, error=str(exc))
        return result
