"""Free positions of an address space, kept as sorted runs of free positions.

Every operation is O(log r) in the number of free runs r (at most used + 1): "first free at
or after p" is one bisection, taking or releasing a position splits or merges at most two
runs. Nothing ever walks the used addresses, which is what makes MetalLB's linear
first-free scan slow on large, busy pools.
"""

from __future__ import annotations

from sortedcontainers import SortedKeyList


def _start(run: tuple[int, int]) -> int:
    return run[0]


class FreeSpace:
    """Free positions in [0, size). Runs are inclusive (start, end) pairs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._runs: SortedKeyList[tuple[int, int], int] = SortedKeyList(key=_start)
        if size > 0:
            self._runs.add((0, size - 1))
        self.used = 0

    def _run_at(self, pos: int) -> int:
        """Index of the last run starting at or before ``pos`` (-1 if none)."""
        return self._runs.bisect_key_right(pos) - 1

    def is_free(self, pos: int) -> bool:
        i = self._run_at(pos)
        return i >= 0 and self._runs[i][1] >= pos

    def first_free(self, start: int = 0) -> int | None:
        """The lowest free position ≥ ``start``, or ``None``."""
        i = self._run_at(start)
        if i >= 0 and self._runs[i][1] >= start:
            return start
        if i + 1 < len(self._runs):
            nxt: int = self._runs[i + 1][0]
            return nxt
        return None

    def take(self, pos: int) -> None:
        i = self._run_at(pos)
        if i < 0 or self._runs[i][1] < pos:
            raise ValueError(f"position {pos} is not free")
        start, end = self._runs[i]
        del self._runs[i]
        if start < pos:
            self._runs.add((start, pos - 1))
        if pos < end:
            self._runs.add((pos + 1, end))
        self.used += 1

    def release(self, pos: int) -> None:
        if not 0 <= pos < self.size or self.is_free(pos):
            raise ValueError(f"position {pos} is not in use")
        start = end = pos
        i = self._run_at(pos)
        if i >= 0 and self._runs[i][1] == pos - 1:
            start = self._runs[i][0]
            del self._runs[i]
        j = self._runs.bisect_key_left(pos + 1)
        if j < len(self._runs) and self._runs[j][0] == pos + 1:
            end = self._runs[j][1]
            del self._runs[j]
        self._runs.add((start, end))
        self.used -= 1
