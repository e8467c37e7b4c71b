"""``plan``: what a config would do to the Services, before it is applied.

Reads the Services (and the Namespaces, whose labels namespaceSelectors match) from a
``kubectl get svc,ns -A -o yaml`` dump or the live cluster, runs the controller's own
allocator on them (:func:`controller.plan.plan`) and prints one row per Service.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

from controller.plan import PlanRow, plan
from exalb.config.documents import parse_files, read_text, split_documents
from exalb.config.problems import Problems
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import NAMESPACES, SERVICES
from exalb.views import namespace_labels, service_view
from exalbctl import render
from exalbctl.output import dump

Labels = dict[str, dict[str, str]]


class _InputError(Exception):
    """The Services cannot be read; the message is what the user sees."""


def plan_command(args: argparse.Namespace, out: TextIO) -> int:
    result = parse_files(args.config)
    if result.config is None:
        for problem in result.problems:
            out.write(f"{problem}\n")
        out.write("the config is invalid; nothing to plan\n")
        return 1
    try:
        docs, ns_labels = _read_services(args)
    except _InputError as exc:
        out.write(f"{exc}\n")
        return 1
    views = [
        service_view(d) for d in docs if isinstance(d, dict) and d.get("kind") in (None, "Service")
    ]
    rows = plan(result.config, views, ns_labels, lb_class=args.lb_class)
    if args.output in ("json", "yaml"):
        dump([_row_dict(r) for r in rows], args.output, out)
        return 0
    _print_rows(rows, out)
    return 0


def _read_services(args: argparse.Namespace) -> tuple[list[Any], Labels]:
    """The Service (and Namespace) documents from ``--services`` or the live cluster."""
    if args.services is None:
        try:
            return live_services(args.kubeconfig)
        except ApiError as exc:
            raise _InputError(f"cannot read the cluster: {exc}") from exc
    read = Problems()
    services_text = read_text(args.services, read)
    if services_text is None:
        raise _InputError("\n".join(map(str, read.items)))
    docs, problems = split_documents(services_text, args.services)
    if problems.errors:
        raise _InputError("\n".join(map(str, problems.errors)))
    # Namespaces in the dump (``kubectl get svc,ns -A -o yaml``) give namespaceSelectors
    # their labels; without them a pool's namespaceSelectors match nothing.
    ns_labels: Labels = namespace_labels(docs)
    return docs, ns_labels


def _print_rows(rows: Sequence[PlanRow], out: TextIO) -> None:
    out.write(
        render.table(
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
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.action] = counts.get(r.action, 0) + 1
    out.write(", ".join(f"{n} {a}" for a, n in sorted(counts.items())) + "\n")


def live_services(kubeconfig: str | None) -> tuple[list[Any], Labels]:
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
