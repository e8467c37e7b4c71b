"""Tear a run down from its recorded state, in the order of docs/lab.md, "Teardown order".

Why a separate module: the same code runs at the end of ``Lab.up``'s ``with`` block, on
``scripts/lab down`` in another process, and when a sweeper removes runs whose owner died.
Only PIDs inside the run's own namespaces are signalled; only the run's namespaces are
deleted. Each step runs even if an earlier one failed.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lab import netns
from lab.cluster import cleanup, hostguard
from lab.rundir import STAGE_APP, STAGE_FRR, RunState, list_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeardownReport:
    """What a teardown did, for logs and test assertions."""

    run: str
    signalled: tuple[int, ...]
    namespaces: tuple[str, ...]
    seconds: float


def teardown(state: RunState, frr_grace: float = 3.0, app_grace: float = 2.0) -> TeardownReport:
    """Stop apps, then FRR, then stragglers; delete namespaces and the run directory."""
    started = time.monotonic()
    namespaces = [ns for ns in state.namespaces if netns.exists(ns)]
    in_run = [p for ns in namespaces for p in netns.pids(ns)]
    signalled: list[int] = []
    for stage, grace in ((STAGE_APP, app_grace), (STAGE_FRR, frr_grace)):
        pids = [r.pid for r in state.processes if r.stage == stage]
        if stage == STAGE_APP:  # ExaBGP's CLI/API children go with it
            pids += [c for p in pids for c in netns.children(p, in_run)]
        signalled += _safely(partial(netns.stop, pids, namespaces, grace))
        if stage == STAGE_APP:  # pods live in namespaces of their own: found by cgroup
            for cgroup in state.cgroups:
                signalled += _safely(partial(cleanup.kill_cgroup, cgroup))
    leftovers = [p for ns in namespaces for p in netns.pids(ns)]
    if leftovers:
        log.info("lab %s: stopping stragglers %s", state.run, leftovers)
        signalled += _safely(partial(netns.stop, leftovers, namespaces, 1.0))
    for ns in namespaces:
        try:
            netns.delete(ns)
        except Exception:
            log.exception("lab %s: deleting namespace %s failed", state.run, ns)
    _cluster_leftovers(state)
    shutil.rmtree(state.directory, ignore_errors=True)
    return TeardownReport(
        state.run, tuple(signalled), tuple(namespaces), time.monotonic() - started
    )


def _cluster_leftovers(state: RunState) -> None:
    """Mounts below the run's directories, its cgroups and directories, the host guard."""
    dirs = [Path(p) for p in state.paths] + [state.directory]
    _safely(partial(_none, cleanup.unmount_below, dirs))
    for cgroup in state.cgroups:
        _safely(partial(_none, cleanup.remove_cgroup_root, cgroup))
    for path in state.paths:
        shutil.rmtree(path, ignore_errors=True)
    if state.host_guard:
        _safely(partial(_none, hostguard.release, state.run))


def _none(fn: Callable[[Any], object], arg: object) -> list[int]:
    fn(arg)
    return []


def _safely(step: Callable[[], Iterable[int]]) -> list[int]:
    """Run one teardown step; log and continue on failure so later steps still run."""
    try:
        result = step()
    except Exception:
        log.exception("lab teardown step failed; continuing")
        return []
    return list(result)


def sweep_stale() -> list[TeardownReport]:
    """Tear down non-persistent runs whose owner process is gone (crashed test runs)."""
    return [teardown(s) for s in list_runs() if not s.persistent and not s.owner_alive()]
