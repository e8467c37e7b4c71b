"""A small self-contained namespace lab: one FRR router (r1) and one node (n1) running ExaBGP.

Why not ``lab``: this file lets the driver's lab tests run on their own while the shared
netns runner is being built; it follows lab-recipes §2 to §4, §7 and §11 and the network-safety
rules (namespaces carry a per-run id, veths are created directly inside the namespaces,
documentation addresses only, processes stopped by recorded PID, teardown on failure).

Topology::

    n1 198.18.0.2/30  2001:db8:1::2/64 ── r1 198.18.0.1/30  2001:db8:1::1/64   (AS 64500)
    n1 also 198.18.0.6/30 on a second link (r1 198.18.0.5/30) for a second session
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.wait import poll as wait_for

VENV_BIN = Path(sys.executable).parent
EXABGP = str(VENV_BIN / "exabgp")
BRIDGE = str(VENV_BIN / "exalb-exabgp-bridge")
BGPD = "/usr/lib/frr/bgpd"
ZEBRA = "/usr/lib/frr/zebra"


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here (or None): root, FRR, ExaBGP and netns are needed."""
    if os.geteuid() != 0:
        return "lab tests need root"
    if not os.path.exists(BGPD):
        return f"{BGPD} missing (Debian package frr)"
    if not os.path.exists(EXABGP):
        return "exabgp is not installed in the venv"
    name = f"exalb-probe-{uuid.uuid4().hex[:6]}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot create network namespaces: {probe.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid: int, grace: float = 3.0) -> None:
    """SIGTERM a recorded PID, wait, SIGKILL if needed (never by name)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


FRR_BGPD_CONF = """\
hostname r1
log file {d}/bgpd.log
router bgp 64500
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 neighbor 198.18.0.2 remote-as {n1_as}
 neighbor 198.18.0.2 timers 3 9
{extra_v4}
 neighbor 198.18.0.6 remote-as {n1_as}
 neighbor 198.18.0.6 timers 3 9
 neighbor 2001:db8:1::2 remote-as {n1_as}
 neighbor 2001:db8:1::2 timers 3 9
 address-family ipv4 unicast
  maximum-paths 8
  maximum-paths ibgp 8
  neighbor 198.18.0.2 activate
  neighbor 198.18.0.6 activate
 exit-address-family
 address-family ipv6 unicast
  maximum-paths 8
  neighbor 2001:db8:1::2 activate
 exit-address-family
"""


class BgpLab:
    """Namespaces r1/n1, FRR in r1; ExaBGP is started by the test with its own config."""

    def __init__(self, n1_as: int = 64501, md5: str | None = None) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        self.r1 = f"exalb-{self.run_id}-r1"
        self.n1 = f"exalb-{self.run_id}-n1"
        self.dir = Path(tempfile.mkdtemp(prefix=f"exalb-{self.run_id}-", dir="/tmp"))
        self.frr_dir = self.dir / "frr"
        self.n1_as = n1_as
        self.md5 = md5
        self.namespaces: list[str] = []
        self.pids: list[int] = []
        self.exabgp: subprocess.Popen[bytes] | None = None

    # -- topology -----------------------------------------------------------------------
    def up(self) -> BgpLab:
        for ns in (self.r1, self.n1):
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for i, (r_addr, n_addr, r6, n6) in enumerate(
            [
                ("198.18.0.1/30", "198.18.0.2/30", "2001:db8:1::1/64", "2001:db8:1::2/64"),
                ("198.18.0.5/30", "198.18.0.6/30", None, None),
            ]
        ):
            r_if, n_if = f"r1-n1l{i}", f"n1-r1l{i}"
            _run("ip", "-n", self.r1, "link", "add", r_if, "type", "veth", "peer", "name", n_if,
                 "netns", self.n1)  # fmt: skip
            _run("ip", "-n", self.r1, "addr", "add", r_addr, "dev", r_if)
            _run("ip", "-n", self.n1, "addr", "add", n_addr, "dev", n_if)
            if r6 and n6:
                _run("ip", "-n", self.r1, "addr", "add", r6, "dev", r_if, "nodad")
                _run("ip", "-n", self.n1, "addr", "add", n6, "dev", n_if, "nodad")
            _run("ip", "-n", self.r1, "link", "set", r_if, "up")
            _run("ip", "-n", self.n1, "link", "set", n_if, "up")
        _run("ip", "netns", "exec", self.r1, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv6.conf.all.forwarding=1")  # fmt: skip
        self._start_frr()
        return self

    def _start_frr(self) -> None:
        d = self.frr_dir
        (d / "run").mkdir(parents=True)
        extra = f" neighbor 198.18.0.2 password {self.md5}" if self.md5 else ""
        (d / "zebra.conf").write_text("hostname r1\nno zebra nexthop kernel enable\n")
        (d / "bgpd.conf").write_text(FRR_BGPD_CONF.format(d=d, n1_as=self.n1_as, extra_v4=extra))
        shutil.chown(self.dir, "frr", "frr")
        for p in (d, d / "run", d / "zebra.conf", d / "bgpd.conf"):
            shutil.chown(p, "frr", "frr")
        common = ["-d", "-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-P", "0",
                  "--vty_socket", str(d / "run"), "-z", str(d / "run" / "zserv.api")]  # fmt: skip
        for daemon, binary in (("zebra", ZEBRA), ("bgpd", BGPD)):
            conf, pidfile = str(d / f"{daemon}.conf"), str(d / "run" / f"{daemon}.pid")
            _run("ip", "netns", "exec", self.r1, binary, *common, "-f", conf, "-i", pidfile,
                 "--log", f"file:{d}/{daemon}.log")  # fmt: skip
            pid = int(wait_for(lambda dm=daemon: self._read_pid(dm), 5.0))
            self.pids.append(pid)
        wait_for(lambda: self.vtysh("show bgp summary json", check=False) is not None, 5.0)

    def _read_pid(self, daemon: str) -> int | None:
        try:
            return int((self.frr_dir / "run" / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # -- FRR queries ----------------------------------------------------------------------
    def vtysh(self, command: str, check: bool = True) -> Any:
        res = _run("vtysh", "--vty_socket", str(self.frr_dir / "run"), "-c", command, check=False)
        if res.returncode != 0:
            if check:
                raise RuntimeError(f"vtysh {command!r}: {res.stderr}{res.stdout}")
            return None
        return json.loads(res.stdout) if res.stdout.strip().startswith(("{", "[")) else res.stdout

    def neighbor(self, addr: str) -> dict[str, Any]:
        data = self.vtysh(f"show bgp neighbors {addr} json")
        return dict(data.get(addr, {}))

    def established(self, addr: str) -> bool:
        return self.neighbor(addr).get("bgpState") == "Established"

    def bgp_route(self, prefix: str) -> dict[str, Any] | None:
        afi = "ipv6" if ":" in prefix else "ipv4"
        data = self.vtysh(f"show bgp {afi} unicast {prefix} json", check=False)
        if not data or not data.get("paths"):
            return None
        return dict(data)

    def fib_routes(self, family: int = 4) -> set[str]:
        """Prefixes installed by bgpd in r1's kernel FIB (the real forwarding truth)."""
        res = _run("ip", f"-{family}", "-n", self.r1, "-j", "route", "show", "proto", "bgp")
        routes = json.loads(res.stdout or "[]")
        out = set()
        for r in routes:
            dst = r["dst"]
            if "/" not in dst:
                dst += "/32" if family == 4 else "/128"
            out.add(dst)
        return out

    # -- ExaBGP on n1 -------------------------------------------------------------------------
    def exabgp_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "exabgp.daemon.user": "root",
                "exabgp.daemon.daemonize": "false",
                "exabgp.log.destination": "stdout",
                "exabgp.log.statistics": "false",
                "exabgp.api.pipename": f"exalb-{self.run_id}",
                "exabgp.api.cli": "false",
                "exabgp.tcp.bind": "",
                "EXABGP_ROOT": str(self.dir),
            }
        )
        return env

    def start_exabgp(
        self, conf: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.dir / "exabgp.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.n1, EXABGP, "server", str(conf)],
            env=env or self.exabgp_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.exabgp = proc
        self.pids.append(proc.pid)
        return proc

    def stop_exabgp(self, sig: int = signal.SIGTERM) -> None:
        if self.exabgp is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.exabgp.pid, sig)
        try:
            self.exabgp.wait(5)
        except subprocess.TimeoutExpired:
            self.exabgp.kill()
            self.exabgp.wait(5)
        self._kill_ns_pids(self.n1)
        self.exabgp = None

    def exabgp_log(self) -> str:
        try:
            return (self.dir / "exabgp.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- teardown -------------------------------------------------------------------------------
    def _kill_ns_pids(self, ns: str) -> None:
        res = _run("ip", "netns", "pids", ns, check=False)
        for tok in res.stdout.split():
            with contextlib.suppress(ValueError):
                stop_pid(int(tok), grace=2.0)

    def down(self) -> None:
        """Stop everything this lab started, by PID, then delete its own namespaces."""
        with contextlib.suppress(Exception):
            self.stop_exabgp()
        for pid in reversed(self.pids):
            stop_pid(pid)
        for ns in self.namespaces:
            self._kill_ns_pids(ns)
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def bgp_lab(**kwargs: Any) -> Iterator[BgpLab]:
    lab = BgpLab(**kwargs)
    try:
        yield lab.up()
    finally:
        lab.down()
