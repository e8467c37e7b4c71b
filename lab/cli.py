"""``scripts/lab``: bring a containerlab topology up in namespaces by hand, poke it, tear it down.

Why a CLI beside the ``Lab`` API: debugging a failing lab test means re-creating the lab and
looking inside (``vtysh``, ``ip route``, ``tcpdump``) without writing Python. Runs started
here are marked persistent, so test sweepers leave them alone; ``down`` removes them.

    scripts/lab up bgp-ecmp --run dev          # a name under containerlab/ or a path
    scripts/lab exabgp --run dev n1 --announce 203.0.113.10/32
    scripts/lab vtysh --run dev r1 -- show bgp summary
    scripts/lab exec --run dev c -- ping -c1 203.0.113.10
    scripts/lab list
    scripts/lab down --run dev                 # or: down --stale
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lab import frr, netns, rundir
from lab.nsnet import forbid_host_dials
from lab.runner import Lab
from lab.teardown import sweep_stale
from lab.topology import TopologyError, topology_path


def resolve_topology(spec: str) -> Path:
    """A path to a clab file, or a topology name under the repository's ``containerlab/``."""
    path = Path(spec)
    if path.is_file():
        return path
    candidate = topology_path(spec)
    if candidate.is_file():
        return candidate
    raise SystemExit(f"lab: no topology file {spec!r} (nor {candidate})")


def _command(args: list[str]) -> list[str]:
    return args[1:] if args[:1] == ["--"] else args


def _up(ns: argparse.Namespace) -> int:
    lab = Lab.start(resolve_topology(ns.topology), ns.run, persistent=True)
    print(f"run {lab.run}: {lab.topology.name} up in {lab.bringup_seconds:.2f}s")
    for node in lab.topology.nodes:
        print(f"  {node.name:8} {node.role.value:7} {lab.ns(node.name)}")
    print(f"files: {lab.directory}\nstop with: scripts/lab down --run {lab.run}")
    return 0


def _down(ns: argparse.Namespace) -> int:
    if ns.stale:
        for report in sweep_stale():
            print(f"run {report.run}: removed {len(report.namespaces)} namespaces")
        return 0
    if not ns.run:
        raise SystemExit("scripts/lab down: give --run NAME or --stale")
    report = Lab.attach(ns.run).down()
    print(
        f"run {report.run}: stopped {len(report.signalled)} processes, removed "
        f"{len(report.namespaces)} namespaces in {report.seconds:.2f}s"
    )
    return 0


def _exec(ns: argparse.Namespace) -> int:
    lab = Lab.attach(ns.run)
    argv = _command(ns.cmd) or [os.environ.get("SHELL", "/bin/sh")]
    os.execvp("ip", netns.in_ns(lab.ns(ns.node), argv))


def _vtysh(ns: argparse.Namespace) -> int:
    lab = Lab.attach(ns.run)
    words = _command(ns.cmd)
    argv = lab.frr(ns.node).vtysh_argv(" ".join(words)) if words else lab.frr(ns.node).vtysh_argv()
    os.execvp(argv[0], argv)


def _exabgp(ns: argparse.Namespace) -> int:
    lab = Lab.attach(ns.run)
    if ns.config:
        proc = lab.start_exabgp(ns.node, Path(ns.config))
    else:
        proc = lab.start_exabgp_static(ns.node, ns.announce or [])
    print(f"{ns.node}: exabgp pid {proc.pid}, log {proc.log_path}")
    return 0


def _k8s_tool(ns: argparse.Namespace) -> int:
    """kubectl or helm against a cluster run, through a relay that lives as long as the tool."""
    lab = Lab.attach(ns.run)
    if lab.cluster is None:
        raise SystemExit(f"run {ns.run} has no Kubernetes cluster")
    try:
        tool = lab.cluster.kubectl if ns.action == "kubectl" else lab.cluster.helm
        proc = tool(*_command(ns.cmd), check=False, timeout=3600)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    finally:
        lab.cluster.close()


def _list(_: argparse.Namespace) -> int:
    known: set[str] = set()
    for state in rundir.list_runs():
        present = [n for n in state.namespaces if netns.exists(n)]
        known.update(state.namespaces)
        owner = (
            "persistent"
            if state.persistent
            else (
                f"owner {state.owner_pid} " + ("alive" if state.owner_alive() else "dead (stale)")
            )
        )
        print(f"{state.run:24} {len(present)} namespaces  {owner}  {state.topology}")
    orphans = [n for n in netns.list_namespaces() if n not in known]
    if orphans:
        print("namespaces without a run record (remove by hand):", " ".join(orphans))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="bring a topology up (left running)")
    up.add_argument("topology", help="clab file, or a name under ./containerlab/")
    up.add_argument("--run", help="run name (default: generated)")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="tear a run down")
    down.add_argument("--run")
    down.add_argument("--stale", action="store_true", help="every non-persistent dead run")
    down.set_defaults(func=_down)
    passthrough = (
        ("exec", _exec, "run a command in a node (default: a shell)"),
        ("vtysh", _vtysh, "vtysh on a router (interactive without CMD)"),
    )
    for name in ("kubectl", "helm"):
        tool = sub.add_parser(name, help=f"{name} against a cluster run (k8s-bgp)")
        tool.add_argument("--run", required=True)
        tool.add_argument("cmd", nargs=argparse.REMAINDER)
        tool.set_defaults(func=_k8s_tool)
    for name, func, help_ in passthrough:
        cmd = sub.add_parser(name, help=help_)
        cmd.add_argument("--run", required=True)
        cmd.add_argument("node")
        cmd.add_argument("cmd", nargs=argparse.REMAINDER)
        cmd.set_defaults(func=func)
    exa = sub.add_parser("exabgp", help="start ExaBGP on a node (config file or static routes)")
    exa.add_argument("--run", required=True)
    exa.add_argument("node")
    group = exa.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="ExaBGP config file")
    group.add_argument("--announce", nargs="+", metavar="PREFIX", help="static routes")
    exa.set_defaults(func=_exabgp)
    sub.add_parser("list", help="runs and their namespaces").set_defaults(func=_list)
    demo_cmd = sub.add_parser("demo", help="the whole of exalb on one machine (see README)")
    demo_cmd.add_argument(
        "--keep", action="store_true", help="keep everything running until Enter is pressed"
    )
    demo_cmd.add_argument("--requests", type=int, default=60)
    demo_cmd.set_defaults(func=_demo)
    return p


def _demo(ns: argparse.Namespace) -> int:
    from lab import demo  # noqa: PLC0415 (heavy; only this command needs it)

    return demo.main([*(["--keep"] if ns.keep else []), "--requests", str(ns.requests)])


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    forbid_host_dials()  # this process reaches lab addresses only from inside namespaces
    ns = parser().parse_args(argv)
    try:
        return int(ns.func(ns))
    except (TopologyError, frr.FrrError, netns.CommandError, FileExistsError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"lab: no such run or file: {exc.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
