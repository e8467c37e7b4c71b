"""``exalbctl`` (also ``kubectl exalb``): answers about config, allocation and announcements.

Offline commands work on files, so a config can be checked and its effect planned in CI
before it reaches a cluster:

* ``config check FILE...``: parse CRD objects, a legacy ConfigMap manifest or a bare legacy
  document; print the model or every error (exit 1).
* ``config convert FILE``: legacy ConfigMap → the equivalent ``metallb.io`` objects.
* ``plan --config FILE --services FILE``: which IP each Service in a ``kubectl get svc,ns
  -A -o yaml`` dump would get or keep, and the flags it would carry (out-of-pool, wrong
  family, no longer selected by its pool, request not met, missing family).

Live commands join the controller's view (Service status, pool annotation, ``exalb.io``
conditions, events) with every speaker's ``/status`` (decisions, reasons, routes with
attributes, ExaBGP's adj-rib-out and sessions, L2 ownership), so "every why has an answer":

* ``status [SERVICE] [-n NS | -A]``: per Service, IPs, pool, which nodes announce it by BGP
  and by L2, why the others do not, and out-of-pool / conflict / pending flags.
* ``routes [--node N] [--prefix P]``: per node and peer, what ExaBGP's adj-rib-out holds
  (with attributes), and the routes wanted but not on the wire.
* ``peers [--node N]``: per node, every peer and its session (state, uptime, hold time,
  graceful restart, families, routes sent).
* ``why SERVICE``: for each node, does it announce, by which protocol, to which peers with
  which attributes, and if not, the reason; plus the pool, conditions and last events.

How the speakers are reached is :mod:`exalbctl.speakers` (summarised in ``--help``): pod
discovery and a port-forward by the API server to each speaker's loopback ``/status`` in a
cluster, or ``--speaker NAME=URL`` (http or a unix socket) on the node, for labs and
debugging. The joining is pure (:mod:`exalbctl.report`), and so is
the table layout (:mod:`exalbctl.render`); the commands are :mod:`exalbctl.live_commands`,
:mod:`exalbctl.config_commands` and :mod:`exalbctl.plan_command`; this module is the command
line only. Every command takes
``-o json`` or ``-o yaml`` for scripts. This package may use both programs' pure cores (the
allocator's plan), which is why it lives outside ``exalb`` (the shared core imports neither
program).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from exalb.config.crd import LEGACY_SOURCE_ANNOTATION
from exalbctl import live_commands
from exalbctl.config_commands import config_check, config_convert
from exalbctl.doctor import command as doctor
from exalbctl.live_commands import env, run_live
from exalbctl.plan_command import plan_command
from exalbctl.source import Source
from exalbctl.speakers import DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SELECTOR

SPEAKERS_HELP = f"""\
how the live commands (status, routes, peers, why) reach the speakers:
  --speaker NAME=URL (repeatable) or env EXALB_SPEAKERS="n1=URL,n2=URL": read each
      speaker's /status directly; URL is http://127.0.0.1:PORT (its --status-addr, on the
      node itself) or unix:///path (its --status-socket, which reaches a speaker in another
      network namespace on the same host). For labs and debugging; no cluster needed.
  otherwise: list the speaker pods (-l {DEFAULT_SELECTOR})
      in --speaker-namespace (env EXALB_NAMESPACE or METALLB_NAMESPACE, default
      {DEFAULT_NAMESPACE}) and GET /status on each pod's loopback PORT through a
      port-forward by the API server (PORT: the pod's container port named "status",
      else {DEFAULT_PORT}). Needs no network path to the nodes, only RBAC "list pods" and
      "get, create pods/portforward" there (a speaker pod of an older version, with no
      "status" port, is read through the pod proxy on its "metrics" port: "get pods/proxy").
A speaker that cannot be read is reported as unreachable; the others still answer.
Services, conditions and events come from the API server (--kubeconfig, env KUBECONFIG).
"""


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, source: Source | None = None
) -> int:
    """Run one command; ``source`` replaces the live API server and speakers (tests)."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(out)
        return 2
    try:
        if getattr(args, "live", False):
            return run_live(args, out, source, parser)
        code: int = args.func(args, out)
    except BrokenPipeError:
        # the reader went away (`exalbctl ... | head`): nothing left to say, to anyone.
        # stdout is pointed at /dev/null so the interpreter's final flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command killed by SIGPIPE
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exalbctl",
        description=__doc__.splitlines()[0],
        epilog=SPEAKERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers()
    _add_live_commands(sub)
    _add_config_commands(sub)
    _add_plan_command(sub)
    return p


def _add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    live = _live_options()

    def live_command(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            parents=[live],
            help=help_,
            epilog=SPEAKERS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(func=func)
        return cmd

    st = live_command(
        "status",
        "per Service: IPs, pool, nodes announcing by BGP / L2, flags",
        live_commands.status,
    )
    st.add_argument("service", nargs="?", help="NAME or NAMESPACE/NAME (default: all)")
    _namespaces(st)
    ro = live_command(
        "routes",
        "per node and peer: ExaBGP's adj-rib-out, and routes wanted but not on the wire",
        live_commands.routes,
    )
    ro.add_argument("--node", default=None, help="only this node")
    ro.add_argument("--prefix", default=None, help="only this prefix (or IP)")
    pe = live_command("peers", "per node: BGP peers and session states", live_commands.peers)
    pe.add_argument("--node", default=None, help="only this node")
    wh = live_command("why", "why a Service is (not) announced, node by node", live_commands.why)
    wh.add_argument("service", help="NAME or NAMESPACE/NAME")
    wh.add_argument("-n", "--namespace", default=None, help="the Service's namespace")
    wh.add_argument("--events", type=int, default=5, help="how many recent events (default 5)")
    doctor.register(sub, live)


def _add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cfg = sub.add_parser("config", help="check or convert config files").add_subparsers()
    check = cfg.add_parser("check", help="parse and validate config files")
    check.add_argument("files", nargs="+")
    check.add_argument("--namespace", default=None, help="only objects of this namespace")
    _output(check)
    check.set_defaults(func=config_check)
    conv = cfg.add_parser("convert", help="legacy ConfigMap to metallb.io objects")
    conv.add_argument("file")
    conv.add_argument(
        "--namespace",
        default=None,
        help="namespace of the objects (default: the ConfigMap's, or metallb-system)",
    )
    conv.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    conv.set_defaults(func=config_convert)


def _add_plan_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pl = sub.add_parser("plan", help="what a config would do to Services")
    pl.add_argument("--config", "-f", dest="config", required=True, nargs="+")
    pl.add_argument(
        "--services",
        default=None,
        help="a `kubectl get svc,ns -A -o yaml` dump (the Namespaces give namespaceSelectors "
        "their labels); without it the live cluster's Services and Namespaces are read",
    )
    pl.add_argument("--kubeconfig", default=None, help="for the live cluster")
    pl.add_argument("--lb-class", default=None)
    _output(pl)
    pl.set_defaults(func=plan_command)


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")


def _live_options() -> argparse.ArgumentParser:
    """Options every live command shares (a parent parser, so they follow the command name
    as ``kubectl exalb status --kubeconfig ...`` passes them)."""
    p = argparse.ArgumentParser(add_help=False)
    p.set_defaults(live=True)
    p.add_argument("--kubeconfig", default=None, help="default: env KUBECONFIG, ~/.kube/config")
    p.add_argument(
        "--speaker",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="read this speaker directly (repeatable): http://host:port or unix:///path "
        "(env EXALB_SPEAKERS, comma separated); disables pod discovery",
    )
    p.add_argument(
        "--speaker-namespace",
        default=env("EXALB_NAMESPACE") or env("METALLB_NAMESPACE") or DEFAULT_NAMESPACE,
        help="where the speaker pods run (env EXALB_NAMESPACE, METALLB_NAMESPACE; "
        f"default {DEFAULT_NAMESPACE})",
    )
    p.add_argument(
        "--speaker-selector",
        default=env("EXALB_SPEAKER_SELECTOR") or DEFAULT_SELECTOR,
        help="label selector of the speaker pods (env EXALB_SPEAKER_SELECTOR)",
    )
    p.add_argument(
        "--speaker-port",
        type=int,
        default=DEFAULT_PORT,
        help="status port when a pod names no 'status' port",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per speaker")
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    return p


def _namespaces(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-n", "--namespace", default=None, help="the Services' namespace")
    group.add_argument(
        "-A", "--all-namespaces", action="store_true", help="Services of every namespace"
    )


__all__ = ["LEGACY_SOURCE_ANNOTATION", "main"]
