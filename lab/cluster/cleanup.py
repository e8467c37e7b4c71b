"""What a cluster run leaves outside its namespaces, and how teardown removes it.

Pods do not live in the node's network namespace (each has its own), so ``ip netns pids``
does not find them: they are found by cgroup instead. Every node's pods sit under the
node's own ``cgroupRoot`` (``/exalb-<run>-<node>``), whose name carries the run, so only
this run's processes are ever signalled. The node programs share the host's mount
namespace (they must: runc needs the kubelet's volume mounts), so the mounts they made
(overlay root filesystems, volume tmpfs, pod network namespaces, shm) are unmounted here,
deepest first, but only below the run's own directories.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_V1 = Path("/sys/fs/cgroup")
_SKIP = {"unified"}


def hierarchies(unified: bool = False) -> list[Path]:
    """The cgroup v1 hierarchies a kubelet with the cgroupfs driver uses (and, with
    ``unified``, the cgroup2 mount of a hybrid setup, where runc creates cgroups too)."""
    if not CGROUP_V1.is_dir():
        return []
    return sorted(
        p
        for p in CGROUP_V1.iterdir()
        if p.is_dir() and not p.is_symlink() and (unified or p.name not in _SKIP)
    )


def create_cgroup_root(name: str) -> None:
    """``/<name>`` in every hierarchy (kubelet refuses a cgroupRoot that does not exist)."""
    for h in hierarchies():
        d = h / name
        d.mkdir(exist_ok=True)
        if h.name == "cpuset":  # a v1 cpuset child has no CPUs or memory nodes until given
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (d / f).read_text().strip():
                    (d / f).write_text((h / f).read_text())


def cgroup_pids(name: str) -> set[int]:
    out: set[int] = set()
    for h in hierarchies(unified=True):
        root = h / name
        if not root.is_dir():
            continue
        for dirpath, _, files in os.walk(root):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    text = (Path(dirpath) / "cgroup.procs").read_text()
                    out.update(int(w) for w in text.split())
    return out


def kill_cgroup(name: str, grace: float = 2.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process under cgroup root ``name``; returns them."""
    if not name.startswith("exalb-"):
        raise ValueError(f"refusing to signal processes of cgroup {name!r}")
    pids = sorted(cgroup_pids(name))
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in cgroup_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while cgroup_pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not cgroup_pids(name):
            break
    return pids


def remove_cgroup_root(name: str) -> None:
    """rmdir the cgroup tree (children first); empty cgroups only, so never a live one."""
    for h in hierarchies(unified=True):
        root = h / name
        if not root.is_dir():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(root)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError as exc:
                log.warning("lab: cgroup %s not removed: %s", d, exc)


def mounts_below(paths: Iterable[Path]) -> list[str]:
    """Mount points at or below any of ``paths`` (from /proc/self/mountinfo), deepest first."""
    roots = [str(p).rstrip("/") for p in paths]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_below(paths: Iterable[Path]) -> list[str]:
    done = []
    for point in mounts_below(paths):
        proc = subprocess.run(["umount", "-l", point], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            done.append(point)
        else:
            log.warning("lab: umount %s: %s", point, proc.stderr.strip())
    return done
