"""Least privilege, asked of the real authorizer: ``kubectl auth can-i --as=<ServiceAccount>``.

Two views per ServiceAccount of an installed release:

* a matrix of single questions: everything its component needs is allowed, and the
  dangerous neighbours (update/delete Services, read Secrets, other namespaces, other
  leases/ConfigMaps) are not;
* the complete rule list (``can-i --list``) minus what every authenticated identity gets,
  compared with the expected table: nothing more was granted than the table says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.chart.conftest import install, uninstall

pytestmark = pytest.mark.k8s

NS = "lb-system"  # release namespace (default values)
PINNED_NS = "pinned-system"  # release with speaker.secretNames and a config.peers password
APPS = "apps"  # where users' Services live
CONTROLLER = f"system:serviceaccount:{NS}:exalb-controller"
SPEAKER = f"system:serviceaccount:{NS}:exalb-speaker"
PINNED_SPEAKER = f"system:serviceaccount:{PINNED_NS}:pinned-exalb-speaker"
METALLB = (
    "ipaddresspools",
    "bgppeers",
    "bgpadvertisements",
    "l2advertisements",
    "communities",
    "bfdprofiles",
)


@pytest.fixture(scope="module")
def releases(chart_cp: ControlPlane, chart_tools: Tools) -> Iterator[None]:
    chart_cp.ensure_namespace(APPS)
    try:
        install(chart_cp, chart_tools, "exalb", NS)
        install(
            chart_cp, chart_tools, "pinned", PINNED_NS,
            "--set-json", 'speaker.secretNames=["tor-password"]',
            "--set-json", 'config.peers=[{"name": "edge", "spec": {"myASN": 64512, '
            '"peerASN": 64500, "peerAddress": "198.18.0.254", '
            '"passwordSecret": {"name": "edge-password", "namespace": "pinned-system"}}}]',
            "--set", "controller.enabled=false",
            # a second exalb must serve other Services (the chart refuses a second speaker
            # for the same loadBalancerClass)
            "--set", "loadBalancerClass=example.com/pinned",
        )  # fmt: skip
        yield
    finally:
        uninstall(chart_cp, chart_tools, "exalb", NS)
        uninstall(chart_cp, chart_tools, "pinned", PINNED_NS)


def can_i(cp: ControlPlane, tools: Tools, who: str, question: str) -> bool:
    """``question``: "<verb> <resource>[/<name>] [-n <ns> | -A] [--subresource=x]"."""
    proc = cp.run_tool(
        [str(tools.kubectl), "auth", "can-i", *question.split(), f"--as={who}"], check=False
    )
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {question} as {who}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def _metallb(verb: str, ns: str) -> list[str]:
    return [f"{verb} {kind}.metallb.io -n {ns}" for kind in METALLB]


#: (who, question, expected answer)
MATRIX: list[tuple[str, str, bool]] = [
    # -- controller: what it needs
    *[(CONTROLLER, q, True) for q in (
        "list services -A",
        "watch services -A",
        "patch services -n apps --subresource=status",
        "create events -n apps",
        "list namespaces",
        "watch namespaces",
        *_metallb("list", NS),
        *_metallb("watch", NS),
        f"patch ipaddresspools.metallb.io -n {NS} --subresource=status",
        f"get configmaps/config -n {NS}",
        f"list configmaps -n {NS}",
        f"watch configmaps -n {NS}",
        f"create leases.coordination.k8s.io -n {NS}",
        f"get leases.coordination.k8s.io/exalb-controller -n {NS}",
        f"update leases.coordination.k8s.io/exalb-controller -n {NS}",
    )],
    # -- controller: what it must not do
    *[(CONTROLLER, q, False) for q in (
        f"get secrets -n {NS}",
        f"list secrets -n {NS}",
        "get secrets -n apps",
        "list secrets -A",
        "update services -n apps",
        "patch services -n apps",  # spec: never; status and the annotation through status
        "delete services -n apps",
        "create services -n apps",
        "update services -n apps --subresource=status",
        "delete events -n apps",
        "list pods -A",
        "list nodes",
        "list endpointslices.discovery.k8s.io -A",
        f"update leases.coordination.k8s.io/kube-scheduler -n {NS}",
        "get leases.coordination.k8s.io/exalb-controller -n kube-system",
        f"delete leases.coordination.k8s.io/exalb-controller -n {NS}",
        "list ipaddresspools.metallb.io -n apps",
        f"create ipaddresspools.metallb.io -n {NS}",
        f"patch ipaddresspools.metallb.io -n {NS}",
        f"delete bgppeers.metallb.io -n {NS}",
        f"patch bgppeers.metallb.io -n {NS} --subresource=status",
        f"update configmaps/config -n {NS}",
        "list configmaps -n apps",
        "create clusterrolebindings.rbac.authorization.k8s.io",
        "impersonate serviceaccounts -A",
    )],
    # -- speaker: what it needs
    *[(SPEAKER, q, True) for q in (
        "list services -A",
        "watch services -A",
        "list endpointslices.discovery.k8s.io -A",
        "watch endpointslices.discovery.k8s.io -A",
        "list nodes",
        "watch nodes",
        "create events -n apps",
        *_metallb("list", NS),
        *_metallb("watch", NS),
        f"get configmaps/config -n {NS}",
        f"list configmaps/config -n {NS}",
        f"watch configmaps/config -n {NS}",
    )],
    # -- speaker: what it must not do
    *[(SPEAKER, q, False) for q in (
        "update services -n apps",
        "patch services -n apps",
        "delete services -n apps",
        "patch services -n apps --subresource=status",
        "update services -n apps --subresource=status",
        f"list secrets -n {NS}",
        f"watch secrets -n {NS}",
        # default: no BGP password configured, so no Secret at all (not the garp key, not
        # Helm's release Secrets)
        f"get secrets/tor-password -n {NS}",
        f"get secrets/any-name -n {NS}",
        f"get secrets/exalb-garp-key -n {NS}",
        f"get secrets/sh.helm.release.v1.exalb.v1 -n {NS}",
        "get secrets/tor-password -n apps",
        "get secrets/tor-password -n kube-system",
        f"list configmaps -n {NS}",
        f"get configmaps/other -n {NS}",
        f"create leases.coordination.k8s.io -n {NS}",
        f"patch ipaddresspools.metallb.io -n {NS} --subresource=status",
        f"create ipaddresspools.metallb.io -n {NS}",
        "list ipaddresspools.metallb.io -n apps",
        "update nodes",
        "patch nodes --subresource=status",
        "list pods -A",
        "create pods -n apps",
    )],
    # -- speaker with speaker.secretNames and config.peers: exactly those Secrets
    (PINNED_SPEAKER, f"get secrets/tor-password -n {PINNED_NS}", True),
    (PINNED_SPEAKER, f"get secrets/edge-password -n {PINNED_NS}", True),
    (PINNED_SPEAKER, f"get secrets/other -n {PINNED_NS}", False),
    (PINNED_SPEAKER, f"get secrets/pinned-exalb-garp-key -n {PINNED_NS}", False),
    (PINNED_SPEAKER, f"get secrets -n {PINNED_NS}", False),
    (PINNED_SPEAKER, f"get secrets/tor-password -n {NS}", False),
    (PINNED_SPEAKER, f"list bgppeers.metallb.io -n {PINNED_NS}", True),
    (PINNED_SPEAKER, f"list bgppeers.metallb.io -n {NS}", False),
]  # fmt: skip


def test_permission_matrix(releases: None, chart_cp: ControlPlane, chart_tools: Tools) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: can_i(chart_cp, chart_tools, c[0], c[1]), MATRIX))
    wrong = [
        f"{who.rsplit(':', 1)[1]} ({who.split(':')[2]}): can-i {q} -> "
        f"{'yes' if got else 'no'}, want {'yes' if want else 'no'}"
        for (who, q, want), got in zip(MATRIX, answers, strict=True)
        if got != want
    ]
    assert not wrong, "\n".join(wrong)
    assert len(MATRIX) >= 80


# --------------------------------------------------------------------------- exact rules

_ROW = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")
Rule = tuple[str, tuple[str, ...], tuple[str, ...]]  # resource, resourceNames, verbs


def rules(cp: ControlPlane, tools: Tools, who: str, ns: str) -> set[Rule]:
    """Resource rows of ``kubectl auth can-i --list`` (non-resource URLs are left out)."""
    out = cp.run_tool(
        [str(tools.kubectl), "auth", "can-i", "--list", "-n", ns, f"--as={who}"]
    ).stdout
    found: set[Rule] = set()
    for line in out.splitlines()[1:]:
        m = _ROW.match(line)
        if m and m.group(1):
            found.add((m.group(1), tuple(m.group(3).split()), tuple(m.group(4).split())))
    return found


def _m(verbs: tuple[str, ...]) -> set[Rule]:
    return {(f"{kind}.metallb.io", (), verbs) for kind in METALLB}


#: What each account holds beyond any authenticated identity, per namespace asked about.
EXPECTED: dict[tuple[str, str], set[Rule]] = {
    (CONTROLLER, NS): {
        ("services", (), ("list", "watch")),
        ("services/status", (), ("patch",)),
        ("namespaces", (), ("list", "watch")),
        ("events", (), ("create",)),
        *_m(("list", "watch")),
        ("ipaddresspools.metallb.io/status", (), ("patch",)),
        ("configmaps", (), ("get", "list", "watch")),
        ("leases.coordination.k8s.io", (), ("create",)),
        ("leases.coordination.k8s.io", ("exalb-controller",), ("get", "update")),
    },
    (CONTROLLER, APPS): {
        ("services", (), ("list", "watch")),
        ("services/status", (), ("patch",)),
        ("namespaces", (), ("list", "watch")),
        ("events", (), ("create",)),
    },
    (SPEAKER, NS): {
        ("services", (), ("list", "watch")),
        ("nodes", (), ("list", "watch")),
        ("endpointslices.discovery.k8s.io", (), ("list", "watch")),
        ("events", (), ("create",)),
        *_m(("list", "watch")),
        ("configmaps", ("config",), ("get", "list", "watch")),
    },
    (SPEAKER, APPS): {
        ("services", (), ("list", "watch")),
        ("nodes", (), ("list", "watch")),
        ("endpointslices.discovery.k8s.io", (), ("list", "watch")),
        ("events", (), ("create",)),
    },
    (PINNED_SPEAKER, PINNED_NS): {
        ("services", (), ("list", "watch")),
        ("nodes", (), ("list", "watch")),
        ("endpointslices.discovery.k8s.io", (), ("list", "watch")),
        ("events", (), ("create",)),
        *_m(("list", "watch")),
        ("configmaps", ("config",), ("get", "list", "watch")),
        ("secrets", ("edge-password",), ("get",)),
        ("secrets", ("tor-password",), ("get",)),
    },
}


@pytest.mark.parametrize(
    ("who", "ns"), list(EXPECTED), ids=[f"{w.rsplit(':', 1)[1]}@{n}" for w, n in EXPECTED]
)
def test_nothing_more_than_the_table(
    releases: None, chart_cp: ControlPlane, chart_tools: Tools, who: str, ns: str
) -> None:
    nobody = f"system:serviceaccount:{ns}:no-such-account"
    baseline = rules(chart_cp, chart_tools, nobody, ns)
    assert baseline, "can-i --list printed no rules for an unbound account"
    granted = rules(chart_cp, chart_tools, who, ns) - baseline
    want = EXPECTED[(who, ns)]
    assert granted == want, f"extra: {sorted(granted - want)}\nmissing: {sorted(want - granted)}"
