"""``Lab``: a containerlab topology brought up in network namespaces, for tests and humans.

Why: exalb's lab and e2e tests need real FRR and ExaBGP, and containerlab (Docker) is not
always there. The runner reads the same ``*.clab.yml`` and builds it from namespaces and
veths: one namespace ``exalb-<run>-<node>`` per node with its ``sysctls:`` applied, links
as veth pairs with the clab interface names, each node's ``exec:`` lines run inside its
namespace (an ``exalb.role: switch`` node builds its bridge this way), and FRR started
for every ``exalb.role: router`` node from its bound ``frr.conf``/``daemons`` (BIRD 2 from
its ``bird.conf`` for ``exalb.router: bird``, ``lab/bird.py``).

Typical test use::

    with Lab.up("containerlab/bgp-ecmp/bgp-ecmp.clab.yml") as lab:
        lab.start_exabgp_static("n1", ["203.0.113.10/32"])
        lab.wait_established("r1")
        lab.wait_route("r1", "203.0.113.10/32", nexthops=1)
        lab.exec("c", ["ping", "-c1", "198.18.0.2"])

Teardown (always, also on exceptions and Ctrl-C) is by PID and namespace: see
``teardown.py``; state is recorded in ``rundir.py`` so another process can finish it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from lab import bird, exabgp_proc, frr, netns, responder, rundir
from lab.cluster.cluster import Cluster
from lab.cluster.plan import is_cluster
from lab.exabgp_static import render_static_config
from lab.fib import Fib
from lab.frrconf import parse_daemons
from lab.router_views import LabError, RouterViews
from lab.teardown import TeardownReport, teardown
from lab.topology import (
    FRR_CONF_TARGET,
    FRR_DAEMONS_TARGET,
    IPAddress,
    Node,
    Role,
    Topology,
    check_run_name,
    namespace_name,
)
from lab.topology_load import load_topology

log = logging.getLogger(__name__)


def needs_bgp(topology: Topology) -> bool:
    """Whether a topology runs FRR or ExaBGP (an L2 segment needs neither)."""
    return bool(topology.by_role(Role.ROUTER) or any(n.bgp for n in topology.nodes))


def unavailable_reason(bgp: bool = True) -> str | None:
    """Why lab tests cannot run here (for pytest skips), or None when they can.

    ``bgp=False``: only what every topology needs (root, iproute2, namespaces), not FRR and
    ExaBGP (see :func:`needs_bgp`).
    """
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    if bgp and not frr.available():
        return f"FRR daemons missing in {frr.FRR_LIBDIR} (install Debian's frr)"
    for tool in ("ip", *(("vtysh", exabgp_proc.exabgp_binary()) if bgp else ())):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    probe = f"exalb-probe-{os.getpid()}"
    proc = netns.run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return f"cannot create network namespaces: {proc.stderr.strip()}"
    netns.delete(probe)
    return None


def new_run_name() -> str:
    """A run name unique per process and call, valid for namespaces and socket paths."""
    return f"p{os.getpid()}-{secrets.token_hex(2)}"


class Lab(RouterViews):
    """A running topology. Build with :meth:`up` (context manager) or :meth:`start`."""

    def __init__(self, topology: Topology, state: rundir.RunState) -> None:
        self.topology = topology
        self.state = state
        self._exabgp: dict[str, exabgp_proc.ExaBgpProcess] = {}
        self._popens: list[subprocess.Popen[bytes]] = []
        self._fibs: dict[str, Fib] = {}
        self._down: TeardownReport | None = None
        self.bringup_seconds = 0.0
        #: The Kubernetes cluster, for topologies with a ``controlplane`` node.
        self.cluster: Cluster | None = None

    # --- life cycle -----------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def up(cls, path: str | Path, run: str | None = None) -> Iterator[Lab]:
        """Bring the topology up, yield the lab, always tear it down."""
        lab = cls.start(path, run)
        try:
            yield lab
        finally:
            lab.down()

    @classmethod
    def start(cls, path: str | Path, run: str | None = None, persistent: bool = False) -> Lab:
        """Bring the topology up; the caller must call :meth:`down`.

        ``persistent`` marks a run meant to outlive this process (``scripts/lab up``); the
        stale-run sweeper leaves those alone.
        """
        topology = load_topology(path)
        run = run or new_run_name()
        check_run_name(run)
        started = time.monotonic()
        lab = cls(topology, rundir.create(run, topology.path, persistent))
        try:
            lab._build()
        except BaseException:
            lab.down()
            raise
        lab.bringup_seconds = time.monotonic() - started
        log.info("lab %s: %s up in %.2fs", run, topology.name, lab.bringup_seconds)
        return lab

    @classmethod
    def attach(cls, run: str) -> Lab:
        """A handle on a run started by another process (for ``scripts/lab exec/vtysh/down``)."""
        state = rundir.RunState.load(rundir.base_dir() / run)
        lab = cls(load_topology(state.topology), state)
        if is_cluster(lab.topology):
            lab.cluster = Cluster.attach(lab)
        return lab

    def down(self) -> TeardownReport:
        """Stop everything and delete the namespaces; idempotent."""
        if self._down is None:
            if self.cluster is not None:
                self.cluster.close()
            for fib in self._fibs.values():
                fib.close()
            self._fibs.clear()
            self._down = teardown(self.state)
            for popen in self._popens + [e.popen for e in self._exabgp.values()]:
                popen.poll()  # reap, so no zombie outlives the lab
            log.info("lab %s: down in %.2fs", self.run, self._down.seconds)
        return self._down

    def _build(self) -> None:
        for node in self.topology.nodes:
            name = self.ns(node.name)
            if netns.exists(name):  # not ours: never record (and so never delete) it
                raise LabError(f"namespace {name} already exists; see `scripts/lab list`")
            self.state.add_namespace(name)  # recorded before it exists
            netns.add(name)
            if node.sysctls:  # as a container gets them: before any of its links exists
                netns.sysctl(name, node.sysctls)
        for link in self.topology.links:
            netns.add_veth(
                self.ns(link.a.node), link.a.interface, self.ns(link.b.node), link.b.interface
            )
        for node in self.topology.nodes:
            for command in node.exec:
                netns.run(netns.in_ns(self.ns(node.name), shlex.split(command)))
        routers = self.topology.by_role(Role.ROUTER)
        instances = [self._start_frr(r) for r in routers if r.router_kind == "frr"]
        birds = [bird.start(self, r, self.bird(r.name)) for r in routers if r.router_kind == "bird"]
        for inst in instances:
            frr.wait_ready(inst)
        for b in birds:
            b.wait_ready()
        if is_cluster(self.topology):
            self.cluster = Cluster(self)
            self.cluster.start()

    def _start_frr(self, router: Node) -> frr.FrrInstance:
        conf = router.bind_source(FRR_CONF_TARGET)
        daemons_file = router.bind_source(FRR_DAEMONS_TARGET)
        assert conf is not None and daemons_file is not None  # validated by load_topology
        daemons = parse_daemons(daemons_file.read_text())
        inst = self.frr(router.name)
        try:
            frr.start(inst, conf, daemons)
        finally:  # record whatever started, even if a later daemon failed
            for daemon, pid in inst.pids().items():
                self.state.add_process(
                    rundir.ProcessRecord(router.name, daemon, pid, rundir.STAGE_FRR)
                )
        return inst

    def bird(self, router: str) -> bird.BirdInstance:
        if self.node(router).role is not Role.ROUTER:
            raise LabError(f"{router} is not a router")
        return bird.BirdInstance(router, self.ns(router), self.node_dir(router) / "bird")

    # --- names and commands ---------------------------------------------------------

    @property
    def run(self) -> str:
        return self.state.run

    @property
    def directory(self) -> Path:
        """The run directory (logs, configs, sockets); removed at teardown."""
        return self.state.directory

    def node(self, name: str) -> Node:
        return self.topology.node(name)

    def ns(self, node: str) -> str:
        """The namespace name of a topology node."""
        self.topology.node(node)
        return namespace_name(self.run, node)

    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(n.name) for n in self.topology.nodes)

    def node_dir(self, node: str) -> Path:
        path = self.directory / node
        path.mkdir(exist_ok=True)
        return path

    def _frr_dir(self, node: str) -> Path:
        return self.node_dir(node) / "frr"

    def exec(
        self,
        node: str,
        argv: Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a node's namespace and wait for it."""
        return netns.run(
            netns.in_ns(self.ns(node), argv), check=check, timeout=timeout, input=input
        )

    def popen(
        self,
        node: str,
        argv: Sequence[str],
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        network_only: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running program in a node's namespace; stopped at teardown.

        Output goes to ``<run dir>/<node>/<name>.log``. Stop it early with
        :meth:`stop_process`. ``network_only``: enter only the network namespace (nsenter),
        as the Kubernetes node programs need (see :func:`netns.nsenter`).
        """
        name = name or Path(argv[0]).name
        wrap = netns.nsenter if network_only else netns.in_ns
        with (self.node_dir(node) / f"{name}.log").open("ab") as out:
            popen = subprocess.Popen(
                wrap(self.ns(node), argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self._popens.append(popen)
        self.state.add_process(rundir.ProcessRecord(node, name, popen.pid, rundir.STAGE_APP))
        return popen

    def stop_process(
        self,
        node: str,
        popen: subprocess.Popen[bytes],
        grace: float = 2.0,
        first: signal.Signals = signal.SIGTERM,
    ) -> None:
        """``first`` (SIGTERM), then SIGKILL after ``grace``, to one process started by
        :meth:`popen`; reap it. ``first=SIGKILL`` plays a crash."""
        netns.stop([popen.pid], [self.ns(node)], grace, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=1.0)  # reap: no zombie, and returncode is set
        self.state.forget_process(popen.pid)

    def forget_process(self, popen: subprocess.Popen[bytes]) -> None:
        """A process started by :meth:`popen` exited on its own (and was waited for)."""
        self.state.forget_process(popen.pid)

    def start_responder(
        self,
        node: str,
        addresses: Iterable[str | IPAddress],
        port: int,
        *,
        udp: bool = False,
        name: str = "responder",
        timeout: float = 10.0,
    ) -> subprocess.Popen[bytes]:
        """Start ``lab/responder.py`` in a node, answering with the node's name on
        ``addresses`` (HTTP, or UDP echo); returns once every address is bound."""
        argv = [sys.executable, responder.__file__, "--port", str(port), "--name", node]
        for address in addresses:
            argv += ["--bind", str(address)]
        popen = self.popen(node, [*argv, *(["--udp"] if udp else [])], name=name)
        log_file = self.node_dir(node) / f"{name}.log"
        deadline = time.monotonic() + timeout
        while responder.READY not in log_file.read_text(errors="replace"):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"{node}: responder not ready: {log_file.read_text()}")
            time.sleep(0.01)
        return popen

    def pids(self) -> list[int]:
        """Every PID currently inside this run's namespaces."""
        return [p for ns in self.namespaces() for p in netns.pids(ns)]

    # --- ExaBGP ---------------------------------------------------------------------

    def start_exabgp(
        self, node: str, config: str | Path, env: Mapping[str, str] | None = None
    ) -> exabgp_proc.ExaBgpProcess:
        """Start ExaBGP in a node with ``config`` (a path, or the config text)."""
        if node in self._exabgp and self._exabgp[node].running():
            raise LabError(f"{node}: ExaBGP already running (pid {self._exabgp[node].pid})")
        proc = exabgp_proc.start(
            node,
            self.ns(node),
            config,
            self.node_dir(node) / "exabgp",
            pipename=self.ns(node),
            env=env,
        )
        self._exabgp[node] = proc
        self.state.add_process(rundir.ProcessRecord(node, "exabgp", proc.pid, rundir.STAGE_APP))
        return proc

    def start_exabgp_static(
        self, node: str, routes: Iterable[str], hold_time: int = 3
    ) -> exabgp_proc.ExaBgpProcess:
        """Start ExaBGP announcing fixed ``routes`` to the node's labelled peers."""
        return self.start_exabgp(node, render_static_config(self.node(node), routes, hold_time))

    def exabgp(self, node: str) -> exabgp_proc.ExaBgpProcess:
        return self._exabgp[node]

    def stop_exabgp(self, node: str, grace: float = 2.0) -> None:
        """Stop a node's ExaBGP (SIGTERM: peers get a Cease) and its children."""
        proc = self._exabgp.pop(node)
        proc.stop(grace)
        self.state.forget_process(proc.pid)
