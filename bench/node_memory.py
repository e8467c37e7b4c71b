"""Memory of a node's processes for ``vs_metallb_speakers``: RSS, and distinct pages.

The lab's nodes share one kernel, so per-process PSS would divide the pages of a binary
between the nodes that run it. What a node of its own would hold is the set of distinct
physical page frames its processes have resident (``/proc/<pid>/pagemap``, root only):
exalb's four Python processes share the interpreter's and the libraries' pages, which are
in memory once. The plain RSS sum, which counts such a page once per process, is kept too.
"""

from __future__ import annotations

import array
import contextlib
import os
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def rss_mib(pids: list[int]) -> float:
    """Summed RSS (MiB): every process counts every page it maps, shared or not."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _frames(pid: int) -> set[int]:
    """The physical page frames ``pid`` has resident (/proc/<pid>/pagemap; root only)."""
    frames: set[int] = set()
    with contextlib.suppress(OSError):
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                if line.endswith(("[vsyscall]", "[vvar]")):
                    continue
                lo, hi = (int(x, 16) // PAGE for x in line.split()[0].split("-"))
                pagemap.seek(lo * 8)
                entries = array.array("Q", pagemap.read((hi - lo) * 8))
                frames.update(e & PFN_MASK for e in entries if e & PRESENT)
    return frames


def node_mib(pids: list[int]) -> float:
    """Memory the node holds for ``pids``: distinct resident page frames, each counted once
    however many of the processes map it (the interpreter and libraries that four Python
    processes of one image share are in memory once). Pages shared with processes of *other*
    lab nodes count in full, as they would on a node of its own."""
    frames: set[int] = set()
    for pid in pids:
        frames |= _frames(pid)
    return len(frames) * PAGE / (1 << 20)


def role(pid: int) -> str:
    """What a process runs: the basename of its program or script (``-m``: the module)."""
    try:
        argv = [
            a.decode(errors="replace")
            for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ]
    except OSError:
        return "gone"
    args = argv[1:] if Path(argv[0]).name.startswith("python") else argv
    if args[:1] == ["-m"] and len(args) > 1:
        return args[1]
    return Path(args[0]).name if args else "?"
