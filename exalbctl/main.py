"""``exalbctl`` (also ``kubectl exalb``): answers about config and allocation.

Offline commands work on files, so a config can be checked and its effect planned in CI
before it reaches a cluster:

* ``config check FILE...``: parse CRD objects, a legacy ConfigMap manifest or a bare legacy
  document; print the model or every error (exit 1).
* ``config convert FILE``: legacy ConfigMap → the equivalent ``metallb.io`` objects.
* ``plan --config FILE --services FILE``: which IP each Service in a ``kubectl get svc -o
  yaml`` dump would get or keep, and which would become out-of-pool.

Every command takes ``-o json`` for scripts. This package is wiring only: it may use both
programs' pure cores (the allocator, the speaker's decisions), which is why it lives outside
``exalb`` (the shared core imports neither program).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from controller.plan import PlanRow, plan
from exalb.config.crd import LEGACY_SOURCE_ANNOTATION
from exalb.config.documents import parse_files, split_documents
from exalb.config.export import config_to_dict, summary_lines
from exalb.config.legacy import CONFIG_KEY, legacy_text_to_objects, legacy_to_objects
from exalb.config.problems import Problems
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import NAMESPACES, SERVICES
from exalb.views import service_view


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(out)
        return 2
    code: int = args.func(args, out)
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exalbctl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers()
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
        help="a `kubectl get svc -A -o yaml` dump; without it the live cluster's Services "
        "(and Namespaces, for namespaceSelectors) are read",
    )
    pl.add_argument("--kubeconfig", default=None, help="for the live cluster")
    pl.add_argument("--lb-class", default=None)
    _output(pl)
    pl.set_defaults(func=_plan)
    return p


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")


def _config_check(args: argparse.Namespace, out: TextIO) -> int:
    result = parse_files(args.files, namespace=args.namespace)
    if args.output == "json":
        json.dump(
            {
                "valid": result.ok,
                "errors": [str(p) for p in result.errors],
                "warnings": [str(p) for p in result.warnings],
                "config": config_to_dict(result.config) if result.config else None,
            },
            out,
            indent=2,
        )
        out.write("\n")
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
    if problems.errors:
        for problem in problems.items:
            out.write(f"{problem}\n")
        return 1
    for obj in objects:
        obj["metadata"].pop("annotations", None)
    if args.output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, out, indent=2)
        out.write("\n")
    else:
        yaml.safe_dump_all(objects, out, sort_keys=False)
    return 0


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
    views = [
        service_view(d) for d in docs if isinstance(d, dict) and d.get("kind") in (None, "Service")
    ]
    rows = plan(result.config, views, ns_labels, lb_class=args.lb_class)
    if args.output == "json":
        json.dump([_row_dict(r) for r in rows], out, indent=2)
        out.write("\n")
        return 0
    _table(
        out,
        ["SERVICE", "ACTION", "CURRENT", "PLANNED", "POOL", "DETAIL"],
        [
            [r.service, r.action, _ips(r.current), _ips(r.planned), r.pool or "-", r.message]
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
        "message": r.message,
    }


def _table(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        out.write(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


__all__ = ["LEGACY_SOURCE_ANNOTATION", "main"]
