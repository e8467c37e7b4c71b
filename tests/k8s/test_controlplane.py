"""The control-plane harness itself: versions, restart with etcd data kept, TokenRequest
and RBAC, cleanup."""

from __future__ import annotations

import os
import re
import ssl
import urllib.request

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane, ControlPlaneError
from tests.k8s.conftest import REPO, resource_path

pytestmark = pytest.mark.k8s


def _pinned_kubernetes_version() -> str:
    go_mod = (REPO / "tests" / "controlplane" / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE)
    assert match, "k8s.io/kubernetes not pinned in tests/controlplane/go.mod"
    return match.group(1)


def test_version_is_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.version()
    expected = _pinned_kubernetes_version()
    assert version["gitVersion"] == expected
    major, minor, _ = expected.removeprefix("v").split(".")
    assert (version["major"], version["minor"]) == (major, minor)


def test_listens_on_loopback_with_verified_tls(control_plane: ControlPlane) -> None:
    assert control_plane.server.startswith("https://127.0.0.1:")
    # Anonymous, CA-verified TLS: /livez is public in the bootstrap RBAC policy.
    ctx = ssl.create_default_context(cafile=str(control_plane.authority.ca.cert))
    with urllib.request.urlopen(control_plane.server + "/livez", context=ctx, timeout=10) as r:
        assert r.status == 200


def test_admin_is_system_masters(control_plane: ControlPlane) -> None:
    review = control_plane.api(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    ).body
    user = review["status"]["userInfo"]
    assert user["username"] == "admin"
    assert "system:masters" in user["groups"]


def test_kubectl_uses_the_admin_kubeconfig(control_plane: ControlPlane, tools: Tools) -> None:
    out = control_plane.run_tool([str(tools.kubectl), "get", "--raw", "/readyz"]).stdout
    assert out.strip() == "ok"


def test_restart_apiserver_keeps_etcd_data(
    control_plane: ControlPlane, tools: Tools, namespace: str
) -> None:
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "survivor"},
        "spec": {"addresses": ["203.0.113.0/28"]},
    }
    assert control_plane.api("POST", resource_path("IPAddressPool", namespace), pool).ok
    port = control_plane.apiserver_port

    control_plane.restart_apiserver()

    assert control_plane.apiserver_port == port
    got = control_plane.api("GET", resource_path("IPAddressPool", namespace, "survivor"))
    assert got.ok, got.message
    assert got.body["spec"]["addresses"] == ["203.0.113.0/28"]
    # The same kubeconfig still works for the real tools, and helm still sees its release.
    listed = control_plane.run_tool([str(tools.helm), "list", "-A", "-q"]).stdout.split()
    assert "exalb" in listed


def test_token_without_rbac_is_forbidden_then_allowed_by_a_role(
    control_plane: ControlPlane, tools: Tools, namespace: str
) -> None:
    control_plane.create_service_account(namespace, "reader")
    token = control_plane.create_token(namespace, "reader")
    username = f"system:serviceaccount:{namespace}:reader"

    # Authenticated as the ServiceAccount...
    review = control_plane.api(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        token=token,
    )
    assert review.body["status"]["userInfo"]["username"] == username
    # ...but not authorised for anything RBAC did not grant.
    denied = control_plane.api("GET", resource_path("IPAddressPool", namespace), token=token)
    assert denied.status == 403
    assert username in denied.message

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pool-reader"},
        "rules": [
            {"apiGroups": ["metallb.io"], "resources": ["ipaddresspools"], "verbs": ["get", "list"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "pool-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pool-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert control_plane.api("POST", f"{rbac}/roles", role).ok
    assert control_plane.api("POST", f"{rbac}/rolebindings", binding).ok

    allowed = control_plane.api("GET", resource_path("IPAddressPool", namespace), token=token)
    assert allowed.status == 200, allowed.message
    # Exactly what was granted: still no writes, nothing in other groups.
    write = control_plane.api(
        "POST",
        resource_path("IPAddressPool", namespace),
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "x"}, "spec": {"addresses": ["203.0.113.0/28"]}},
        token=token,
    )  # fmt: skip
    assert write.status == 403
    assert (
        control_plane.api("GET", f"/api/v1/namespaces/{namespace}/pods", token=token).status == 403
    )

    # The token kubeconfig works for real clients with the same rights.
    kubeconfig = control_plane.write_token_kubeconfig(token, name=f"reader-{namespace}")
    ok = control_plane.run_tool(
        [str(tools.kubectl), "get", "ipaddresspools", "-n", namespace], kubeconfig=kubeconfig
    )
    assert ok.returncode == 0
    no = control_plane.run_tool(
        [str(tools.kubectl), "get", "secrets", "-n", namespace],
        kubeconfig=kubeconfig,
        check=False,
    )
    assert no.returncode != 0
    assert "forbidden" in no.stderr.lower()


def test_token_for_missing_service_account_fails(
    control_plane: ControlPlane, namespace: str
) -> None:
    with pytest.raises(RuntimeError, match="404"):
        control_plane.create_token(namespace, "does-not-exist")


def test_separate_instance_starts_and_cleans_up(control_plane: ControlPlane) -> None:
    """A second, short-lived instance: own ports, own files, nothing left afterwards."""
    assert control_plane.binaries is not None
    with ControlPlane(binaries=control_plane.binaries) as other:
        assert other.apiserver_port != control_plane.apiserver_port
        assert other.api("GET", "/readyz").status == 200
        assert other.startup_seconds < 60
        workdir = other.workdir
        pids = [p.popen.pid for p in (other._etcd, other._apiserver) if p and p.popen]
    assert not workdir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_failed_start_leaves_nothing_behind(control_plane: ControlPlane) -> None:
    """A start that cannot succeed stops etcd again and removes its files."""
    broken = ControlPlane(
        binaries=control_plane.binaries, extra_apiserver_args=("--no-such-flag=1",)
    )
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited"):
        broken.start()
    assert not broken.workdir.exists()
    assert broken._etcd is not None
    assert broken._etcd.popen is None  # stopped and reaped
