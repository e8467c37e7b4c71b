"""MetalLB, or another LoadBalancer implementation, still running next to exalb and
claiming the same Services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence
from exalbctl.doctor.snapshot import (
    argv,
    containers,
    env,
    flag,
    labels,
    name,
    ref,
    spec,
    status,
)

CHECK = "other-load-balancers"

# image fragment -> implementation (every one of them serves Services of type LoadBalancer
# without a loadBalancerClass unless configured otherwise; first match wins)
IMAGES = (
    ("metallb/controller", "MetalLB"), ("metallb/speaker", "MetalLB"),
    ("kube-vip-cloud-provider", "kube-vip's cloud provider"), ("kube-vip", "kube-vip"),
    ("klipper-lb", "k3s ServiceLB"), ("openelb", "OpenELB"),
    ("purelb", "PureLB"), ("kube-loxilb", "LoxiLB"), ("cloud-controller-manager",
    "a cloud controller manager"),
)  # fmt: skip


# implementation -> the environment variable that must be "true" for it to serve Services
# (kube-vip is often there only for the control plane's address; its manifest generator's
# ``--services`` sets ``svc_enable``)
ENABLED_BY = {"kube-vip": "svc_enable"}


def _serves_services(what: str, container: Mapping[str, Any]) -> bool:
    var = ENABLED_BY.get(what)
    return var is None or env(container).get(var, "").lower() == "true"


def implementation(workload: Mapping[str, Any]) -> str | None:
    """Which LoadBalancer implementation a Deployment/DaemonSet runs, if any (never exalb)."""
    lab = labels(workload)
    if lab.get("app.kubernetes.io/part-of") == "exalb":
        return None
    if "metallb" in (lab.get("app.kubernetes.io/name"), lab.get("app")):
        return "MetalLB"
    for c in containers(workload):
        image = str(c.get("image", ""))
        if any(var.startswith("METALLB_") for var in env(c)):
            return "MetalLB"
        what = next((what for fragment, what in IMAGES if fragment in image), None)
        if what is not None and _serves_services(what, c):
            return what
    return None


def _desired(workload: Mapping[str, Any]) -> int:
    if workload.get("kind") == "DaemonSet":
        return int(status(workload).get("desiredNumberScheduled") or 0)
    replicas = spec(workload).get("replicas")
    return 1 if replicas is None else int(replicas)


def _ready(workload: Mapping[str, Any]) -> int:
    st = status(workload)
    return int(st.get("numberReady") or st.get("readyReplicas") or 0)


def _lb_class(workload: Mapping[str, Any]) -> str | None:
    for c in containers(workload):
        # MetalLB's --lb-class flag; kube-vip's lb_class_name variable
        value = flag(argv(c), "--lb-class") or env(c).get("lb_class_name")
        if value:
            return value
    return None


def _claims(f: Facts, what: str) -> list[str]:
    """Evidence on the Services: events the other implementation recorded on them."""
    ours = {ref(s) for s in f.our_services}
    key = what.split(maxsplit=1)[0].lower()
    hits = [
        e
        for e in f.snap.events
        if key in str((e.get("source") or {}).get("component") or e.get("reportingComponent"))
        and f"{(e.get('involvedObject') or {}).get('namespace')}/"
        f"{(e.get('involvedObject') or {}).get('name')}"
        in ours
    ]
    if not hits:
        return []
    last = hits[-1]
    return [
        f"{len(hits)} event(s) from {what} on exalb's Services, e.g. "
        f"{(last.get('involvedObject') or {}).get('name')}: {last.get('reason')}: "
        f"{str(last.get('message'))[:120]}"
    ]


def check_others(f: Facts) -> list[Finding]:
    out = []
    running: dict[str, list[str]] = {}
    for w in f.snap.workloads:
        what = implementation(w)
        if what is None or _desired(w) == 0:
            continue
        other_class = _lb_class(w)
        if other_class is not None and other_class != f.lb_class:
            continue  # it serves another loadBalancerClass: no conflict
        image = ", ".join(str(c.get("image")) for c in containers(w))
        running.setdefault(what, []).append(
            f"{w.get('kind')} {ref(w)}: {_ready(w)}/{_desired(w)} ready ({image})"
        )
    n = len(f.our_services)
    for what, lines in sorted(running.items()):
        out.append(
            Finding(
                CHECK,
                Severity.ERROR,
                f"{what} runs and claims the same Services as exalb ({n} LoadBalancer Service(s) "
                f"with loadBalancerClass {f.lb_class or 'unset'}): two controllers write their "
                "status, two speakers announce from the same node addresses",
                evidence([*lines, *_claims(f, what)]),
                (
                    "finish the migration (README: 'Migrating from MetalLB'): remove MetalLB's "
                    "controller and speakers, keeping its CRDs"
                    if what == "MetalLB"
                    else f"remove {what}, or give one of the two a loadBalancerClass (exalb: helm "
                    "--set loadBalancerClass=NAME, and the same spec.loadBalancerClass on Services)"
                ),
            )
        )
    if "MetalLB" not in running:
        out += _leftover_webhooks(f)
    return out


def _guards_metallb(hook: Mapping[str, Any]) -> bool:
    groups = [g for r in hook.get("rules") or [] for g in r.get("apiGroups") or []]
    return "metallb.io" in groups


def _leftover_webhooks(f: Facts) -> list[Finding]:
    left: dict[str, str] = {}
    for w in f.snap.webhooks:
        for h in w.get("webhooks") or []:
            if _guards_metallb(h):
                svc = (h.get("clientConfig") or {}).get("service") or {}
                left[name(w)] = (
                    f"ValidatingWebhookConfiguration {name(w)} -> Service "
                    f"{svc.get('namespace')}/{svc.get('name')} "
                    f"(failurePolicy {h.get('failurePolicy', 'Fail')})"
                )
    if not left:
        return []
    return [
        Finding(
            CHECK,
            Severity.WARNING,
            "MetalLB's validating webhook is left behind without MetalLB: with failurePolicy "
            "Fail every change to a metallb.io object is refused",
            evidence(left.values()),
            f"kubectl delete validatingwebhookconfiguration {' '.join(sorted(left))}",
        )
    ]
