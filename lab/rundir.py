"""The run directory: what a lab run created, written down before it is created.

Why: teardown must work from a different process than bring-up (``scripts/lab down`` after
``scripts/lab up``, or after a crashed test run), and must never kill by name. So every
namespace is recorded *before* ``ip netns add`` and every PID right after its start, in
``<base>/<run>/state.json`` (base: ``$EXALB_LAB_RUN_DIR`` or ``/run/exalb-lab``). The
directory also holds each instance's files (FRR sockets, pid files and logs, ExaBGP
config, FIFOs and log), so a failed run can be read afterwards.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Teardown order: stage 0 (ExaBGP, test-started programs) before stage 1 (FRR).
STAGE_APP = 0
STAGE_FRR = 1
_SAVE_LOCK = threading.Lock()


def base_dir() -> Path:
    return Path(os.environ.get("EXALB_LAB_RUN_DIR", "/run/exalb-lab"))


@dataclass(frozen=True)
class ProcessRecord:
    """A process the run started: where, what, and when to stop it."""

    node: str
    name: str
    pid: int
    stage: int


@dataclass
class RunState:
    """Everything a run owns; saved to ``state.json`` on every change."""

    run: str
    directory: Path
    topology: str
    owner_pid: int
    owner_start: int | None
    persistent: bool
    namespaces: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    #: Cluster runs (lab/cluster/): cgroup roots of the nodes, directories outside the run
    #: directory (node data on disk), and whether the run joined the host guard.
    cgroups: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    host_guard: bool = False

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    def save(self) -> None:
        with _SAVE_LOCK:  # cluster nodes start their programs from several threads
            data = asdict(self)
            data["directory"] = str(self.directory)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> RunState:
        data = json.loads((directory / "state.json").read_text())
        data["directory"] = directory
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return cls(**data)

    def add_namespace(self, namespace: str) -> None:
        self.namespaces.append(namespace)
        self.save()

    def add_process(self, record: ProcessRecord) -> None:
        self.processes.append(record)
        self.save()

    def add_cgroup(self, name: str) -> None:
        self.cgroups.append(name)
        self.save()

    def add_path(self, path: Path) -> None:
        self.paths.append(str(path))
        self.save()

    def join_host_guard(self) -> None:
        self.host_guard = True
        self.save()

    def forget_process(self, pid: int) -> None:
        self.processes = [p for p in self.processes if p.pid != pid]
        self.save()

    def owner_alive(self) -> bool:
        """Whether the creating process still runs (start time guards against PID reuse)."""
        start = process_start_time(self.owner_pid)
        return start is not None and (self.owner_start is None or start == self.owner_start)


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def create(run: str, topology: Path, persistent: bool) -> RunState:
    """A fresh run directory (refuses an existing one: run names must be unique)."""
    directory = base_dir() / run
    base_dir().mkdir(mode=0o755, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700)  # FileExistsError: a run of that name exists
    pid = os.getpid()
    state = RunState(run, directory, str(topology), pid, process_start_time(pid), persistent)
    state.save()
    return state


def list_runs() -> list[RunState]:
    """Every recorded run, oldest name first; unreadable entries are skipped."""
    base = base_dir()
    if not base.is_dir():
        return []
    out = []
    for entry in sorted(base.iterdir()):
        try:
            out.append(RunState.load(entry))
        except (OSError, ValueError, TypeError):
            continue
    return out
