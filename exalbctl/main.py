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
discovery and the API server's pod proxy in a cluster, or ``--speaker NAME=URL`` (http or a
unix socket) for labs and debugging. The joining is pure (:mod:`exalbctl.report`), and so is
the table layout (:mod:`exalbctl.render`); this module is wiring only. Every command takes
``-o json`` or ``-o yaml`` for scripts. This package may use both programs' pure cores (the
allocator's plan), which is why it lives outside ``exalb`` (the shared core imports neither
program).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from controller.plan import PlanRow, plan
from exalb.config.crd import LEGACY_SOURCE_ANNOTATION
from exalb.config.documents import parse_files, split_documents
from exalb.config.export import config_to_dict, summary_lines
from exalb.config.legacy import (
    CONFIG_KEY,
    Renamed,
    legacy_text_to_objects,
    legacy_to_objects,
    with_object_names,
)
from exalb.config.problems import Problems
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import NAMESPACES, SERVICES
from exalb.views import service_view
from exalbctl import render, report
from exalbctl.doctor import command as doctor
from exalbctl.source import ApiUnavailableError, LiveSource, Source
from exalbctl.speakers import DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SELECTOR, parse_speakers

SPEAKERS_HELP = f"""\
how the live commands (status, routes, peers, why) reach the speakers:
  --speaker NAME=URL (repeatable) or env EXALB_SPEAKERS="n1=URL,n2=URL": read each
      speaker's /status directly; URL is http://host:port (its --metrics-addr) or
      unix:///path (its --status-socket, which reaches a speaker in another network
      namespace on the same host). For labs and debugging; no cluster needed.
  otherwise: list the speaker pods (-l {DEFAULT_SELECTOR})
      in --speaker-namespace (env EXALB_NAMESPACE or METALLB_NAMESPACE, default
      {DEFAULT_NAMESPACE}) and GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/status through
      the API server (PORT: the pod's container port named "metrics", else {DEFAULT_PORT}).
      Needs no network path to the nodes, only RBAC "get pods/proxy" there.
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
    if getattr(args, "live", False):
        return _live(args, out, source, parser)
    code: int = args.func(args, out)
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exalbctl",
        description=__doc__.splitlines()[0],
        epilog=SPEAKERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers()
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
        "status", "per Service: IPs, pool, nodes announcing by BGP / L2, flags", _status
    )
    st.add_argument("service", nargs="?", help="NAME or NAMESPACE/NAME (default: all)")
    _namespaces(st)
    ro = live_command(
        "routes",
        "per node and peer: ExaBGP's adj-rib-out, and routes wanted but not on the wire",
        _routes,
    )
    ro.add_argument("--node", default=None, help="only this node")
    ro.add_argument("--prefix", default=None, help="only this prefix (or IP)")
    pe = live_command("peers", "per node: BGP peers and session states", _peers)
    pe.add_argument("--node", default=None, help="only this node")
    wh = live_command("why", "why a Service is (not) announced, node by node", _why)
    wh.add_argument("service", help="NAME or NAMESPACE/NAME")
    wh.add_argument("-n", "--namespace", default=None, help="the Service's namespace")
    wh.add_argument("--events", type=int, default=5, help="how many recent events (default 5)")
    doctor.register(sub, live)
    cfg = sub.add_parser("config", help="check or convert config files").add_subparsers()
    check = cfg.add_parser("check", help="parse and validate config files")
    check.add_argument("files", nargs="+")
    check.add_argument("--namespace", default=None, help="only objects of this namespace")
    _output(check)
    check.set_defaults(func=_config_check)
    conv = cfg.add_parser("convert", help="legacy ConfigMap to metallb.io objects")
    conv.add_argument("file")
    conv.add_argument(
        "--namespace",
        default=None,
        help="namespace of the objects (default: the ConfigMap's, or metallb-system)",
    )
    conv.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    conv.set_defaults(func=_config_convert)
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
    pl.set_defaults(func=_plan)
    return p


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")


def _dump(value: Any, fmt: str, out: TextIO) -> None:
    """``-o json`` / ``-o yaml``: the same plain value either way."""
    if fmt == "yaml":
        yaml.safe_dump(json.loads(json.dumps(value)), out, sort_keys=False)
    else:
        json.dump(value, out, indent=2)
        out.write("\n")


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
        default=_env("EXALB_NAMESPACE") or _env("METALLB_NAMESPACE") or DEFAULT_NAMESPACE,
        help="where the speaker pods run (env EXALB_NAMESPACE, METALLB_NAMESPACE; "
        f"default {DEFAULT_NAMESPACE})",
    )
    p.add_argument(
        "--speaker-selector",
        default=_env("EXALB_SPEAKER_SELECTOR") or DEFAULT_SELECTOR,
        help="label selector of the speaker pods (env EXALB_SPEAKER_SELECTOR)",
    )
    p.add_argument(
        "--speaker-port",
        type=int,
        default=DEFAULT_PORT,
        help="status port when a pod names no 'metrics' port",
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


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


# -- live commands ------------------------------------------------------------------------

LiveCommand = Callable[[argparse.Namespace, TextIO, Source], int]


def _live(
    args: argparse.Namespace,
    out: TextIO,
    source: Source | None,
    parser: argparse.ArgumentParser,
) -> int:
    owned: LiveSource | None = None
    if source is None:
        specs = list(args.speaker) or (
            [os.environ["EXALB_SPEAKERS"]] if _env("EXALB_SPEAKERS") else []
        )
        try:
            targets = parse_speakers(specs)
        except ValueError as exc:
            parser.error(str(exc))
        owned = LiveSource(
            kubeconfig=args.kubeconfig,
            speakers=targets,
            speaker_namespace=args.speaker_namespace,
            selector=args.speaker_selector,
            port=args.speaker_port,
            timeout=args.timeout,
        )
        source = owned
    try:
        command: LiveCommand = args.func
        return command(args, out, source)
    finally:
        if owned is not None:
            owned.close()


def _emit(
    args: argparse.Namespace, out: TextIO, doc: Mapping[str, Any], text: Callable[[], str]
) -> None:
    if args.output in ("json", "yaml"):
        _dump(doc, args.output, out)
    else:
        out.write(text())


def _service_ref(text: str, namespace: str | None, source: Source) -> tuple[str, str]:
    """``ns/name`` or ``name`` (in ``-n``, else the kubeconfig context's namespace)."""
    ns, sep, name = text.partition("/")
    if sep:
        return ns, name
    return namespace or source.default_namespace(), text


def _status(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    namespace: str | None = None
    name: str | None = None
    if args.service:
        namespace, name = _service_ref(args.service, args.namespace, source)
    elif not args.all_namespaces:
        namespace = args.namespace or source.default_namespace()
    api_error = None
    services: list[dict[str, Any]] | None
    try:
        services = source.services(namespace)
    except ApiUnavailableError as exc:
        services, api_error = None, str(exc)
    speakers = source.speakers(f"{namespace}/{name}" if name else None)
    doc = report.status_report(
        services, speakers, namespace=namespace, name=name, api_error=api_error
    )
    _emit(args, out, doc, lambda: render.render_status(doc))
    if name and not doc["services"]:
        if args.output == "text":
            out.write(f"Service {namespace}/{name} not found\n")
        return 1
    return 1 if api_error and not any(s.reachable for s in speakers) else 0


def _nodes_exit(args: argparse.Namespace, out: TextIO, doc: Mapping[str, Any]) -> int:
    """Exit code of a per-node view: 1 when the asked node has no speaker or none answers."""
    if args.node and not doc["nodes"]:
        if args.output == "text":
            out.write(f"no speaker for node {args.node}\n")
        return 1
    return 0 if any(n["reachable"] for n in doc["nodes"]) else 1


def _routes(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    speakers = source.speakers()
    doc = report.routes_report(speakers, node=args.node, prefix=args.prefix)
    _emit(args, out, doc, lambda: render.render_routes(doc))
    return _nodes_exit(args, out, doc)


def _peers(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    doc = report.peers_report(source.speakers(), node=args.node)
    _emit(args, out, doc, lambda: render.render_peers(doc))
    return _nodes_exit(args, out, doc)


def _why(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    namespace, name = _service_ref(args.service, args.namespace, source)
    key = f"{namespace}/{name}"
    api_error = None
    obj = None
    events: list[dict[str, Any]] = []
    try:
        obj = source.service(namespace, name)
    except ApiUnavailableError as exc:
        api_error = str(exc)
    if obj is not None:
        uid = (obj.get("metadata") or {}).get("uid")
        events = source.events(namespace, name, str(uid) if uid else None)
    doc = report.why_report(
        key, obj, source.speakers(key), events=events, api_error=api_error, last_events=args.events
    )
    now = datetime.now(UTC)
    _emit(args, out, doc, lambda: render.render_why(doc, now))
    return 0 if doc["found"] else 1


def _config_check(args: argparse.Namespace, out: TextIO) -> int:
    result = parse_files(args.files, namespace=args.namespace)
    if args.output in ("json", "yaml"):
        _dump(
            {
                "valid": result.ok,
                "errors": [str(p) for p in result.errors],
                "warnings": [str(p) for p in result.warnings],
                "config": config_to_dict(result.config) if result.config else None,
            },
            args.output,
            out,
        )
        return 0 if result.ok else 1
    for problem in result.problems:
        out.write(f"{problem}\n")
    if result.config is None:
        out.write(f"invalid: {len(result.errors)} error(s)\n")
        return 1
    for line in summary_lines(result.config):
        out.write(f"{line}\n")
    out.write("valid\n")
    return 0


def _config_convert(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        out.write(f"{args.file}: cannot be read: {exc.strerror}\n")
        return 1
    docs, problems = split_documents(text, args.file)
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            meta = doc.get("metadata") or {}
            ns = args.namespace or meta.get("namespace") or "metallb-system"
            objs, p = legacy_text_to_objects(
                str((doc.get("data") or {}).get(CONFIG_KEY, "")),
                namespace=ns,
                origin=f"ConfigMap {meta.get('name', '')}",
            )
        else:
            objs, p = legacy_to_objects(
                doc,
                namespace=args.namespace or "metallb-system",
                origin=args.file,
                problems=Problems(),
            )
        problems.items.extend(p.items)
        objects.extend(objs)
    objects, renamed = with_object_names(objects, problems, args.file)
    if problems.errors:
        for problem in problems.items:
            out.write(f"{problem}\n")
        return 1
    for obj in objects:
        obj["metadata"].pop("annotations", None)
    notes = _rename_notes(renamed)
    if args.output == "json":
        for line in notes:  # JSON has no comments; the note goes to stderr
            sys.stderr.write(f"{line}\n")
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, out, indent=2)
        out.write("\n")
    else:
        out.writelines(f"# {line}\n" for line in notes)
        yaml.safe_dump_all(objects, out, sort_keys=False)
    return 0


def _rename_notes(renamed: Sequence[Renamed]) -> list[str]:
    """What a user must change outside the config when a pool got another name."""
    if not renamed:
        return []
    lines = ["IPAddressPool names changed to valid object names (as MetalLB's converter does):"]
    lines += [f"  {r.legacy} -> {r.name}  (from {r.source})" for r in renamed]
    lines += [
        "Services that name an old pool in the metallb.io/address-pool (or",
        "metallb.universe.tf/address-pool) annotation must be changed to the new name.",
    ]
    return lines


def _plan(args: argparse.Namespace, out: TextIO) -> int:
    result = parse_files(args.config)
    if result.config is None:
        for problem in result.problems:
            out.write(f"{problem}\n")
        out.write("the config is invalid; nothing to plan\n")
        return 1
    ns_labels: dict[str, dict[str, str]] = {}
    if args.services is None:
        try:
            docs, ns_labels = live_services(args.kubeconfig)
        except ApiError as exc:
            out.write(f"cannot read the cluster: {exc}\n")
            return 1
    else:
        try:
            with open(args.services, encoding="utf-8") as fh:
                services_text = fh.read()
        except OSError as exc:
            out.write(f"{args.services}: cannot be read: {exc.strerror}\n")
            return 1
        docs, problems = split_documents(services_text, args.services)
        if problems.errors:
            out.write("\n".join(map(str, problems.errors)) + "\n")
            return 1
        # Namespaces in the dump (``kubectl get svc,ns -A -o yaml``) give namespaceSelectors
        # their labels; without them a pool's namespaceSelectors match nothing.
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "Namespace":
                meta = d.get("metadata") or {}
                ns_labels[str(meta.get("name"))] = dict(meta.get("labels") or {})
    views = [
        service_view(d) for d in docs if isinstance(d, dict) and d.get("kind") in (None, "Service")
    ]
    rows = plan(result.config, views, ns_labels, lb_class=args.lb_class)
    if args.output in ("json", "yaml"):
        _dump([_row_dict(r) for r in rows], args.output, out)
        return 0
    _table(
        out,
        ["SERVICE", "ACTION", "CURRENT", "PLANNED", "POOL", "FLAGS", "DETAIL"],
        [
            [
                r.service,
                r.action,
                _ips(r.current),
                _ips(r.planned),
                r.pool or "-",
                ",".join(r.flags) or "-",
                r.message,
            ]
            for r in rows
        ],
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.action] = counts.get(r.action, 0) + 1
    out.write(", ".join(f"{n} {a}" for a, n in sorted(counts.items())) + "\n")
    return 0


def live_services(kubeconfig: str | None) -> tuple[list[Any], dict[str, dict[str, str]]]:
    """Every Service of the cluster, and every Namespace's labels."""
    kube = KubeClient(kubeconfig)
    try:
        services = kube.list(SERVICES).items
        labels = {
            str(ns["metadata"]["name"]): dict(ns["metadata"].get("labels") or {})
            for ns in kube.list(NAMESPACES).items
        }
    finally:
        kube.close()
    return list(services), labels


def _ips(ips: Sequence[object]) -> str:
    return ",".join(map(str, ips)) or "-"


def _row_dict(r: PlanRow) -> dict[str, Any]:
    return {
        "service": r.service,
        "action": r.action,
        "current": [str(i) for i in r.current],
        "planned": [str(i) for i in r.planned],
        "pool": r.pool,
        "flags": list(r.flags),
        "message": r.message,
    }


def _table(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    out.write(render.table(header, rows))


__all__ = ["LEGACY_SOURCE_ANNOTATION", "main"]
