"""What the user may not read: the live views' ``pods/portforward`` (the speakers' loopback
``/status``, :mod:`exalbctl.speakers`), and any part of the snapshot
the API server refused (its checks are skipped, and said so here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity
from exalbctl.doctor.snapshot import PORT_FORWARD, SPEAKERS

CHECK = "live-view-access"
API = "api-access"


def check_access(f: Facts) -> list[Finding]:
    denied = [a for a in f.snap.access if not a.allowed]
    if not denied:
        return []
    ns = f.snap.namespace
    return [
        Finding(
            CHECK,
            Severity.WARNING,
            f"you may not {', '.join(str(a) for a in denied)}: kubectl exalb status, why, "
            "routes, peers (and this doctor) cannot read the speakers",
            tuple(f"SelfSubjectAccessReview: {a} denied {a.reason}".rstrip() for a in denied),
            f"kubectl -n {ns} create role exalb-live-views --verb=get,list,create --resource="
            f"pods,pods/portforward && kubectl -n {ns} create rolebinding exalb-live-views --role="
            "exalb-live-views --user=YOU (or --group=...)",
        )
    ]


def api_findings(
    unreadable: Mapping[str, str], skipped: Mapping[str, Sequence[str]]
) -> list[Finding]:
    """One warning per part the API server would not give (speakers denied by RBAC are
    :func:`check_access`'s)."""
    return [
        Finding(
            API,
            Severity.WARNING,
            f"could not read {part}: {why}",
            (f"checks skipped: {', '.join(skipped.get(part, [])) or 'none'}",),
            "run the doctor with a kubeconfig that may list these cluster-wide (the 'view' "
            "ClusterRole does not cover nodes or ValidatingWebhookConfigurations)",
        )
        for part, why in sorted(unreadable.items())
        if not (part == SPEAKERS and PORT_FORWARD in why)
    ]
