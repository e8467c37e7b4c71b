"""List-then-watch caches of Kubernetes objects, one thread per resource.

Each informer lists once, then watches from the list's resourceVersion with bookmarks, so a
quiet resource still advances its resourceVersion and a reconnect resumes instead of
re-listing. A 410 Gone (the version is too old) re-lists and reports only real differences
(by resourceVersion) to the handler, so an API server outage of any length ends with every
change delivered exactly once and nothing delivered twice. Transient errors back off with
jitter; nothing here ever gives up. The first answer from the API server after a failure
cuts every informer's backoff short (:mod:`exalb.k8s.reachability`), so after an outage
the caches come back together, not one by one.

Cached objects are kept without ``metadata.managedFields`` (server-side apply's record of
which client set which field): nothing in exalb reads it, and it is about half of a
Service's parsed size (measured: 10,000 Services with the two managers a controller and a
client leave take 114 MiB as parsed JSON, 55 MiB without), in every controller and speaker
(client-go's informers offer the same cut as ``TransformStripManagedFields``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import structlog

from exalb.k8s.client import JSON, ApiError, KubeClient
from exalb.k8s.resources import Resource, object_key

log = structlog.get_logger(__name__)

# handler(event, key, old, new): event is "added", "modified" or "deleted".
Handler = Callable[[str, str, JSON | None, JSON | None], None]


def slim(obj: JSON) -> JSON:
    """``obj`` without ``metadata.managedFields`` (in place; returned for chaining)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _rv(obj: JSON | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        handler: Handler,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 240,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        # e.g. ``metadata.name=config``: lets a least-privilege reader watch one object
        self.field_selector = field_selector
        self.handler = handler
        self.watch_timeout = watch_timeout
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._cache: dict[str, JSON] = {}
        self._rv = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- cache
    def get(self, key: str) -> JSON | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._cache.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    # ---------------------------------------------------------------- life
    def start(self) -> Informer:
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"informer-{self.resource.plural}"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.kube.reachability.wake()

    def _back_off(self, seen: int, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the API server answers again meanwhile."""
        self.kube.reachability.wait(seen, delay, self._stop)

    def _run(self) -> None:
        failures = 0
        need_list = True
        while not self._stop.is_set():
            seen = self.kube.reachability.generation
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch()
                failures = 0
            except ApiError as exc:
                if exc.gone:
                    log.info("watch expired, re-listing", resource=self.resource.plural)
                    need_list = True
                    continue
                failures += 1
                delay = min(0.2 * 2 ** min(failures, 6), 10.0) * (0.5 + random.random())
                log.warning(
                    "list/watch failed, retrying",
                    resource=self.resource.plural,
                    error=str(exc),
                    status=exc.status,
                    retry_in=round(delay, 2),
                )
                if not exc.transient:
                    need_list = True  # e.g. 403 until RBAC lands: start over
                self._back_off(seen, delay)
            except Exception:  # never let a cache thread die
                failures += 1
                log.exception("informer error", resource=self.resource.plural)
                need_list = True
                self._back_off(seen, min(0.2 * 2 ** min(failures, 6), 10.0))

    def _relist(self) -> None:
        result = self.kube.list(
            self.resource,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        fresh = {object_key(o): slim(o) for o in result.items}
        with self._lock:
            old = self._cache
            self._cache = fresh
            self._rv = result.resource_version
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("added", key, None, obj)
            elif _rv(before) != _rv(obj):
                self._emit("modified", key, before, obj)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("deleted", key, obj, None)
        self.synced.set()

    def _watch(self) -> None:
        for etype, obj in self.kube.watch(
            self.resource,
            self._rv,
            self.namespace,
            timeout_seconds=self.watch_timeout,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            if self._stop.is_set():
                return
            rv = _rv(obj)
            if etype == "BOOKMARK":
                if rv:
                    self._rv = rv
                continue
            key = object_key(slim(obj))
            with self._lock:
                before = self._cache.get(key)
                if etype == "DELETED":
                    self._cache.pop(key, None)
                else:
                    self._cache[key] = obj
                if rv:
                    self._rv = rv
            if etype == "DELETED":
                self._emit("deleted", key, before, None)
            elif before is None:
                self._emit("added", key, None, obj)
            elif _rv(before) != rv:
                self._emit("modified", key, before, obj)

    def _emit(self, event: str, key: str, old: JSON | None, new: JSON | None) -> None:
        try:
            self.handler(event, key, old, new)
        except Exception:
            log.exception("informer handler failed", resource=self.resource.plural, key=key)


def wait_synced(informers: list[Informer], timeout: float | None = None) -> bool:
    return all(i.synced.wait(timeout) for i in informers)


__all__ = ["Any", "Handler", "Informer", "wait_synced"]
