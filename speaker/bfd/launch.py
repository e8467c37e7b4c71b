"""Start FRR's bfdd from the config the speaker renders: wait for the file, then exec bfdd.

The same bootstrap as ExaBGP's launcher (:mod:`speaker.exabgp.launch`): only the speaker
knows the node's peers, so it writes ``bfdd.conf`` (:mod:`speaker.bfd.control`) and this
launcher, the entrypoint of the ``bfd`` container, waits for that file and ``exec``s
``bfdd`` in the foreground. bfdd runs alone, without zebra (docs/bfd.md): it needs no
interface or route information for sessions with a local address, so nothing on the node
gets touched but its own UDP sockets (3784, 4784, 3785).

Everything bfdd keeps lives under ``--dir``: its vty socket (which ``vtysh --vty_socket
<dir>`` and the speaker use), its control socket and pid file, so several instances share a
host (the lab runs one per node namespace) and the pod needs nothing but its emptyDir. The
zebra socket it is given does not exist; bfdd keeps retrying it quietly and never needs it.

With ``--vty-group GID`` (the chart: the pod's fsGroup) the launcher does not ``exec``:
bfdd must run as root, and it makes its vty socket 0770 in root's group (FRR would give it
to ``frrvty``, but its own chown fails once it has dropped CAP_CHOWN), so a non-root speaker
could not use it. The launcher then runs bfdd as its child, hands the socket (and its
directory) to that group as soon as it appears (an owner may give a file to a group it is in,
and the pod's fsGroup is one of the container's groups, so no capability is needed), passes
SIGTERM/SIGINT on and exits with bfdd's status.

It imports only the standard library (and ExaBGP's launcher, which does the same), so the
container starts without the speaker's dependencies.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from speaker.exabgp.launch import wait_for_file

BFDD = "/usr/lib/frr/bfdd"


def _log(event: str, **fields: object) -> None:
    record = {"ts": round(time.time(), 3), "component": "bfdd-launch", "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def bfdd_argv(
    bfdd: str, config: Path, directory: Path, *, user: str, group: str, log: str = "stdout"
) -> list[str]:
    """bfdd in the foreground with all its state under ``directory`` and no TCP vty."""
    return [
        bfdd, "-f", str(config),
        "--vty_socket", str(directory),
        "--bfdctl", str(directory / "bfdd.sock"),
        "-z", str(directory / "zserv.api"),
        "-i", str(directory / "bfdd.pid"),
        "-A", "127.0.0.1", "-P", "0",
        "-u", user, "-g", group,
        "--log", log,
    ]  # fmt: skip


def default_group() -> str:
    """FRR's vty group (Debian's ``frr`` package creates ``frrvty``): members may use the
    vty socket; without it, root's own group."""
    try:
        grp.getgrnam("frrvty")
        return "frrvty"
    except KeyError:
        return "root"


def share_vty(directory: Path, gid: int, alive: Callable[[], bool], interval: float = 0.02) -> bool:
    """Wait while bfdd lives for its vty socket, then make it (and ``directory``) usable by
    group ``gid``: 0770 and 0750. False if bfdd died first."""
    sock = directory / "bfdd.vty"
    while alive():
        if sock.exists():
            os.chown(directory, -1, gid)
            os.chmod(directory, 0o750)
            os.chown(sock, -1, gid)
            os.chmod(sock, 0o770)
            return True
        time.sleep(interval)
    return False


def supervise(argv: list[str], directory: Path, gid: int) -> int:
    """Run bfdd as a child, share its vty socket with ``gid``, relay stop signals, and
    return bfdd's exit status."""
    # A socket left by the last bfdd (the volume outlives the container) must not be the
    # one shared: bfdd replaces it.
    (directory / "bfdd.vty").unlink(missing_ok=True)
    proc = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    try:
        if share_vty(directory, gid, lambda: proc.poll() is None):
            _log("vty_shared", socket=str(directory / "bfdd.vty"), gid=gid)
    except OSError as exc:  # bfdd runs on; the speaker reports it cannot reach it
        _log("vty_share_failed", socket=str(directory / "bfdd.vty"), gid=gid, error=str(exc))
    code = proc.wait()
    _log("bfdd_exited", code=code)
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wait for the speaker's bfdd.conf, exec bfdd")
    parser.add_argument("--config", required=True, type=Path, help="file the speaker renders")
    parser.add_argument("--dir", required=True, type=Path, help="bfdd's sockets and pid file")
    parser.add_argument("--bfdd", default=BFDD, help="the bfdd executable")
    parser.add_argument("--user", default="root", help="user bfdd runs as (-u)")
    parser.add_argument("--group", default=None, help="vty socket group (-g); default frrvty")
    parser.add_argument("--log", default="stdout", help="bfdd --log (stdout, file:PATH)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait (0 = forever)")
    parser.add_argument(
        "--vty-group", type=int, default=None,
        help="numeric group given bfdd's vty socket (the pod's fsGroup); bfdd then runs as "
        "the launcher's child instead of replacing it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    _log("waiting_for_config", config=str(args.config))
    if not wait_for_file(args.config, args.wait):
        _log("config_never_appeared", config=str(args.config), waited=args.wait)
        return 1
    argv_ = bfdd_argv(
        args.bfdd, args.config, args.dir,
        user=args.user, group=args.group or default_group(), log=args.log,
    )  # fmt: skip
    if args.vty_group is not None:
        _log("start_bfdd", argv=argv_, vty_group=args.vty_group)
        return supervise(argv_, args.dir, args.vty_group)
    _log("exec_bfdd", argv=argv_, pid=os.getpid())
    os.execv(args.bfdd, argv_)
    return 1  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
