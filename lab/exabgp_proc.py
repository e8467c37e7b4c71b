"""An ExaBGP daemon inside a lab namespace, started and stopped by PID.

Why this shape (docs/lab.md, "ExaBGP in a namespace"): each instance gets
its own ``EXABGP_ROOT`` with the CLI FIFOs under ``<root>/run/`` so instances coexist and
``exabgp cli`` works from the test process; ``exabgp.daemon.user=root`` because ExaBGP
started as root otherwise dies silently; ``start_new_session=True`` so a Ctrl-C aimed at
the test does not reach ExaBGP before the teardown does. ``ip netns exec`` execs, so the
child's PID is ExaBGP's own; its CLI and API children are found through the namespace's
PIDs at stop time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab import netns


def exabgp_binary() -> str:
    """The ``exabgp`` next to the running interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("exabgp")
    return str(local) if local.exists() else (shutil.which("exabgp") or "exabgp")


def environment(
    root: Path, pipename: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """ExaBGP's environment for one lab instance (dotted names: only via a dict)."""
    env = dict(os.environ)
    env.update(
        {
            "exabgp.daemon.user": "root",
            "exabgp.daemon.daemonize": "false",
            "exabgp.log.destination": "stdout",
            "exabgp.log.statistics": "false",
            "exabgp.api.pipename": pipename,
            "EXABGP_ROOT": str(root),
        }
    )
    env.update(extra or {})
    return env


@dataclass
class ExaBgpProcess:
    """A running ExaBGP instance; ``directory`` holds its config copy, FIFOs and log."""

    node: str
    namespace: str
    directory: Path
    pipename: str
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "exabgp.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "exabgp.conf"

    def running(self) -> bool:
        return self.popen.poll() is None

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """``exabgp cli`` over this instance's FIFOs (e.g. ``show adj-rib out``)."""
        argv = [exabgp_binary(), "cli", "--pipename", self.pipename, *command.split()]
        env = environment(self.directory, self.pipename)
        return netns.run(argv, env=env, timeout=timeout).stdout

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM (Cease to peers), SIGKILL after ``grace``; then its leftover children."""
        kids = netns.children(self.pid, netns.pids(self.namespace))
        netns.stop([self.pid], [self.namespace], grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1.0)  # reap our child: no zombie left behind
        netns.stop([k for k in kids if netns.alive(k)], [self.namespace], 1.0)


def start(
    node: str,
    namespace: str,
    config: str | Path,
    directory: Path,
    *,
    pipename: str,
    env: Mapping[str, str] | None = None,
) -> ExaBgpProcess:
    """Start ``exabgp server`` in ``namespace`` with ``config`` (a path, or the text itself).

    The config is copied (or written) to ``directory/exabgp.conf`` so the run directory
    holds everything needed to understand a failure afterwards.
    """
    (directory / "run").mkdir(parents=True, exist_ok=True)
    conf = directory / "exabgp.conf"
    if isinstance(config, Path):
        shutil.copyfile(config, conf)
    else:
        conf.write_text(config)
    for suffix in (".in", ".out"):
        fifo = directory / "run" / f"{pipename}{suffix}"
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
    argv = netns.in_ns(namespace, [exabgp_binary(), "server", str(conf)])
    with (directory / "exabgp.log").open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(directory, pipename, env),
            start_new_session=True,
        )
    return ExaBgpProcess(node, namespace, directory, pipename, popen)
