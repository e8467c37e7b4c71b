"""The config exalb reads (``metallb.io`` objects, else the legacy ConfigMap)."""

from __future__ import annotations

from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence

CHECK = "config"


def check_config(f: Facts) -> list[Finding]:
    result = f.parsed
    if result.config is None:
        return [
            Finding(
                CHECK,
                Severity.ERROR,
                f"the config in namespace {f.snap.namespace} is refused "
                f"({len(result.errors)} error(s)); the last good config stays in force",
                evidence(str(p) for p in result.errors),
                "fix the named fields; `exalbctl config check FILE` lists every error of a "
                "YAML file before it is applied",
            )
        ]
    out: list[Finding] = []
    if not result.config.pools:
        out.append(
            Finding(
                CHECK,
                Severity.WARNING,
                f"no IPAddressPool in namespace {f.snap.namespace}: no Service gets an IP",
                (f"source: {result.config.source}",),
                "create an IPAddressPool and a BGPAdvertisement or L2Advertisement for it "
                "(README, 'Two commands'), or set config.pools in the chart's values",
            )
        )
    if result.warnings:
        out.append(
            Finding(
                CHECK,
                Severity.WARNING,
                f"the config has {len(result.warnings)} warning(s)",
                evidence(str(p) for p in result.warnings),
                "see each line; `exalbctl config check FILE` shows the same on a file",
            )
        )
    if f.l2_used and f.daemonset is not None and not f.garp_enabled:
        names = ", ".join(a.name for a in result.config.l2_advertisements)
        out.append(
            Finding(
                CHECK,
                Severity.ERROR,
                "L2Advertisements exist but the speaker pods run no garp sidecar: "
                "nobody answers ARP/NDP for their IPs",
                (f"L2Advertisement(s): {names}", "speaker pods: no container named garp"),
                "helm upgrade ... --set garp.enabled=true",
            )
        )
    return out
