"""Host-wide settings a kubelet changes, restored when the last lab cluster leaves.

Why: every kubelet start writes global sysctls (``vm.overcommit_memory=1``, ``kernel.panic=10``,
``kernel.panic_on_oops=1``, and a few more), and several lab clusters (other test runs,
other worktrees) may overlap on one machine. So the originals are recorded once, in
``<lab base>/host-guard.json``, by the first cluster run, together with the host paths the
programs create outside any run directory (e.g. ``/var/lib/kubelet`` for the device-plugin
socket, ``/run/containerd`` for shim sockets) when they did not exist before; every run adds
its name; the last run to leave (dead owners do not count) writes the originals back and
removes those paths. A lock file serialises it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab import rundir

log = logging.getLogger(__name__)

#: What kubelet's setupKernelTunables may write (it writes the first three unless
#: protectKernelDefaults is on, which would instead refuse to start on this machine).
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
#: Created by the node programs outside the run's directories when missing.
SHARED_PATHS = ("/var/lib/kubelet", "/run/containerd", "/var/lib/cni", "/etc/cni")
_PROC_SYS = Path("/proc/sys")


def _file() -> Path:
    return rundir.base_dir() / "host-guard.json"


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    base = rundir.base_dir()
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    with (base / "host-guard.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _file()
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        yield data
        if data:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(path)
        else:
            path.unlink(missing_ok=True)


def read_sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            out[name] = (_PROC_SYS / name).read_text().strip()
    return out


def acquire(run: str) -> None:
    """Record the host's settings (first run only) and join as a user. Call before kubelets."""
    with _locked() as data:
        if not data:
            data["sysctls"] = read_sysctls()
            data["created_paths"] = [p for p in SHARED_PATHS if not Path(p).exists()]
            data["runs"] = []
        if run not in data["runs"]:
            data["runs"].append(run)


def _alive(run: str) -> bool:
    try:
        state = rundir.RunState.load(rundir.base_dir() / run)
    except (OSError, ValueError, TypeError):
        return False
    return state.persistent or state.owner_alive()


def release(run: str, alive: Callable[[str], bool] = _alive) -> bool:
    """Leave; the last run out restores. True if this call restored the host."""
    with _locked() as data:
        if not data:
            return False
        data["runs"] = [r for r in data["runs"] if r != run and alive(r)]
        if data["runs"]:
            return False
        for name, value in data.get("sysctls", {}).items():
            try:
                if (_PROC_SYS / name).read_text().strip() != value:
                    (_PROC_SYS / name).write_text(value)
                    log.info("lab: restored %s = %s", name.replace("/", "."), value)
            except OSError as exc:
                log.warning("lab: could not restore %s: %s", name, exc)
        for path in data.get("created_paths", []):
            shutil.rmtree(path, ignore_errors=True)
        data.clear()
        return True
