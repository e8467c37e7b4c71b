"""L2Advertisement interfaces that do not exist (or are excluded) on the nodes that should
answer for their pools."""

from __future__ import annotations

from exalb.config.model import L2Advertisement
from exalbctl.doctor.facts import Facts
from exalbctl.doctor.findings import Finding, Severity, evidence
from exalbctl.doctor.snapshot import labels

CHECK = "l2-interfaces"


def node_interfaces(f: Facts, node: str) -> set[str] | None:
    """The links the node's garp sidecar answers on, or None when not reported."""
    doc = f.speaker_docs.get(node)
    sidecar = ((doc or {}).get("l2") or {}).get("sidecar") or {}
    found = sidecar.get("interfaces")
    return None if found is None else {str(i) for i in found}


def _answering_nodes(f: Facts, ad: L2Advertisement) -> list[str]:
    """Nodes that should answer for ``ad``: selected, with a speaker, allowed to announce."""
    return [
        n
        for n in f.targeted
        if ad.selects_node(labels(f.nodes.get(n, {}))) and f.why_not_announcing(n) is None
    ]


def _node_lines(
    f: Facts, pool: str, ads: tuple[L2Advertisement, ...], node: str
) -> tuple[list[str], list[str]]:
    """(interfaces an advertisement names that the node lacks, the pool answered on none)."""
    have = node_interfaces(f, node)
    mine = [ad for ad in ads if node in _answering_nodes(f, ad)]
    if have is None or not mine or any(not ad.interfaces for ad in mine):
        return [], []  # not reported, or an advertisement without interfaces: every link
    has = ", ".join(sorted(have)) or "none"
    missing = [
        f"L2Advertisement {ad.name} on {node}: lacks {lacking} ({has})"
        for ad in mine
        if (lacking := ", ".join(sorted(set(ad.interfaces) - have)))
    ]
    wanted = set().union(*(set(ad.interfaces) for ad in mine))
    if wanted & have:
        return missing, []
    return missing, [f"pool {pool} on {node}: wants {', '.join(sorted(wanted))}, has {has}"]


def check_interfaces(f: Facts) -> list[Finding]:
    if f.config is None:
        return []
    missing: list[str] = []  # an advertisement names interfaces a node lacks
    deaf: list[str] = []  # a pool a node should answer for, on no interface it has
    for pool in f.config.pools:
        ads = f.config.l2_advertisements_for(pool.name)
        for node in sorted({n for ad in ads for n in _answering_nodes(f, ad)}):
            lacks, none = _node_lines(f, pool.name, ads, node)
            missing += lacks
            deaf += none
    out = []
    if deaf:
        out.append(
            Finding(
                CHECK,
                Severity.ERROR,
                "nodes that should answer ARP/NDP for a pool have none of its L2Advertisements' "
                "interfaces: when elected they answer nothing",
                evidence(deaf),
                "name interfaces every selected node has in L2Advertisement spec.interfaces (or "
                "none: every interface), or narrow spec.nodeSelectors to the nodes that have them; "
                "an excluded interface counts as absent (chart value garp.excludeInterfaces)",
            )
        )
    elif missing:
        out.append(
            Finding(
                CHECK,
                Severity.WARNING,
                "L2Advertisements name interfaces some selected nodes lack",
                evidence(missing),
                "name only interfaces the selected nodes have, or narrow spec.nodeSelectors",
            )
        )
    return out
