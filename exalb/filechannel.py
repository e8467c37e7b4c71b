"""File transport for the desired state and the status (speaker ⇄ sidecar, shared emptyDir).

Why a file and not a socket: an emptyDir outlives both containers, so neither side has to
be up for the other to make progress. The writer creates a temporary file in the same
directory, fsyncs it and renames it over the target: readers see the old or the new
document, never half of one. The reader polls ``stat`` (inode, mtime, size) every 100 ms;
that costs microseconds, needs no inotify watch limits, and notices the rename at once.

Modes: the two containers sharing a volume run as different users of one group (the pod's
fsGroup, which owns the volume), so files are written ``0640`` (:data:`SHARED`): the other
container of the pair reads them through the group, nobody writes them but their owner,
and the third container does not mount the volume at all. The mode is set on the open file
(``fchmod``), whatever the process's umask.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

#: Owner reads and writes, the pod's group reads: the other container of the pair.
SHARED = 0o640


def write_file(path: str | os.PathLike[str], data: bytes, mode: int = SHARED) -> None:
    """Create or truncate ``path`` and write ``data``; the file has ``mode`` exactly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # an existing file, or a umask, keeps no other mode
        f.write(data)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = SHARED) -> None:
    """Replace ``path`` with ``data`` (mode ``mode``) so that readers never see a partial
    file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FileWatcher:
    """Returns a file's content once per change; None while unchanged or absent."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._sig: tuple[int, int, int] | None = None

    def poll(self) -> bytes | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # speaker not there yet, or it died and the file is gone: keep state
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig == self._sig:
            return None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        self._sig = sig
        return data
