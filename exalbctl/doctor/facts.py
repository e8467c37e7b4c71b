"""What several checks need, derived once from a :class:`Snapshot` (pure).

Which nodes the speaker DaemonSet should run on (its node selector, required node affinity
and the taints its pods tolerate, the DaemonSet's own implicit tolerations included), which
of them have a ready speaker, which nodes may announce at all, the parsed config, and the
Services exalb serves (type LoadBalancer with exalb's ``loadBalancerClass``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from exalb.config.documents import parse_documents
from exalb.config.model import Config
from exalb.config.result import ParseResult
from exalb.views import EXCLUDE_LB_LABEL
from exalbctl.doctor.snapshot import (
    JSON,
    Snapshot,
    argv,
    condition_true,
    containers,
    flag,
    labels,
    meta,
    name,
    pod_spec,
    ref,
    spec,
    status,
)

#: Taints every DaemonSet pod tolerates (added by the DaemonSet controller), and the one a
#: host-network DaemonSet pod tolerates too.
DAEMONSET_TOLERATED = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/network-unavailable",
    }
)


def tolerated(taint: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    key, effect = taint.get("key"), taint.get("effect")
    if effect not in ("NoSchedule", "NoExecute") or key in DAEMONSET_TOLERATED:
        return True
    for t in tolerations:
        if t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", key):
            return True
        if t.get("key") == key and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_matches(expr: Mapping[str, Any], node_labels: Mapping[str, str]) -> bool:
    key, op = str(expr.get("key")), expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return node_labels.get(key) in values
    if op == "NotIn":
        return node_labels.get(key) not in values
    if op == "Exists":
        return key in node_labels
    if op == "DoesNotExist":
        return key not in node_labels
    return True  # Gt/Lt: rare for DaemonSets; never exclude a node on a guess


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    node_labels = labels(node)
    fields = {"metadata.name": name(node)}
    exprs = all(_expression_matches(e, node_labels) for e in term.get("matchExpressions") or [])
    by_field = all(_expression_matches(e, fields) for e in term.get("matchFields") or [])
    return exprs and by_field


def pod_node(pod: Mapping[str, Any]) -> str | None:
    """The node a pod runs on, or, for a DaemonSet pod not scheduled yet (Pending), the node
    it is meant for: the DaemonSet controller pins it by node affinity on metadata.name."""
    if spec(pod).get("nodeName"):
        return str(spec(pod)["nodeName"])
    required = (((spec(pod).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {})  # fmt: skip
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and values:
                return str(values[0])
    return None


def runs_on(workload: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether a DaemonSet wants a pod on ``node`` (selector, required affinity, taints)."""
    pod = pod_spec(workload)
    node_labels = labels(node)
    selector = pod.get("nodeSelector") or {}
    if any(node_labels.get(str(k)) != str(v) for k, v in selector.items()):
        return False
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(t, node) for t in terms):
        return False
    tolerations = pod.get("tolerations") or []
    return all(tolerated(t, tolerations) for t in spec(node).get("taints") or [])


class Facts:
    """Derived views of one snapshot; each computed on first use."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    # -- config ---------------------------------------------------------------------------
    @cached_property
    def parsed(self) -> ParseResult:
        docs: list[tuple[str, Any]] = [(ref(o), o) for o in self.snap.config_objects]
        if not docs and self.snap.config_map is not None:
            docs = [(ref(self.snap.config_map), self.snap.config_map)]
        return parse_documents(docs, namespace=self.snap.namespace)

    @property
    def config(self) -> Config | None:
        return self.parsed.config

    @property
    def l2_used(self) -> bool:
        return bool(self.config and self.config.l2_advertisements)

    # -- the speaker DaemonSet ------------------------------------------------------------
    @cached_property
    def daemonset(self) -> JSON | None:
        """exalb's speaker DaemonSet (the one owning the speaker pods, else the first)."""
        owners = {
            o.get("name")
            for p in self.snap.speaker_pods
            for o in meta(p).get("ownerReferences") or []
            if o.get("kind") == "DaemonSet"
        }
        for ds in self.snap.speaker_daemonsets:
            if name(ds) in owners:
                return ds
        return self.snap.speaker_daemonsets[0] if self.snap.speaker_daemonsets else None

    def _speaker_flag(self, name_: str) -> str | None:
        source = self.daemonset or (self.snap.speaker_pods[0] if self.snap.speaker_pods else {})
        for c in containers(source):
            if c.get("name") == "speaker":
                return flag(argv(c), name_)
        return None

    @property
    def lb_class(self) -> str | None:
        return self._speaker_flag("--lb-class") or None

    @property
    def ignore_exclude_lb(self) -> bool:
        return self._speaker_flag("--ignore-exclude-lb") is not None

    @property
    def garp_enabled(self) -> bool:
        source = self.daemonset or (self.snap.speaker_pods[0] if self.snap.speaker_pods else {})
        return any(c.get("name") == "garp" for c in containers(source))

    # -- nodes ----------------------------------------------------------------------------
    @cached_property
    def nodes(self) -> dict[str, JSON]:
        return {name(n): n for n in self.snap.nodes}

    @cached_property
    def targeted(self) -> list[str]:
        """Nodes the speaker DaemonSet should run a pod on (all nodes if it is unknown)."""
        ds = self.daemonset
        return sorted(n for n, node in self.nodes.items() if ds is None or runs_on(ds, node))

    @cached_property
    def speaker_pods_by_node(self) -> dict[str, list[JSON]]:
        out: dict[str, list[JSON]] = {}
        for p in self.snap.speaker_pods:
            node = pod_node(p)
            if node and not meta(p).get("deletionTimestamp"):
                out.setdefault(str(node), []).append(p)
        return out

    @cached_property
    def ready_speaker_nodes(self) -> set[str]:
        return {
            node
            for node, pods in self.speaker_pods_by_node.items()
            if any(condition_true(p, "Ready") for p in pods)
        }

    def excluded(self, node: str) -> bool:
        """Labelled out of load balancing (and the speaker does not ignore the label)."""
        return not self.ignore_exclude_lb and EXCLUDE_LB_LABEL in labels(self.nodes.get(node, {}))

    def network_unavailable(self, node: str) -> bool:
        return condition_true(self.nodes.get(node, {}), "NetworkUnavailable")

    def why_not_announcing(self, node: str) -> str | None:
        """Why a node can announce nothing, or None when it can."""
        if node not in self.ready_speaker_nodes:
            return "no ready speaker"
        if self.excluded(node):
            return f"label {EXCLUDE_LB_LABEL}"
        if self.network_unavailable(node):
            return "condition NetworkUnavailable"
        return None

    # -- speakers' /status ----------------------------------------------------------------
    @cached_property
    def speaker_docs(self) -> dict[str, Mapping[str, Any]]:
        return {s.node: s.doc for s in self.snap.speakers if s.doc is not None}

    # -- Services -------------------------------------------------------------------------
    @cached_property
    def our_services(self) -> list[JSON]:
        """LoadBalancer Services with exalb's class (none when exalb serves the default)."""
        want = self.lb_class
        return [
            s
            for s in self.snap.services
            if spec(s).get("type") == "LoadBalancer"
            and (spec(s).get("loadBalancerClass") or None) == want
        ]


def ingress_ips(svc: Mapping[str, Any]) -> list[str]:
    lb = status(svc).get("loadBalancer") or {}
    return [str(i["ip"]) for i in lb.get("ingress") or [] if isinstance(i, Mapping) and i.get("ip")]
