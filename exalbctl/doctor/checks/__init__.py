"""Every doctor check, in the order they are reported, and the runner (pure).

A check declares the snapshot parts it cannot do without; when one of them could not be
read, the check is skipped with that reason (``api-access`` then names the part and the
checks it cost), so a missing permission never passes for a healthy cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exalbctl.doctor import snapshot as part
from exalbctl.doctor.checks import access, bgp, config, l2, network, others, services, speakers
from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import CheckResult, Finding, Report
from exalbctl.doctor.snapshot import Snapshot


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    needs: tuple[str, ...]
    run: Callable[[Facts], list[Finding]]


CHECKS = (
    Check(config.CHECK, "the config exalb reads is valid and has pools", (part.CONFIG,),
          config.check_config),
    Check(speakers.READY, "a ready speaker on every node that should run one",
          (part.NODES, part.SPEAKER_PODS), speakers.check_ready),
    Check(speakers.STATUS, "the speakers' own view: reachable, current config, peers rendered",
          (part.SPEAKERS, part.SPEAKER_PODS), speakers.check_status),
    Check(bgp.CHECK, "BGP sessions established (with ExaBGP's reason when not)",
          (part.SPEAKERS,), bgp.check_sessions),
    Check(speakers.EXCLUDED, "exclude-from-external-load-balancers not on every node",
          (part.NODES, part.SPEAKER_PODS), speakers.check_excluded),
    Check(network.OVERLAP, "pools clear of node addresses, the pod and the Service network",
          (part.CONFIG, part.NODES), network.check_overlap),
    Check(network.STRICT_ARP, "kube-proxy IPVS has strictARP when L2 mode is used",
          (part.CONFIG, part.KUBE_SYSTEM), network.check_strict_arp),
    Check(l2.CHECK, "L2Advertisement interfaces exist on the nodes that should answer",
          (part.CONFIG, part.NODES, part.SPEAKERS, part.SPEAKER_PODS), l2.check_interfaces),
    Check(services.PENDING, "every LoadBalancer Service has an IP (pending ones by reason)",
          (part.SERVICES,), services.check_pending),
    Check(services.LOCAL, "externalTrafficPolicy Local Services have an endpoint on an "
          "announcing node", (part.SERVICES, part.ENDPOINT_SLICES, part.NODES,
                              part.SPEAKER_PODS), services.check_local),
    Check(others.CHECK, "no other LoadBalancer implementation (MetalLB ...) claims the Services",
          (part.WORKLOADS,), others.check_others),
    Check(access.CHECK, "you may read the speakers (pods/portforward) for the live views",
          (part.ACCESS,), access.check_access),
)  # fmt: skip


def run_checks(snap: Snapshot) -> Report:
    facts = Facts(snap)
    results: list[CheckResult] = []
    skipped: dict[str, list[str]] = {}
    for check in CHECKS:
        missing = [p for p in check.needs if p in snap.unreadable]
        if missing:
            for p in missing:
                skipped.setdefault(p, []).append(check.id)
            why = "; ".join(f"{p}: {snap.unreadable[p]}" for p in missing)
            results.append(CheckResult(check.id, check.title, skipped=why))
            continue
        results.append(CheckResult(check.id, check.title, tuple(check.run(facts))))
    api = access.api_findings(snap.unreadable, skipped)
    results.append(CheckResult(access.API, "what the API server would not show", tuple(api)))
    return Report(snap.namespace, tuple(results))
