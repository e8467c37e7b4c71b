"""FRR (Debian's 8.4 daemons) running inside a lab namespace, one instance per router.

Why these flags (docs/lab.md, "Several FRR instances on one host"): several instances share one
host, so each gets its own vty socket directory, zserv socket and pid files under the run directory,
and no TCP vty. ``-u root -g frrvty`` lets the daemons use a root-owned 0700 run directory.
Every daemon reads the router's integrated ``frr.conf`` (the file containerlab binds to
``/etc/frr/frr.conf``) and ignores the other daemons' lines, so one file serves both worlds.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import netns

FRR_LIBDIR = Path("/usr/lib/frr")
#: Daemons the runner knows how to start, in start order (zebra first, always).
SUPPORTED = ("zebra", "bgpd", "staticd", "bfdd")


class FrrError(RuntimeError):
    """FRR failed to start or answer; the message points at its log file."""


@dataclass(frozen=True)
class FrrInstance:
    """Paths of one router's FRR instance; all state lives under ``directory``."""

    node: str
    namespace: str
    directory: Path

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.directory / f"{daemon}.log"

    def pids(self) -> dict[str, int]:
        """Daemon name -> PID from the pid files that exist."""
        out = {}
        for daemon in SUPPORTED:
            try:
                out[daemon] = int(self.pid_file(daemon).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return out

    def vtysh_argv(self, *commands: str) -> list[str]:
        argv = [vtysh_binary(), "--vty_socket", str(self.run_dir)]
        for command in commands:
            argv += ["-c", command]
        return argv

    def vtysh(self, *commands: str, timeout: float = 10.0) -> str:
        """Run vtysh commands against this instance (a unix socket: any namespace works)."""
        return netns.run(self.vtysh_argv(*commands), timeout=timeout).stdout

    def vtysh_json(self, command: str) -> Any:
        return json.loads(self.vtysh(command))

    def neighbor(self, address: str) -> dict[str, Any]:
        """``show bgp neighbors <address> json``'s entry (empty when unknown)."""
        data = self.vtysh_json(f"show bgp neighbors {address} json")
        return dict(data.get(address, {})) if isinstance(data, dict) else {}

    def bgp_route(self, prefix: str) -> dict[str, Any] | None:
        """The BGP table entry for ``prefix`` with its paths, or None when it has none."""
        afi = "ipv6" if ":" in prefix else "ipv4"
        data = self.vtysh_json(f"show bgp {afi} unicast {prefix} json")
        return dict(data) if isinstance(data, dict) and data.get("paths") else None


def available() -> bool:
    return (FRR_LIBDIR / "bgpd").is_file() and (FRR_LIBDIR / "zebra").is_file()


def vtysh_binary() -> str:
    return shutil.which("vtysh") or "/usr/bin/vtysh"


def start(inst: FrrInstance, frr_conf: Path, daemons: tuple[str, ...]) -> None:
    """Start zebra, then the other ``daemons``, with a copy of ``frr_conf``.

    Returns once each daemon has daemonised and written its pid file (``-d`` waits for
    the child); call :func:`wait_ready` before using vtysh.
    """
    unknown = sorted(set(daemons) - set(SUPPORTED))
    if unknown:
        raise FrrError(f"{inst.node}: daemons file enables {unknown}; runner knows {SUPPORTED}")
    inst.run_dir.mkdir(parents=True, exist_ok=True)
    conf = inst.directory / "frr.conf"
    shutil.copyfile(frr_conf, conf)  # a copy: "write memory" must not touch the repo file
    common = [
        "-d", "-u", "root", "-g", "frrvty", "-A", "127.0.0.1", "-P", "0",
        "--vty_socket", str(inst.run_dir), "-z", str(inst.run_dir / "zserv.api"),
    ]  # fmt: skip
    for daemon in (d for d in SUPPORTED if d == "zebra" or d in daemons):
        log_file = inst.log_file(daemon)
        argv = [
            str(FRR_LIBDIR / daemon), *common, "-f", str(conf),
            "-i", str(inst.pid_file(daemon)), "--log", f"file:{log_file}",
        ]  # fmt: skip
        try:
            netns.run(netns.in_ns(inst.namespace, argv), timeout=15)
        except netns.CommandError as exc:
            raise FrrError(f"{inst.node}: {daemon} failed ({exc}); see {log_file}") from exc


def wait_ready(inst: FrrInstance, timeout: float = 10.0) -> None:
    """Poll until bgpd answers ``show bgp summary json`` (~0.1 s after start)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = netns.run(inst.vtysh_argv("show bgp summary json"), check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise FrrError(f"{inst.node}: vtysh not answering after {timeout}s: {proc.stderr}")
        time.sleep(0.02)


def peer_states(summary: Any) -> dict[str, str]:
    """Peer address -> BGP state from ``show bgp summary json`` (all address families)."""
    out: dict[str, str] = {}
    if not isinstance(summary, dict):
        return out
    for family in summary.values():
        peers = family.get("peers", {}) if isinstance(family, dict) else {}
        for address, info in peers.items():
            out[address] = str(info.get("state", "")) if isinstance(info, dict) else ""
    return out
