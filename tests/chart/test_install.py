"""``helm install`` / ``upgrade`` / ``uninstall`` of charts/exalb into a real kube-apiserver.

No kubelet runs, so pods never start; what is checked is that the API server accepts every
object (admission, CRD schemas for the config objects) and that upgrade and uninstall do
what a user expects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.chart.conftest import CHART, VALUES, install, uninstall

pytestmark = pytest.mark.k8s

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _get(cp: ControlPlane, path: str) -> dict[str, Any] | None:
    resp = cp.api("GET", path)
    if resp.status == 404:
        return None
    assert resp.ok, f"GET {path}: {resp.status} {resp.message}"
    return resp.body


def _helm_status(cp: ControlPlane, tools: Tools, release: str, ns: str) -> dict[str, Any]:
    out = cp.run_tool([str(tools.helm), "status", release, "-n", ns, "-o", "json"]).stdout
    status: dict[str, Any] = json.loads(out)
    return status


def test_install_upgrade_uninstall(chart_cp: ControlPlane, chart_tools: Tools) -> None:
    cp, tools, release, ns = chart_cp, chart_tools, "lifecycle", "lifecycle-system"
    full = "lifecycle-exalb"
    secret_ref = {"name": "tor-password", "namespace": ns}
    pools = [
        {"name": "public", "spec": {"addresses": ["198.51.100.0/28"]}},
        {"name": "private", "spec": {"addresses": ["10.10.0.0/24"], "autoAssign": False}},
    ]
    try:
        out = install(
            cp, tools, release, ns,
            "-f", str(VALUES / "full.yaml"),
            "--set", "prometheus.podMonitor.enabled=false",  # no monitoring.coreos.com CRDs
            "--set", "prometheus.serviceMonitor.enabled=false",
            "--set-json", f"config.peers[0].spec.passwordSecret={json.dumps(secret_ref)}",
        ).stdout  # fmt: skip
        assert "STATUS: deployed" in out
        assert "kubectl exalb status" in out  # NOTES
        status = _helm_status(cp, tools, release, ns)
        assert status["info"]["status"] == "deployed"
        assert status["version"] == 1

        dep = _get(cp, f"/apis/apps/v1/namespaces/{ns}/deployments/{full}-controller")
        ds = _get(cp, f"/apis/apps/v1/namespaces/{ns}/daemonsets/{full}-speaker")
        assert dep is not None and ds is not None
        assert dep["spec"]["replicas"] == 2
        pod = ds["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        assert [c["name"] for c in pod["containers"]] == ["speaker", "exabgp", "bfd", "garp"]
        for sa in ("controller", "speaker"):
            assert _get(cp, f"/api/v1/namespaces/{ns}/serviceaccounts/{full}-{sa}")
            assert _get(cp, f"{RBAC}/clusterroles/{full}-{sa}")
            assert _get(cp, f"{RBAC}/clusterrolebindings/{full}-{sa}")
            assert _get(cp, f"{RBAC}/namespaces/{ns}/roles/{full}-{sa}")
            assert _get(cp, f"{RBAC}/namespaces/{ns}/rolebindings/{full}-{sa}")
        for path in (
            "v1beta1/ipaddresspools/public",
            "v1beta2/bgppeers/tor",
            "v1beta1/bgpadvertisements/public",
            "v1beta1/l2advertisements/public",
            "v1beta1/communities/aliases",
        ):
            version, plural, name = path.split("/")
            obj = _get(cp, f"/apis/metallb.io/{version}/namespaces/{ns}/{plural}/{name}")
            assert obj is not None, path
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        pool = _get(cp, f"/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools/public")
        assert pool is not None
        assert pool["spec"]["addresses"] == ["198.51.100.0/28", "2001:db8:100::/124"]

        # -- upgrade: fewer replicas, no garp and no bfd, another pool, one config object dropped.
        upgraded = install(
            cp, tools, release, ns,
            "--reuse-values",
            "--set", "controller.replicas=1",
            "--set", "garp.enabled=false", "--set", "bfd.enabled=false",
            "--set-json", 'speaker.secretNames=["tor-password","tor-password-next"]',
            "--set-json", f"config.pools={json.dumps(pools)}",
            "--set-json", "config.communities=[]",
            upgrade=True,
        ).stdout  # fmt: skip
        assert "STATUS: deployed" in upgraded
        assert _helm_status(cp, tools, release, ns)["version"] == 2
        dep = _get(cp, f"/apis/apps/v1/namespaces/{ns}/deployments/{full}-controller")
        ds = _get(cp, f"/apis/apps/v1/namespaces/{ns}/daemonsets/{full}-speaker")
        assert dep is not None and ds is not None
        assert dep["spec"]["replicas"] == 1
        assert [c["name"] for c in ds["spec"]["template"]["spec"]["containers"]] == [
            "speaker",
            "exabgp",
        ]
        private = _get(cp, f"/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools/private")
        assert private is not None and private["spec"]["autoAssign"] is False
        public = _get(cp, f"/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools/public")
        assert public is not None and public["spec"]["addresses"] == ["198.51.100.0/28"]
        assert _get(cp, f"/apis/metallb.io/v1beta1/namespaces/{ns}/communities/aliases") is None
        role = _get(cp, f"{RBAC}/namespaces/{ns}/roles/{full}-speaker")
        assert role is not None
        (secrets,) = [r for r in role["rules"] if r["resources"] == ["secrets"]]
        assert secrets == {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["tor-password", "tor-password-next"],
            "verbs": ["get"],
        }
    finally:
        uninstall(cp, tools, release, ns)

    # -- uninstall removes everything the templates made (cluster-scoped too); CRDs stay.
    for path in (
        f"/apis/apps/v1/namespaces/{ns}/deployments/{full}-controller",
        f"/apis/apps/v1/namespaces/{ns}/daemonsets/{full}-speaker",
        f"{RBAC}/clusterroles/{full}-controller",
        f"{RBAC}/clusterrolebindings/{full}-speaker",
        f"{RBAC}/namespaces/{ns}/roles/{full}-speaker",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{full}-speaker",
        f"/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools/private",
    ):
        assert _get(cp, path) is None, f"{path} survived helm uninstall"
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ipaddresspools.metallb.io"
    assert _get(cp, crd) is not None


def test_install_with_invalid_config_fails_naming_the_field(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    """Values pass the chart schema (spec is MetalLB's), the CRD refuses the object."""
    cp, tools, release, ns = chart_cp, chart_tools, "badcfg", "badcfg-system"
    bad = [{"name": "p", "spec": {"addresses": ["198.51.100.0/33"]}}]
    try:
        proc = cp.run_tool(
            [
                str(tools.helm), "install", release, str(CHART),
                "--namespace", ns, "--create-namespace",
                "--set-json", f"config.pools={json.dumps(bad)}",
            ],
            check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        assert "spec.addresses[0]" in proc.stderr, proc.stderr
    finally:
        uninstall(cp, tools, release, ns)


def test_crds_only_install(chart_cp: ControlPlane, chart_tools: Tools) -> None:
    cp, tools, release, ns = chart_cp, chart_tools, "crdsonly", "crdsonly-system"
    try:
        install(cp, tools, release, ns, "-f", str(VALUES / "crds-only.yaml"), "--wait")
        listed = cp.run_tool(
            [str(tools.helm), "get", "manifest", release, "-n", ns], check=True
        ).stdout
        assert "kind:" not in listed  # nothing but the CRDs; `--wait` has nothing to wait for
    finally:
        uninstall(cp, tools, release, ns)
