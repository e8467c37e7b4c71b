"""Services: those waiting for an IP (grouped by reason), and ``externalTrafficPolicy:
Local`` Services that no node can announce for want of a local endpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from exalb.contracts.service_status import Condition
from exalb.views import endpoint_slice_endpoints
from exalbctl.doctor.facts import Facts, ingress_ips
from exalbctl.doctor.findings import Finding, Severity, evidence, names
from exalbctl.doctor.snapshot import labels, meta, ref, spec, status

PENDING = "services-pending"
LOCAL = "local-endpoints"
FAILURES = ("AllocationFailed", "LoadBalancerFailed", "not enough clusterips")

_IP = re.compile(r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,})\b")
_HOLDERS = re.compile(r"in use by [^\s,]+(?:, [^\s,]+)*")


def group_key(reason: str, message: str) -> str:
    """A reason the Services of one group share: addresses and Service names masked."""
    return f"{reason}: {_HOLDERS.sub('in use by <Services>', _IP.sub('<ip>', message))}"


def _pending_reason(f: Facts, svc: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message): the controller's condition, else its latest failure event."""
    for c in status(svc).get("conditions") or []:
        if c.get("type") == Condition.ALLOCATED and c.get("status") == "False":
            return str(c.get("reason")), str(c.get("message") or "")
    m = meta(svc)
    events = [
        e
        for e in f.snap.events
        if (e.get("involvedObject") or {}).get("name") == m.get("name")
        and (e.get("involvedObject") or {}).get("namespace") == m.get("namespace")
        and e.get("reason") in FAILURES
    ]
    if events:
        last = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return str(last.get("reason")), str(last.get("message") or "")
    return "NoDecision", "no decision recorded by the controller (is it running and leading?)"


FIXES = (
    (
        "no available IPs",
        "add addresses to the pool (IPAddressPool spec.addresses) or free "
        "some; `kubectl exalb plan -f NEW.yaml` shows the effect first",
    ),
    ("no IPAddressPool is configured", "create an IPAddressPool and an advertisement for it"),
    (
        "autoAssign selects",
        "name a pool with the annotation metallb.io/address-pool, or set "
        "autoAssign / serviceAllocation on a pool so it selects these Services",
    ),
    ("not in any IPAddressPool", "request an IP inside a pool, or add it to one"),
    (
        "in use by",
        "share the IP (same metallb.io/allow-shared-ip key, distinct ports, same "
        "selector for Local) or request another",
    ),
    ("does not exist", "fix the metallb.io/address-pool annotation (a pool of that name)"),
    (
        "serviceAllocation",
        "the pool's serviceAllocation (namespaces, selectors) must select the Service",
    ),
    (
        "NoDecision",
        "check the controller: kubectl -n NAMESPACE get deploy,pods -l "
        "app.kubernetes.io/component=controller, and its log",
    ),
)


def _fix(key: str) -> str:
    for needle, fix in FIXES:
        if needle in key:
            return fix
    return "kubectl exalb why NAMESPACE/NAME explains one Service in full"


def check_pending(f: Facts) -> list[Finding]:
    groups: dict[str, list[str]] = {}
    examples: dict[str, str] = {}
    for svc in f.our_services:
        if ingress_ips(svc):
            continue
        reason, message = _pending_reason(f, svc)
        key = group_key(reason, message)
        groups.setdefault(key, []).append(ref(svc))
        examples.setdefault(key, f"{ref(svc)}: {reason}: {message}")
    return [
        Finding(
            PENDING,
            Severity.ERROR,
            f"{len(svcs)} Service(s) without an IP: {key}",
            evidence([examples[key], *(f"also {s}" for s in svcs[1:])]),
            _fix(key),
        )
        for key, svcs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


# -- externalTrafficPolicy: Local --------------------------------------------------------------


def _serving_nodes(f: Facts, svc: Mapping[str, Any]) -> set[str] | None:
    """Nodes with a serving endpoint of ``svc`` (None: it has no serving endpoint)."""
    m = meta(svc)
    nodes: set[str] = set()
    found = False
    for s in f.snap.endpoint_slices:
        if meta(s).get("namespace") != m.get("namespace"):
            continue
        if labels(s).get("kubernetes.io/service-name") != m.get("name"):
            continue
        for ep in endpoint_slice_endpoints(s):
            if ep.is_serving:
                found = True
                if ep.node_name:
                    nodes.add(ep.node_name)
    return nodes if found else None


def check_local(f: Facts) -> list[Finding]:
    nowhere: list[str] = []  # no serving endpoint at all
    stranded: list[str] = []  # endpoints, but on nodes that cannot announce
    for svc in f.our_services:
        if spec(svc).get("externalTrafficPolicy") != "Local" or not ingress_ips(svc):
            continue
        nodes = _serving_nodes(f, svc)
        if nodes is None:
            nowhere.append(ref(svc))
            continue
        if any(f.why_not_announcing(n) is None for n in nodes):
            continue
        where = ", ".join(f"{n} ({f.why_not_announcing(n)})" for n in sorted(nodes)) or "-"
        stranded.append(f"{ref(svc)}: endpoints only on {where}")
    out = []
    if stranded:
        out.append(
            Finding(
                LOCAL,
                Severity.ERROR,
                f"{len(stranded)} externalTrafficPolicy Local Service(s) have endpoints only on "
                "nodes that cannot announce: no node announces them",
                evidence(stranded),
                "run their pods on nodes with a ready speaker (not labelled "
                "exclude-from-external-load-balancers), or use externalTrafficPolicy: Cluster",
            )
        )
    if nowhere:
        out.append(
            Finding(
                LOCAL,
                Severity.WARNING,
                f"{len(nowhere)} externalTrafficPolicy Local Service(s) have no ready endpoint "
                f"anywhere: {names(nowhere)}; their IPs are not announced",
                evidence(f"{s}: no serving endpoint in its EndpointSlices" for s in nowhere),
                "scale the workload up or fix its readiness; with Local only nodes running a "
                "ready pod announce the IP",
            )
        )
    return out
