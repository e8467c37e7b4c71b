"""The host guard (``lab.cluster.hostguard``): kubelet's global sysctls go back as they were.

Every kubelet start writes host-wide settings (``vm.overcommit_memory``, ``kernel.panic``, ...),
and lab clusters of several runs may overlap. These tests run the real module against a fake
``/proc/sys`` (``hostguard._PROC_SYS``), a run directory under ``tmp_path``
(``$EXALB_LAB_RUN_DIR``) and fake shared host paths (``hostguard.SHARED_PATHS``); a guard
refuses any write or removal outside ``tmp_path`` while a test runs, so the real ``/proc/sys``
is never written. A dead owner is a ``sleep`` child this test started and killed by its PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import rundir
from lab.cluster import hostguard
from lab.runner import Lab
from lab.teardown import sweep_stale
from lab.topology import topology_path

ORIGINAL = {
    "vm/overcommit_memory": "0",
    "vm/panic_on_oom": "0",
    "kernel/panic": "0",
    "kernel/panic_on_oops": "0",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
#: What kubelet's setupKernelTunables writes.
KUBELET = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


@dataclass
class Host:
    """The fake host: its /proc/sys, the run directory, a missing and an existing shared path."""

    proc: Path
    base: Path
    missing: Path
    existing: Path

    def sysctls(self) -> dict[str, str]:
        return {name: (self.proc / name).read_text().strip() for name in ORIGINAL}

    def kubelet_starts(self) -> None:
        for name, value in KUBELET.items():
            (self.proc / name).write_text(value + "\n")
        self.missing.mkdir(parents=True, exist_ok=True)  # e.g. /var/lib/kubelet

    def changed(self) -> bool:
        return self.sysctls() == {**ORIGINAL, **KUBELET}

    def restored(self) -> bool:
        return self.sysctls() == ORIGINAL and not self.missing.exists() and self.existing.is_dir()

    def guard_file(self) -> dict[str, Any] | None:
        path = self.base / "host-guard.json"
        return json.loads(path.read_text()) if path.exists() else None


def _inside(path: object, root: Path) -> bool:
    return Path(str(path)).resolve().is_relative_to(root.resolve())


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    assert Path("/proc/sys") == hostguard._PROC_SYS  # the default, replaced below
    fake = Host(tmp_path / "proc-sys", tmp_path / "runs", tmp_path / "var-lib-kubelet",
                tmp_path / "etc-cni")  # fmt: skip
    for name, value in ORIGINAL.items():
        (fake.proc / name).parent.mkdir(parents=True, exist_ok=True)
        (fake.proc / name).write_text(value + "\n")
    fake.existing.mkdir()
    monkeypatch.setattr(hostguard, "_PROC_SYS", fake.proc)
    monkeypatch.setattr(hostguard, "SHARED_PATHS", (str(fake.missing), str(fake.existing)))
    monkeypatch.setenv("EXALB_LAB_RUN_DIR", str(fake.base))

    write_text, rmtree = Path.write_text, shutil.rmtree

    def guarded_write(self: Path, *args: Any, **kwargs: Any) -> int:
        assert _inside(self, tmp_path), f"test wrote {self} outside its tmp_path"
        return write_text(self, *args, **kwargs)

    def guarded_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        assert _inside(path, tmp_path), f"test removed {path} outside its tmp_path"
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", guarded_write)
    monkeypatch.setattr(shutil, "rmtree", guarded_rmtree)
    return fake


def live_run(name: str) -> rundir.RunState:
    """A run owned by this (living) test process, as ``Lab.start`` records it."""
    return rundir.create(name, Path("t.clab.yml"), persistent=False)


def dead_run(name: str, persistent: bool = False) -> rundir.RunState:
    """A run whose owner has exited: a ``sleep`` child, killed by its PID and reaped."""
    state = rundir.create(name, Path("t.clab.yml"), persistent)
    child = subprocess.Popen(["sleep", "60"])
    try:
        start = rundir.process_start_time(child.pid)
    finally:
        child.kill()
        child.wait()
    state.owner_pid, state.owner_start = child.pid, start
    state.save()
    assert not state.owner_alive()
    return state


def join(state: rundir.RunState) -> None:
    """What ``Cluster.start`` does before the kubelets start."""
    state.join_host_guard()
    hostguard.acquire(state.run)


def test_acquire_records_the_originals_and_release_restores_them(host: Host) -> None:
    join(live_run("a"))
    assert host.guard_file() == {
        "sysctls": ORIGINAL,
        "created_paths": [str(host.missing)],  # the existing one is not the lab's to remove
        "runs": ["a"],
    }
    host.kubelet_starts()
    assert host.changed()
    assert hostguard.release("a") is True
    assert host.restored()
    assert host.guard_file() is None
    assert hostguard.release("a") is False  # a second release finds nothing to do


def test_the_last_of_several_owners_restores_and_the_others_do_not(host: Host) -> None:
    join(live_run("a"))
    host.kubelet_starts()
    join(live_run("b"))  # joins after a's kubelet: must not record the changed values
    join(live_run("c"))
    guard = host.guard_file()
    assert guard is not None
    assert guard["sysctls"] == ORIGINAL
    assert guard["runs"] == ["a", "b", "c"]
    assert hostguard.release("b") is False
    assert hostguard.release("a") is False
    assert host.changed()
    assert host.missing.exists()
    assert hostguard.release("c") is True
    assert host.restored()


def test_concurrent_releases_restore_exactly_once(host: Host) -> None:
    names = [f"r{i}" for i in range(8)]
    for name in names:
        join(live_run(name))
    host.kubelet_starts()
    start = threading.Barrier(len(names))
    results: list[bool] = []

    def leave(name: str) -> None:
        start.wait()
        results.append(hostguard.release(name))

    threads = [threading.Thread(target=leave, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False] * (len(names) - 1) + [True]
    assert host.restored()


def test_an_owner_whose_process_died_does_not_count(host: Host) -> None:
    join(dead_run("dead"))
    join(live_run("a"))
    host.kubelet_starts()
    assert hostguard.release("a") is True  # the dead run would otherwise keep the changes
    assert host.restored()


def test_a_persistent_run_counts_though_its_starter_exited(host: Host) -> None:
    join(dead_run("kept", persistent=True))  # scripts/lab up: the CLI process has exited
    join(live_run("a"))
    host.kubelet_starts()
    assert hostguard.release("a") is False
    assert host.changed()


def test_the_sweep_restores_what_a_dead_run_left(host: Host) -> None:
    dead = dead_run("dead")
    join(dead)
    host.kubelet_starts()
    reports = sweep_stale()  # scripts/lab down --stale, or a later run's sweep
    assert [r.run for r in reports] == ["dead"]
    assert host.restored()
    assert host.guard_file() is None
    assert not dead.directory.exists()


def test_the_sweep_leaves_the_changes_to_a_living_owner(host: Host) -> None:
    join(dead_run("dead"))
    join(live_run("a"))
    host.kubelet_starts()
    assert [r.run for r in sweep_stale()] == ["dead"]
    assert host.changed()
    guard = host.guard_file()
    assert guard is not None
    assert guard["runs"] == ["a"]
    assert hostguard.release("a") is True
    assert host.restored()


@pytest.mark.parametrize("failure", [RuntimeError("a node did not get Ready"), KeyboardInterrupt()])
def test_a_failure_after_acquire_in_lab_start_still_restores(
    host: Host, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    def build(lab: Lab) -> None:  # the cluster's bring-up, up to its first kubelet, then fails
        join(lab.state)
        host.kubelet_starts()
        raise failure

    monkeypatch.setattr(Lab, "_build", build)
    with pytest.raises(type(failure)):
        Lab.start(topology_path("l2-segment"), run="failing")
    assert host.restored()
    assert host.guard_file() is None
    assert not (host.base / "failing").exists()
