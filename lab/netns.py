"""Network namespaces, veth pairs and processes inside them, through ``ip``.

Why ``ip`` and not netlink here: every step is one well-known command whose failure text is
readable, and bring-up is a few dozen of them (tens of milliseconds in total). Netlink
(pyroute2) is used where speed matters: polling the FIB (``fib.py``).

Safety rules (docs/lab.md, "Network safety") enforced here, not left to callers:

* a veth is created directly between two namespaces; nothing is ever added to the default
  namespace;
* a process is signalled only if it still lives in one of the caller's namespaces (its
  ``/proc/<pid>/ns/net`` is the namespace's inode): a recorded PID that was reused by an
  unrelated process after a crash is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
POLL = 0.01


class CommandError(RuntimeError):
    """A command failed; carries its argv, exit code and output."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv = tuple(argv)
        self.code = code
        self.output = output
        super().__init__(f"{' '.join(argv)} exited {code}: {output.strip()}")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output; raise CommandError if ``check`` and it fails."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout + proc.stderr)
    return proc


def in_ns(namespace: str, argv: Sequence[str]) -> list[str]:
    """argv that runs ``argv`` inside ``namespace`` (``ip netns exec`` execs: same PID)."""
    return ["ip", "netns", "exec", namespace, *argv]


def nsenter(namespace: str, argv: Sequence[str]) -> list[str]:
    """argv that runs ``argv`` in ``namespace``'s network namespace only.

    Unlike ``ip netns exec`` it keeps the host's mount namespace and /sys: a kubelet needs
    /sys/fs/cgroup, and runc must see the volume mounts the kubelet makes. nsenter execs,
    so the PID is the program's.
    """
    return ["nsenter", f"--net={NETNS_DIR / namespace}", "--", *argv]


# --- namespaces and links -----------------------------------------------------------


def exists(namespace: str) -> bool:
    return (NETNS_DIR / namespace).exists()


def list_namespaces(prefix: str = "exalb-") -> list[str]:
    """Names of namespaces starting with ``prefix`` (read from /run/netns)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def add(namespace: str) -> None:
    """Create a namespace with ``lo`` up and IPv6 DAD off.

    DAD off: addresses are usable at once instead of staying "tentative" for 1-2 s, so BGP
    sessions over IPv6 come up without waits. Set on ``default`` before any link exists so
    every interface created later (also by the peer side of a veth) inherits it.
    """
    run(["ip", "netns", "add", namespace])
    run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    sysctl(
        namespace, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
    )


def delete(namespace: str) -> None:
    if exists(namespace):
        run(["ip", "netns", "del", namespace], check=False)


def sysctl(namespace: str, values: Mapping[str, str]) -> None:
    args = [f"{k}={v}" for k, v in values.items()]
    run(in_ns(namespace, ["sysctl", "-qw", *args]))


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair created straight into two namespaces, both ends up."""
    run(
        ["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b]
    )
    run(["ip", "-n", ns_a, "link", "set", if_a, "up"])
    run(["ip", "-n", ns_b, "link", "set", if_b, "up"])


def set_link(namespace: str, interface: str, up: bool) -> None:
    """Take an interface down or up (a cable pulled, a switch port shut)."""
    run(["ip", "-n", namespace, "link", "set", interface, "up" if up else "down"])


def link_mac(namespace: str, interface: str) -> str:
    """The MAC address of an interface (``aa:bb:...``)."""
    out = run(["ip", "-j", "-n", namespace, "link", "show", interface]).stdout
    return str(json.loads(out)[0]["address"])


def inode(namespace: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) identifying a namespace, or None when it is gone."""
    try:
        st = os.stat(NETNS_DIR / namespace)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pid_inode(pid: int) -> tuple[int, int] | None:
    """The network namespace identity of a live (non-zombie) process, else None."""
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids(namespace: str) -> list[int]:
    """PIDs living in ``namespace`` (``ip netns pids``)."""
    if not exists(namespace):
        return []
    out = run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(w) for w in out.split() if w.isdigit()]


def children(pid: int, within: Iterable[int]) -> list[int]:
    """Descendants of ``pid`` among ``within`` (e.g. ExaBGP's CLI and API processes)."""
    parent_of = {p: _ppid(p) for p in within}
    found: list[int] = []
    frontier = {pid}
    while frontier:
        nxt = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found.extend(sorted(nxt))
        frontier = nxt
    return found


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (zombies hold no resources)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(
    pids: Iterable[int],
    namespaces: Iterable[str],
    grace: float,
    first: signal.Signals = signal.SIGTERM,
) -> list[int]:
    """``first`` (SIGTERM), wait up to ``grace`` s, then SIGKILL; only PIDs in ``namespaces``.

    Returns the PIDs that were signalled. Waiting polls ``/proc`` (no fixed sleeps).
    ``first=SIGKILL`` is how a test kills a program abruptly (a crash, not a shutdown).
    """
    allowed = {i for i in (inode(ns) for ns in namespaces) if i is not None}
    targets = [p for p in dict.fromkeys(pids) if pid_inode(p) in allowed]
    for pid in targets:
        _signal(pid, first)
    if not wait_gone(targets, grace):
        log.warning("lab: pids %s ignored SIGTERM for %.1fs, killing", targets, grace)
        for pid in targets:
            if alive(pid):
                _signal(pid, signal.SIGKILL)
        wait_gone(targets, 2.0)
    return targets


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
