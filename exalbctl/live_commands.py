"""The live commands (``status``, ``routes``, ``peers``, ``why``): read, join, print.

Each takes the parsed arguments, an output stream and a :class:`~exalbctl.source.Source`
(the API server and the speakers, or a fake in tests); the joining is
:mod:`exalbctl.report`, the layout :mod:`exalbctl.render`. :func:`run_live` builds the real
source from the command line when none is given and closes it afterwards.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from exalbctl import render, report
from exalbctl.output import emit
from exalbctl.source import ApiUnavailableError, LiveSource, Source
from exalbctl.speakers import parse_speakers

LiveCommand = Callable[[argparse.Namespace, TextIO, Source], int]


def env(name: str) -> str | None:
    """An environment variable, with empty meaning unset."""
    return os.environ.get(name) or None


def run_live(
    args: argparse.Namespace,
    out: TextIO,
    source: Source | None,
    parser: argparse.ArgumentParser,
) -> int:
    owned: LiveSource | None = None
    if source is None:
        specs = list(args.speaker) or (
            [os.environ["EXALB_SPEAKERS"]] if env("EXALB_SPEAKERS") else []
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


def _service_ref(text: str, namespace: str | None, source: Source) -> tuple[str, str]:
    """``ns/name`` or ``name`` (in ``-n``, else the kubeconfig context's namespace)."""
    ns, sep, name = text.partition("/")
    if sep:
        return ns, name
    return namespace or source.default_namespace(), text


def status(args: argparse.Namespace, out: TextIO, source: Source) -> int:
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
    emit(args, out, doc, lambda: render.render_status(doc))
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


def routes(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    speakers = source.speakers()
    doc = report.routes_report(speakers, node=args.node, prefix=args.prefix)
    emit(args, out, doc, lambda: render.render_routes(doc))
    return _nodes_exit(args, out, doc)


def peers(args: argparse.Namespace, out: TextIO, source: Source) -> int:
    doc = report.peers_report(source.speakers(), node=args.node)
    emit(args, out, doc, lambda: render.render_peers(doc))
    return _nodes_exit(args, out, doc)


def why(args: argparse.Namespace, out: TextIO, source: Source) -> int:
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
    emit(args, out, doc, lambda: render.render_why(doc, now))
    return 0 if doc["found"] else 1
