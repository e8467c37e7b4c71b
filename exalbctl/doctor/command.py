"""``kubectl exalb doctor``: the subcommand's options and wiring (gather, check, print)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

import yaml

from exalbctl.doctor.checks import run_checks
from exalbctl.doctor.findings import CheckResult, Finding, Report, Severity
from exalbctl.doctor.gather import gather
from exalbctl.doctor.render import render_report
from exalbctl.source import ApiUnavailableError, LiveSource
from exalbctl.speakers import parse_speakers

HELP = "check a live cluster for the usual install mistakes (exit 1 on errors)"
EPILOG = """\
Each finding has a severity (error: traffic is or will be lost, exit code 1; warning;
info), the evidence it rests on and the fix. A check whose inputs you may not read is
reported as skipped, with the reason. Reads the API server (nodes, pods, Services,
EndpointSlices, events, Deployments, DaemonSets, webhook configurations, the metallb.io
config in --speaker-namespace) and every speaker's /status through a port-forward.
"""


def register(sub: Any, live: argparse.ArgumentParser) -> None:
    """Add ``doctor`` to the CLI (``sub``: the top-level subparsers; ``live``: the options
    every live command shares)."""
    cmd = sub.add_parser(
        "doctor",
        parents=[live],
        help=HELP,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "--config-map",
        default=os.environ.get("EXALB_CONFIG_MAP") or "config",
        help="name of the legacy MetalLB ConfigMap in the speaker namespace (chart value "
        "configMapName; default config)",
    )
    cmd.set_defaults(func=run, live=False)


def run(args: argparse.Namespace, out: TextIO) -> int:
    specs = list(args.speaker) or (
        [os.environ["EXALB_SPEAKERS"]] if os.environ.get("EXALB_SPEAKERS") else []
    )
    source = LiveSource(
        kubeconfig=args.kubeconfig,
        speakers=parse_speakers(specs),
        speaker_namespace=args.speaker_namespace,
        selector=args.speaker_selector,
        port=args.speaker_port,
        timeout=args.timeout,
    )
    try:
        report = _report(args, source)
    finally:
        source.close()
    if args.output == "json":
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    elif args.output == "yaml":
        yaml.safe_dump(report.to_json(), out, sort_keys=False)
    else:
        out.write(render_report(report))
    return report.exit_code


def _report(args: argparse.Namespace, source: LiveSource) -> Report:
    try:
        kube = source.kube()
    except ApiUnavailableError as exc:
        finding = Finding(
            "api-access",
            Severity.ERROR,
            f"cannot reach the API server: {exc}",
            fix="check --kubeconfig / KUBECONFIG and the cluster's address",
        )
        result = CheckResult("api-access", "the API server", (finding,))
        return Report(args.speaker_namespace, (result,))
    snap = gather(
        kube,
        namespace=args.speaker_namespace,
        selector=args.speaker_selector,
        config_map=args.config_map,
        read_speakers=source.speakers,
    )
    return run_checks(snap)
