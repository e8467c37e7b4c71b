"""Start ExaBGP from the config the speaker renders: wait for the file, then exec ExaBGP.

Bootstrap (why this way): ExaBGP's neighbors live only in its config file, and the speaker
is the only one who can render that file (it needs the cluster's BGPPeers, the Node and the
Secrets). So the speaker writes ``exabgp.conf`` on its first good computation (the driver
writes it without a ``reload`` when no file exists yet), and this launcher, the entrypoint
of the ExaBGP container (``python -m speaker.exabgp.launch``), waits for that file and then
``exec``s ``exabgp --env-file exabgp_conf/exabgp.env server <file>``, with only the
per-instance settings (:func:`instance_environment`) as environment variables on top.

* ExaBGP never runs with a guessed or empty config, and no ``reload`` is needed at start.
* ``exec`` keeps one PID: the container's (or the lab's) process *is* ExaBGP, so signals
  reach it directly (SIGTERM = Cease to every peer).
* Later changes of peers are the speaker's job (re-render + ``reload`` through the bridge);
  a restarted ExaBGP simply re-reads the last rendered file, and the speaker re-announces by
  diff when the bridge reconnects.
* ExaBGP's CLI is off unless ``--cli`` is given: it costs a second Python process (ExaBGP's
  FIFO relay, about 29 MiB resident) on every node, and no program uses it. With ``--cli``
  the FIFOs (``<root>/run/<pipename>.in/.out``) are created here because ExaBGP does not
  create them itself (docs/exabgp.md, "CLI FIFOs"); ``exabgp cli --pipename <name>`` with
  the same ``EXABGP_ROOT`` then works for humans and tests.
* ``--wait-done FILE`` is the ExaBGP container's ``preStop`` hook: Kubernetes sends SIGTERM
  to every container of a deleted pod at once, and ExaBGP's SIGTERM closes every session
  (the router drops the paths) while the speaker is still draining. The hook returns when
  the speaker has written its ``--done-file`` (drained and withdrawn), or after ``--wait``
  seconds, so only then is ExaBGP signalled.

It imports only the standard library and the packaged :mod:`exabgp_conf`, so it starts
without the speaker's I/O dependencies (Kubernetes client, structlog).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import exabgp_conf


def _log(event: str, **fields: object) -> None:
    record = {"ts": round(time.time(), 3), "component": "exabgp-launch", "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def default_exabgp() -> str:
    local = Path(sys.executable).with_name("exabgp")
    return str(local) if local.exists() else (shutil.which("exabgp") or "exabgp")


def make_fifos(root: Path, pipename: str) -> None:
    """The CLI FIFOs, 0600 in a 0700 directory: ExaBGP's own user only (the speaker shares
    the volume but drives ExaBGP through the bridge, never through these)."""
    run = root / "run"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    run.mkdir(mode=0o700, exist_ok=True)
    for suffix in (".in", ".out"):
        fifo = run / f"{pipename}{suffix}"
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISFIFO(fifo.lstat().st_mode):
                raise SystemExit(f"{fifo} exists and is not a FIFO")
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)


def instance_environment(
    *, pipename: str, root: str, run_as_root: bool, log_level: str = "INFO", cli: bool = False
) -> dict[str, str]:
    """What differs per ExaBGP instance, over ``exabgp.env`` (environment variables win over
    the env file in ExaBGP): its CLI pipe name and ``EXABGP_ROOT``, so several instances
    coexist; whether the CLI runs; ``nobody`` unless started as root (as root, ExaBGP would
    drop to ``nobody`` and fail to exec the bridge); the log level."""
    return {
        "exabgp.api.pipename": pipename,
        "exabgp.api.cli": "true" if cli else "false",
        "EXABGP_ROOT": root,
        "exabgp.daemon.user": "root" if run_as_root else "nobody",
        "exabgp.log.level": log_level,
    }


def exabgp_argv(exabgp: str, config: Path) -> list[str]:
    """``exabgp --env-file <packaged exabgp.env> server <config>``."""
    return [exabgp, "--env-file", exabgp_conf.path(exabgp_conf.ENV_FILE), "server", str(config)]


def wait_for_file(path: Path, timeout: float, interval: float = 0.05) -> bool:
    deadline = None if timeout <= 0 else time.monotonic() + timeout
    while not path.exists():
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_done(path: Path, timeout: float) -> int:
    """The preStop hook (module docstring); always 0, so Kubernetes goes on to SIGTERM."""
    started = time.monotonic()
    done = wait_for_file(path, timeout, interval=0.1)
    _log("speaker_done" if done else "speaker_done_timeout", file=str(path),
         waited=round(time.monotonic() - started, 3))  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wait for the speaker's exabgp.conf, exec ExaBGP")
    parser.add_argument("--config", type=Path, help="file the speaker renders (required)")
    parser.add_argument("--root", type=Path, help="EXABGP_ROOT (FIFOs in run/; required)")
    parser.add_argument("--pipename", default="exabgp", help="CLI pipe name (exabgp cli)")
    parser.add_argument("--cli", action="store_true", help="run ExaBGP's CLI (exabgp cli): "
                        "one more Python process, about 29 MiB")  # fmt: skip
    parser.add_argument("--exabgp", default=default_exabgp(), help="exabgp executable")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait (0 = forever)")
    parser.add_argument("--wait-done", type=Path, help="only wait (up to --wait seconds) until "
                        "this file exists, then exit 0: the preStop hook")  # fmt: skip
    args = parser.parse_args(argv)
    if args.wait_done is not None:
        return wait_done(args.wait_done, args.wait)
    if args.config is None or args.root is None:
        parser.error("--config and --root are required")
    args.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if args.cli:
        make_fifos(args.root, args.pipename)
    _log("waiting_for_config", config=str(args.config))
    if not wait_for_file(args.config, args.wait):
        _log("config_never_appeared", config=str(args.config), waited=args.wait)
        return 1
    env = dict(os.environ)
    env.update(
        instance_environment(
            pipename=args.pipename,
            root=str(args.root),
            run_as_root=os.geteuid() == 0,
            log_level=args.log_level,
            cli=args.cli,
        )
    )
    _log("exec_exabgp", exabgp=args.exabgp, config=str(args.config), pid=os.getpid())
    os.execve(args.exabgp, exabgp_argv(args.exabgp, args.config), env)
    return 1  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
