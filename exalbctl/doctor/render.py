"""The doctor's report as text for a terminal (pure; ``-o json|yaml`` dump the report's
JSON form instead)."""

from __future__ import annotations

import textwrap

from exalbctl.doctor.findings import Finding, Report, Severity

WIDTH = 100
INDENT = " " * 9


def _wrapped(label: str, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - len(INDENT) - 10, break_on_hyphens=False) or [""]
    head = f"{INDENT}{label:<9} "
    return [head + lines[0], *(INDENT + " " * 10 + line for line in lines[1:])]


def render_finding(f: Finding) -> str:
    out = [f"{str(f.severity).upper():<8} {f.check}: {f.title}"]
    for i, line in enumerate(f.evidence):
        out += _wrapped("evidence" if i == 0 else "", line)
    if f.fix:
        out += _wrapped("fix", f.fix)
    return "\n".join(out) + "\n"


def render_report(report: Report) -> str:
    counts = ", ".join(f"{report.count(s)} {s}" for s in Severity)
    ran = sum(1 for r in report.results if r.skipped is None)
    head = (
        f"exalb doctor: namespace {report.namespace}, {ran} of {len(report.results)} checks "
        f"ran: {counts}\n"
    )
    body = [render_finding(f) for f in report.findings]
    skipped = [f"skipped  {r.check}: {r.skipped}\n" for r in report.results if r.skipped]
    tail = [] if report.findings else ["no problems found\n"]
    return head + "\n" + "\n".join(body) + ("\n" if body else "") + "".join(skipped + tail)
