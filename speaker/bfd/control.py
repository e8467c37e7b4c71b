"""The speaker's bfdd adapter: keep the node's bfdd on the plan, read its sessions.

bfdd runs as its own process (a container of the speaker pod, or a lab process) started by
:mod:`speaker.bfd.launch` from the file written here; the speaker reaches it only through
``vtysh --vty_socket <dir>`` (FRR's own client on bfdd's unix socket), as an operator would.
Its rules:

* **The file first.** Every plan is written to the config file (atomically) before it is
  applied, so a bfdd that restarts comes back with the sessions the speaker wants, without
  waiting for the speaker.
* **Converge, never assume.** A poll (every ``poll`` seconds) reads ``show bfd peers json``
  and the counters; when the plan changed since it was last applied, or bfdd runs other
  sessions than the plan (a restart with an older file, a command that failed), it reads the
  running config and sends the commands of :func:`speaker.bfd.render.apply_commands`.
* **BFD never touches BGP here.** The router tears its BGP session down when its BFD
  session goes down; the node side only has to answer. ExaBGP does not know about BFD.

MetalLB's ``metallb_bfd_*`` series are served from the last poll (:class:`BfdCollector`),
with MetalLB's names, types and labels (``peer``, ``vrf``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from speaker.bfd.render import (
    BfdPlan,
    BfdSession,
    apply_commands,
    in_force,
    parse_running_config,
    parse_sessions,
)

log = structlog.get_logger("exalb.speaker.bfd")

#: argv -> (exit code, stdout, stderr)
Runner = Callable[[Sequence[str], float], Awaitable[tuple[int, str, str]]]


async def run_process(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -1, "", f"timed out after {timeout}s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def default_vtysh() -> str:
    return shutil.which("vtysh") or "/usr/bin/vtysh"


class BfdController:
    """See the module docstring."""

    def __init__(
        self,
        *,
        socket_dir: Path,
        config_path: Path,
        vtysh: str | None = None,
        run: Runner = run_process,
        poll: float = 1.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_dir = socket_dir
        self.config_path = config_path
        self.vtysh = vtysh or default_vtysh()
        self._run = run
        self.poll = poll
        self.timeout = timeout
        self.clock = clock
        self.plan: BfdPlan | None = None
        self._applied: BfdPlan | None = None  # the plan last brought into bfdd
        self.sessions: list[BfdSession] = []
        self.error: str | None = None  # why the last poll failed (bfdd not answering, ...)
        self.polled_at: float | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._reported: tuple[str, ...] = ()

    # -- inputs -------------------------------------------------------------------------------
    def set_plan(self, plan: BfdPlan) -> None:
        """Write the file for a (re)starting bfdd and converge the running one soon."""
        if plan.problems != self._reported:
            for p in plan.problems:
                log.warning("bfd_problem", problem=p)
            self._reported = plan.problems
        if plan == self.plan:
            return
        self.plan = plan
        write_atomically(self.config_path, plan.text)
        self._wake.set()

    # -- loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stopping:
            if self.plan is not None:
                await self.converge_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def converge_once(self) -> None:
        """One poll; applies the plan when bfdd is not on it."""
        plan = self.plan
        if plan is None:
            return
        if not await self.read_sessions():
            return
        if plan == self._applied and in_force(plan, self.sessions):
            return
        code, text, err = await self._vtysh(["show running-config"])
        if code != 0:
            self.error = f"show running-config: {err.strip() or code}"
            return
        commands = apply_commands(plan, parse_running_config(text))
        code, out, err = await self._vtysh(commands)
        # vtysh exits 1 when bfdd refused a line ("% Unknown command: ..."); notices such as
        # echo mode's "works correctly for IPv4" come with exit code 0 (measured)
        if code != 0:
            self.error = f"bfdd refused the config: {(out + err).strip()[:500]}"
            log.error("bfd_apply_failed", error=self.error)
            return
        self._applied = plan
        log.info("bfd_config_applied", peers=[p.key for p in plan.peers])
        await self.read_sessions()

    async def read_sessions(self) -> bool:
        code, peers, err = await self._vtysh(["show bfd peers json"])
        if code != 0:
            self.error = f"bfdd not answering: {err.strip() or code}"
            self.sessions = []
            return False
        _, counters, _ = await self._vtysh(["show bfd peers counters json"])
        before = {s.peer: s.status for s in self.sessions}
        self.sessions = parse_sessions(peers, counters)
        for s in self.sessions:
            if before.get(s.peer) not in (None, s.status):
                log.info("bfd_session_state", peer=s.peer, state=s.status, diagnostic=s.diagnostic)
        self.error = None
        self.polled_at = self.clock()
        return True

    async def _vtysh(self, commands: Sequence[str]) -> tuple[int, str, str]:
        argv = [self.vtysh, "--vty_socket", str(self.socket_dir)]
        for c in commands:
            argv += ["-c", c]
        try:
            return await self._run(argv, self.timeout)
        except OSError as exc:
            return -1, "", str(exc)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- metrics ------------------------------------------------------------------------------------

#: MetalLB's names and help texts; bfdd's counter each mirrors (``None``: the state gauge).
_SERIES: tuple[tuple[str, str, str, str | None], ...] = (
    ("metallb_bfd_session_up", "gauge", "BFD session state (1 is up, 0 is down)", None),
    ("metallb_bfd_control_packet_input", "counter", "Number of received BFD control packets",
     "control-packet-input"),
    ("metallb_bfd_control_packet_output", "counter", "Number of sent BFD control packets",
     "control-packet-output"),
    ("metallb_bfd_echo_packet_input", "counter", "Number of received BFD echo packets",
     "echo-packet-input"),
    ("metallb_bfd_echo_packet_output", "counter", "Number of sent BFD echo packets",
     "echo-packet-output"),
    ("metallb_bfd_session_up_events", "counter", "Number of BFD session up events",
     "session-up"),
    ("metallb_bfd_session_down_events", "counter", "Number of BFD session down events",
     "session-down"),
    ("metallb_bfd_zebra_notifications", "counter", "Number of BFD zebra notifications",
     "zebra-notifications"),
)  # fmt: skip


class BfdCollector(Collector):
    """Serves the last poll's sessions as MetalLB's series (names without ``_total``, as
    MetalLB's Go client exposes them; labels ``peer`` and ``vrf``)."""

    def __init__(self, controller: BfdController) -> None:
        self.controller = controller

    def collect(self) -> Iterator[Metric]:
        sessions = list(self.controller.sessions)
        for name, kind, help_text, counter in _SERIES:
            metric = Metric(name, help_text, kind)
            for s in sessions:
                value = (1 if s.up else 0) if counter is None else s.counter(counter)
                metric.add_sample(name, {"peer": s.peer, "vrf": s.vrf}, float(value))
            yield metric
