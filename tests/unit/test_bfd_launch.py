"""The bfd container's launcher: bfdd's vty socket handed to the pod's group."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from speaker.bfd.launch import bfdd_argv, share_vty, supervise


def test_argv_keeps_every_socket_under_the_directory(tmp_path: Path) -> None:
    argv = bfdd_argv("bfdd", tmp_path / "bfdd.conf", tmp_path, user="root", group="frrvty")
    assert argv[argv.index("--vty_socket") + 1] == str(tmp_path)
    assert argv[argv.index("--bfdctl") + 1] == str(tmp_path / "bfdd.sock")
    assert argv[argv.index("-P") + 1] == "0"  # no TCP vty


def test_vty_socket_is_shared_once_it_appears(tmp_path: Path) -> None:
    calls = []

    def alive() -> bool:
        calls.append(1)
        if len(calls) == 3:
            (tmp_path / "bfdd.vty").touch(mode=0o700)
        return True

    assert share_vty(tmp_path, os.getgid(), alive, interval=0)
    assert len(calls) == 3
    assert stat.S_IMODE((tmp_path / "bfdd.vty").stat().st_mode) == 0o770
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750


def test_nothing_is_shared_when_bfdd_dies_first(tmp_path: Path) -> None:
    assert not share_vty(tmp_path, os.getgid(), lambda: False, interval=0)


def test_supervise_replaces_a_stale_socket_and_returns_bfdds_status(tmp_path: Path) -> None:
    stale = tmp_path / "bfdd.vty"
    stale.touch(mode=0o600)
    script = (
        "import pathlib, sys, time; d = pathlib.Path(sys.argv[1]);"
        "assert not (d / 'bfdd.vty').exists(); (d / 'bfdd.vty').touch(mode=0o700);"
        "time.sleep(0.3); sys.exit(3)"
    )
    code = supervise([sys.executable, "-c", script, str(tmp_path)], tmp_path, os.getgid())
    assert code == 3
    assert stat.S_IMODE(stale.stat().st_mode) == 0o770
