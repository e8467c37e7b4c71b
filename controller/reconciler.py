"""The controller's handlers: one key in, a decision and the writes it needs out.

Why apart from the loop (:mod:`controller.app`): what the controller *decides* for a key
(config loaded or refused, a Service's IPs, conditions, events, pool counters) must be
testable without an apiserver, and the loop's concerns (informers, leadership, the writer
pool, retries with back-off) must not leak into it. So the handlers see the cluster only
through :class:`ClusterReader`, write only through :class:`Writer`, requeue only through
:class:`Requeue`, and return a :class:`Result` (or a deferred write) whose meaning only the
loop decides. ``tests/unit/test_controller_handlers.py`` drives them with small fakes.

State lives here, on the single decision thread: the allocator (so it needs no locks), what
each Service is pending for, flagged with or in conflict about (metrics), and the events
last recorded per Service (only news is recorded again).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from controller import metrics
from controller.allocator import IP_CONFLICT, Allocator, Decision
from controller.plan import is_ours
from controller.status import ServicePatches, service_patches
from exalb.config.documents import internal_error, parse_documents
from exalb.config.model import Config
from exalb.config.problems import Problem, Subject
from exalb.config.result import ParseResult
from exalb.contracts.service_status import POOL_ANNOTATION
from exalb.k8s.client import JSON, ApiError
from exalb.views import ServiceView, service_view

log = structlog.get_logger("controller.app")

CONFIG_KEY = "config"
POOLS_KEY = "pools"
INT64_MAX = 2**63 - 1
POOLS_DELAY = 1.0  # pool counters are written at most about once a second


class Result(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    REPROCESS_ALL = "reprocess-all"
    PERMANENT = "permanent-error"


# A Service's writes, run on the loop's writer pool; the queue never hands out a key that is
# still being written, so writes for one Service keep their order.
Write = Callable[[], Result]


class ClusterReader(Protocol):
    """What the handlers read (the informers' caches, in the controller)."""

    def service(self, key: str) -> JSON | None: ...

    def services(self) -> list[JSON]: ...

    def namespace_labels(self, namespace: str) -> dict[str, str]: ...

    def config_documents(self) -> list[tuple[str, Any]]: ...

    def config_object(self, subject: Subject) -> JSON | None: ...

    def pools(self) -> list[JSON]: ...


class Writer(Protocol):
    """What the handlers write; API failures arrive as :class:`ApiError`."""

    def patch_service(self, obj: JSON, patches: ServicePatches) -> None: ...

    def patch_pool_status(self, name: str, status: dict[str, int]) -> None: ...

    def record(
        self, obj: JSON, reason: str, message: str, *, warning: bool = False, dedupe: bool = True
    ) -> bool: ...


class Requeue(Protocol):
    def add(self, key: str) -> None: ...

    def add_after(self, key: str, delay: float) -> None: ...


class Reconciler:
    """Handlers for the keys ``config``, ``pools`` and ``svc:<namespace>/<name>``."""

    def __init__(
        self,
        cluster: ClusterReader,
        writer: Writer,
        queue: Requeue,
        *,
        namespace: str,
        lb_class: str | None,
        now: Callable[[], str],
    ) -> None:
        self.cluster = cluster
        self.writer = writer
        self.queue = queue
        self.namespace = namespace
        self.lb_class = lb_class
        self.now = now
        self.allocator = Allocator()
        self.config_ready = False
        self.pending: set[str] = set()
        self.conflicts: set[str] = set()
        self.flags: dict[str, frozenset[str]] = {}
        self.metrics_dirty = True
        # The events last recorded per Service: only what is new gets recorded again.
        self._said: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self._reported_problems: set[str] = set()

    # -- start-up -----------------------------------------------------------------------------
    def restore(self, services: list[JSON]) -> list[str]:
        """Load the config, then take every Service's IPs from its status before anything is
        allocated (the no-churn contract); the keys to process, oldest Service first."""
        self.handle_config()
        ours = [v for v in map(service_view, services) if is_ours(v, self.lb_class)]
        restored = self.allocator.restore_all(ours)
        conflicts = [k for k, d in restored.items() if d.reason == IP_CONFLICT]
        log.info("restored assignments", services=len(restored), conflicts=len(conflicts))
        ordered = sorted(ours, key=lambda v: (not v.assigned_ips, v.creation_timestamp, v.key))
        return [*(f"svc:{v.key}" for v in ordered), POOLS_KEY]

    def process(self, key: str) -> Result | Write:
        if key == CONFIG_KEY:
            return self.handle_config()
        if key == POOLS_KEY:
            return self.write_pool_status()
        if key.startswith("svc:"):
            if not self.config_ready:
                return Result.OK  # the first valid config requeues everything
            return self.handle_service(key[4:])
        return Result.PERMANENT

    # -- config -------------------------------------------------------------------------------
    def handle_config(self) -> Result:
        """Load the config; a refused one keeps the last good config (stale metric), and so
        does any exception on the way (the controller must not crash-loop on input)."""
        try:
            result = parse_documents(self.cluster.config_documents(), namespace=self.namespace)
        except Exception as exc:  # parse_documents promises not to raise; be sure
            log.exception("config parse crashed")
            result = ParseResult(None, (internal_error("config", exc),))
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
        if self.config_ready and result.config == self.allocator.config:
            return Result.OK
        changed = self.allocator.set_config(result.config)
        log.info(
            "config loaded",
            source=result.config.source,
            pools=[p.name for p in result.config.pools],
            moved_flags=len(changed),
        )
        _warn_empty(result.config)
        self.config_ready = True
        return Result.REPROCESS_ALL

    def _report_problems(self, problems: tuple[Problem, ...]) -> None:
        """Events on the objects named by each problem, once per distinct problem."""
        current = {str(p) for p in problems}
        for problem in problems:
            text = str(problem)
            if text in self._reported_problems:
                continue
            if problem.severity == "error":
                log.error("config problem", problem=text)
            else:
                log.warning("config warning", problem=text)
            obj = self.cluster.config_object(problem.obj)
            if obj is not None:
                reason = "InvalidConfig" if problem.severity == "error" else "ConfigWarning"
                self.writer.record(obj, reason, text, warning=True)
        self._reported_problems = current

    # -- services -----------------------------------------------------------------------------
    def handle_service(self, key: str) -> Result | Write:
        """Decide now (single thread); return the writes to run on the writer pool."""
        obj = self.cluster.service(key)
        if obj is None:
            return self._release(key, None)
        view = service_view(obj)
        if not is_ours(view, self.lb_class):
            return self._release(key, obj)
        decision = self.allocator.assign(view, self.cluster.namespace_labels(view.namespace))
        self._track(key, decision)
        patches = service_patches(obj, decision, self.now())
        batch = (*decision.events(), *_deprecation_events(view, decision))
        if decision.changed:
            self.queue.add_after(POOLS_KEY, POOLS_DELAY)
        said = self._said.get(key, ())
        news = [e for e in batch if e not in said]
        if patches.status is None and patches.metadata is None and not news:
            self._said[key] = batch
            return Result.OK

        def write() -> Result:
            result = self._write(obj, patches)
            if result is Result.OK:
                for reason, message, warning in news:
                    self.writer.record(obj, reason, message, warning=warning, dedupe=False)
                self._said[key] = batch
            return result

        return write

    def _track(self, key: str, decision: Decision) -> None:
        _toggle(self.pending, key, decision.pending)
        _toggle(self.conflicts, key, decision.reason == IP_CONFLICT)
        kinds = frozenset(f.kind for f in decision.flags)
        if kinds:
            self.flags[key] = kinds
        else:
            self.flags.pop(key, None)
        self.metrics_dirty = True

    def _release(self, key: str, obj: JSON | None) -> Result:
        released = self.allocator.release(key)
        self.pending.discard(key)
        self.conflicts.discard(key)
        self.flags.pop(key, None)
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
            for pending in sorted(self.pending):
                self.queue.add(f"svc:{pending}")
            self.queue.add_after(POOLS_KEY, POOLS_DELAY)
        self.metrics_dirty = True
        return Result.OK

    def _write(self, obj: JSON, patches: ServicePatches) -> Result:
        try:
            self.writer.patch_service(obj, patches)
        except ApiError as exc:
            if exc.not_found:
                return Result.OK  # deleted meanwhile; the delete event releases it
            if exc.conflict or exc.transient:
                return Result.RETRY
            meta = obj.get("metadata") or {}
            service = f"{meta.get('namespace')}/{meta.get('name')}"
            log.error("status write refused", service=service, error=str(exc))
            return Result.PERMANENT
        return Result.OK

    # -- pools --------------------------------------------------------------------------------
    def write_pool_status(self) -> Result:
        """Per-pool counters on IPAddressPool.status (MetalLB's fields, int64-clamped)."""
        usage: dict[str, dict[str, int]] = {}
        for u in self.allocator.usage():
            fam = f"IPv{u.family}"
            usage.setdefault(u.pool, {})[f"assigned{fam}"] = min(u.in_use, INT64_MAX)
            usage[u.pool][f"available{fam}"] = min(u.capacity - u.in_use, INT64_MAX)
        result = Result.OK
        for obj in self.cluster.pools():
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
                self.writer.patch_pool_status(name, want)
            except ApiError as exc:
                if exc.transient or exc.conflict:
                    result = Result.RETRY
                elif not exc.not_found:
                    log.warning("pool status write refused", pool=name, error=str(exc))
        return result

    def flag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kinds in self.flags.values():
            for kind in kinds:
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def _toggle(keys: set[str], key: str, present: bool) -> None:
    if present:
        keys.add(key)
    else:
        keys.discard(key)


def _deprecation_events(view: ServiceView, decision: Decision) -> tuple[tuple[str, str, bool], ...]:
    if not (view.deprecated_annotations and decision.ips):
        return ()
    names = ", ".join(view.deprecated_annotations)
    message = f"annotations {names} are deprecated; use the metallb.io/ prefix"
    return (("deprecatedAnnotation", message, True),)


def _warn_empty(config: Config) -> None:
    """MetalLB clears every Service when no pool exists (``convergeBalancer``: "pools are
    empty") and says nothing on the Services. exalb keeps every IP (flagged out-of-pool) and
    gives each Service still waiting an ``AllocationFailed`` warning that names the cause
    (see the README)."""
    if not config.pools:
        log.warning("no address pools: existing IPs are kept, nothing new is allocated")
