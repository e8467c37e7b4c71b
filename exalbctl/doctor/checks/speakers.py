"""The speakers: one ready on every node that should run one, their own view of the config,
and nodes labelled out of load balancing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exalb.views import EXCLUDE_LB_LABEL
from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence, names
from exalbctl.doctor.snapshot import condition_true, labels, name, status

READY = "speakers-ready"
STATUS = "speaker-status"
EXCLUDED = "exclude-lb-label"


def _pod_trouble(pod: Mapping[str, Any]) -> str:
    """Why a speaker pod is not ready, in the kubelet's words where it has some."""
    st = status(pod)
    phase = st.get("phase") or "Unknown"
    waiting = [
        f"{c.get('name')}: {w.get('reason')}"
        + (f" ({str(w.get('message'))[:120]})" if w.get("message") else "")
        for c in st.get("containerStatuses") or []
        if (w := (c.get("state") or {}).get("waiting"))
    ]
    unready = [str(c.get("name")) for c in st.get("containerStatuses") or [] if not c.get("ready")]
    scheduling = [
        str(c.get("message"))
        for c in st.get("conditions") or []
        if c.get("type") == "PodScheduled" and c.get("status") == "False"
    ]
    detail = waiting or scheduling or ([f"not ready: {', '.join(unready)}"] if unready else [])
    return f"pod {name(pod)} is {phase}" + (f": {'; '.join(detail)}" if detail else "")


def _node_line(f: Facts, node: str) -> str:
    pods = f.speaker_pods_by_node.get(node, [])
    why = "; ".join(_pod_trouble(p) for p in pods) if pods else "no speaker pod"
    if not condition_true(f.nodes.get(node, {}), "Ready"):
        why += " (the node is not Ready)"
    return f"{node}: {why}"


def check_ready(f: Facts) -> list[Finding]:
    ns = f.snap.namespace
    if f.daemonset is None and not f.snap.speaker_pods:
        return [
            Finding(
                READY,
                Severity.ERROR,
                f"no exalb speaker in namespace {ns} (selector {f.snap.selector})",
                (f"no DaemonSet and no pod match -l {f.snap.selector} in namespace {ns}",),
                "install exalb (helm install exalb charts/exalb -n NAMESPACE) or point the "
                "doctor at its namespace with --speaker-namespace",
            )
        ]
    missing = [n for n in f.targeted if n not in f.ready_speaker_nodes]
    out = []
    if missing:
        out.append(
            Finding(
                READY,
                Severity.ERROR,
                f"{len(missing)} node(s) without a ready speaker: {names(missing)}; they "
                "announce nothing",
                evidence(_node_line(f, n) for n in missing),
                f"kubectl -n {ns} get pods -l {f.snap.selector} -o wide; kubectl -n {ns} "
                f"describe pod POD (its events say why); kubectl -n {ns} logs POD -c speaker",
            )
        )
    untargeted = sorted(set(f.nodes) - set(f.targeted))
    if untargeted and f.daemonset is not None:
        out.append(
            Finding(
                READY,
                Severity.INFO,
                f"no speaker runs on {names(untargeted)} (the DaemonSet's node selector, "
                "affinity or their taints): those nodes never announce",
                evidence(f"{n}: not selected or a taint not tolerated" for n in untargeted),
                "intended for control-plane nodes; otherwise set speaker.nodeSelector / "
                "speaker.tolerations (speaker.tolerateControlPlane) in the chart's values",
            )
        )
    return out


def check_status(f: Facts) -> list[Finding]:
    """What the speakers themselves report: unreachable, stale config, unrendered peers."""
    unreachable = [
        f"{s.node}: {s.error} ({s.source})"
        for s in f.snap.speakers
        if s.error is not None and s.node in f.ready_speaker_nodes
    ]
    stale, render = [], []
    for node, doc in sorted(f.speaker_docs.items()):
        config = doc.get("config") or {}
        if config.get("stale") or not config.get("loaded", True):
            problems = "; ".join(str(p) for p in config.get("problems") or [])[:300]
            stale.append(
                f"{node}: {'stale' if config.get('loaded') else 'none loaded'}: {problems}"
            )
        render += [f"{node}: {p}" for p in doc.get("renderProblems") or []]
    out = []
    if unreachable:
        out.append(
            Finding(
                STATUS,
                Severity.WARNING,
                f"{len(unreachable)} ready speaker(s) did not answer /status; checks that use it "
                "could not see those nodes",
                evidence(unreachable),
                "see the speaker's log (kubectl logs POD -c speaker); the API server must reach "
                "the pod's metrics port (the pod proxy)",
            )
        )
    if stale:
        out.append(
            Finding(
                STATUS,
                Severity.ERROR,
                "speakers run without the current config (refused or never loaded)",
                evidence(stale),
                "fix the config errors named; `kubectl exalb doctor` check 'config' lists them",
            )
        )
    if render:
        out.append(
            Finding(
                STATUS,
                Severity.ERROR,
                "peers the speakers could not render into ExaBGP's config (no session for them)",
                evidence(render),
                "each line names the BGPPeer and field ExaBGP cannot do (README: 'Refused loudly')",
            )
        )
    return out


def check_excluded(f: Facts) -> list[Finding]:
    if f.ignore_exclude_lb:
        return []
    nodes = f.targeted or sorted(f.nodes)
    labelled = [n for n in nodes if EXCLUDE_LB_LABEL in labels(f.nodes.get(n, {}))]
    if not labelled:
        return []
    every = len(labelled) == len(nodes)
    return [
        Finding(
            EXCLUDED,
            Severity.ERROR if every else Severity.INFO,
            (
                f"every node ({len(nodes)}) carries {EXCLUDE_LB_LABEL}: no Service is "
                "announced anywhere"
                if every
                else f"{names(labelled)} carry {EXCLUDE_LB_LABEL}: they never announce"
            ),
            evidence(f"Node {n}: label {EXCLUDE_LB_LABEL}" for n in labelled),
            (
                f"kubectl label node NODE {EXCLUDE_LB_LABEL}- (kubeadm puts it on control-plane "
                "nodes; single-node clusters lose every announcement), or let the speakers "
                "ignore it: helm upgrade ... --set speaker.ignoreExcludeLB=true"
            ),
        )
    ]
