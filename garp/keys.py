"""The probe keys, read from a directory (the mounted Secret) and re-read when they change.

Files (the Secret's data keys): ``key``, the key every sidecar holds, and ``previous``,
present only while a key is being rotated. Each message is signed with every key held and
accepted with any of them (:mod:`garp.probe`), so rotation works in two steps, each safe
whatever order the nodes see it in:

1. put the old key under ``previous`` and a new one under ``key`` (nodes that already
   have the new pair still share the old key with those that do not);
2. once every sidecar has logged the new key id (kubelet refreshes Secret volumes within
   about a minute), delete ``previous``.

A key is the file's bytes without surrounding whitespace, 16 to 4096 bytes. A change that
leaves no valid key is refused and the keys in use stay in force; at start-up without a
valid key the sidecar refuses to run (it could not prove who it is, nor check anyone).
"""

from __future__ import annotations

import os
from pathlib import Path

from garp.probe import MAX_KEY_BYTES, Keyring

KEY_FILES = ("key", "previous")


class KeyFileError(ValueError):
    """The key directory holds no usable keyring (message names the file)."""


def read_keyring(directory: str | os.PathLike[str]) -> Keyring:
    keys: list[bytes] = []
    for name in KEY_FILES:
        path = Path(directory) / name
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_KEY_BYTES + 64)
        except FileNotFoundError:
            if name == "key":
                raise KeyFileError(f"{path}: missing") from None
            continue
        except OSError as exc:
            raise KeyFileError(f"{path}: {exc.strerror or exc}") from exc
        key = raw.strip()
        try:
            Keyring((key,))
        except ValueError as exc:
            raise KeyFileError(f"{path}: {exc}") from exc
        if key not in keys:
            keys.append(key)
    return Keyring(tuple(keys))


class KeyWatcher:
    """Returns a new keyring when the files changed (None while unchanged); raises
    :class:`KeyFileError` when they changed into something unusable."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._sig: tuple[tuple[int, int, int] | None, ...] | None = None

    def _signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for name in KEY_FILES:
            try:
                st = os.stat(self.directory / name)  # follows the Secret volume's symlinks
            except OSError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def poll(self) -> Keyring | None:
        sig = self._signature()
        if sig == self._sig:
            return None
        self._sig = sig
        return read_keyring(self.directory)
