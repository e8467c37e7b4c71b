"""``kubectl exalb`` finding speakers in a cluster: pod discovery, the port-forward (and the
pod proxy for a speaker of an older version), against a real kube-apiserver.

There are no kubelets here, so no pod really runs and neither the port-forward nor the proxy
reaches one. What is tested is everything up to that point with the real server: the label
selector and the namespace, the node and port taken from each pod, the port-forward the
server authorizes (a user without ``get`` and ``create`` on ``pods/portforward`` is refused
with a 403 before anything is dialed), the proxy path the server accepts as a route, a pod
not yet running, an empty namespace, and a user without RBAC: each becomes an "unreachable,
because ..." line, never a crash. The port-forward through a real kubelet is tested by the
e2e cluster.

Pods are created with ``nodeName`` set (no scheduler) and their status patched to Running
with pod IP 127.0.0.1, which the API server refuses to proxy to before dialing anything, so
no packet leaves the test host's loopback.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exalbctl.main import main as exalbctl
from exalbctl.source import LiveSource
from exalbctl.speakers import DEFAULT_SELECTOR, pod_proxy_path
from lab.controlplane import ControlPlane
from lab.wait import wait_for

pytestmark = pytest.mark.k8s

SPEAKER_LABELS = dict(part.split("=") for part in DEFAULT_SELECTOR.split(","))


@pytest.fixture
def speaker_ns(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace for fake speaker pods; pods are deleted with grace 0 (no kubelet would
    ever confirm a graceful deletion) and the namespace afterwards."""
    name = f"t-plugin-{uuid.uuid4().hex[:6]}"
    control_plane.ensure_namespace(name)
    control_plane.create_service_account(name, "default")  # pods need one to be admitted
    try:
        yield name
    finally:
        control_plane.api("DELETE", f"/api/v1/namespaces/{name}/pods?gracePeriodSeconds=0")
        control_plane.api("DELETE", f"/api/v1/namespaces/{name}/serviceaccounts")
        control_plane.delete_namespace(name)


def make_pod(
    cp: ControlPlane,
    ns: str,
    name: str,
    node: str,
    *,
    labels: dict[str, str] | None = None,
    port: int = 7474,
    running: bool = True,
    legacy: bool = False,
) -> dict[str, Any]:
    """A speaker pod as the chart renders it (``status`` port), or of an older version
    (``legacy``: /status on the ``metrics`` port, read through the pod proxy)."""
    ports = [{"name": "metrics", "containerPort": port if legacy else 7472}]
    if not legacy:
        ports.append({"name": "status", "containerPort": port})
    resp = cp.api(
        "POST",
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": SPEAKER_LABELS if labels is None else labels},
            "spec": {
                "nodeName": node,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "speaker",
                        "image": "exalb:test",
                        "ports": ports,
                    }
                ],
            },
        },
    )
    assert resp.ok, resp.message
    if running:
        resp = cp.api(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            {
                "status": {
                    "phase": "Running",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                }
            },
            content_type="application/merge-patch+json",
        )
        assert resp.ok, resp.message
    return dict(resp.body)


def test_discovery_port_forward_and_pod_proxy_errors(
    control_plane: ControlPlane, speaker_ns: str
) -> None:
    cp, ns = control_plane, speaker_ns
    make_pod(cp, ns, "exalb-speaker-aaaaa", "node-a")
    make_pod(cp, ns, "exalb-speaker-bbbbb", "node-b", port=9474)
    make_pod(cp, ns, "exalb-speaker-ccccc", "node-c", running=False)
    make_pod(cp, ns, "exalb-speaker-ddddd", "node-d", port=7472, legacy=True)
    make_pod(cp, ns, "exalb-controller-x", "node-a", labels={"app.kubernetes.io/part-of": "exalb"})

    source = LiveSource(kubeconfig=str(cp.kubeconfig), speaker_namespace=ns, timeout=3)
    try:
        targets = source.targets()
        assert [(t.name, t.pod, t.port, t.error, t.proxy) for t in targets] == [
            ("node-a", f"{ns}/exalb-speaker-aaaaa", 7474, None, False),
            ("node-b", f"{ns}/exalb-speaker-bbbbb", 9474, None, False),
            ("node-c", f"{ns}/exalb-speaker-ccccc", 7474,
             f"pod {ns}/exalb-speaker-ccccc is Pending", False),
            ("node-d", f"{ns}/exalb-speaker-ddddd", 7472, None, True),
        ]  # fmt: skip
        # the proxy path is one the server routes: its answer is about that pod and port,
        # a refusal to dial loopback, not a 404 for an unknown path
        path = pod_proxy_path(ns, "exalb-speaker-ddddd", 7472)
        resp = cp.api("GET", path)
        print(f"\nGET {path} -> {resp.status} {resp.message}")
        assert resp.status not in (200, 404), resp.message
        statuses = source.speakers("app/web")
    finally:
        source.close()
    by_node = {s.name: s for s in statuses}
    print("\n".join(f"{s.name}: {s.source}: {s.error}" for s in statuses))
    assert set(by_node) == {"node-a", "node-b", "node-c", "node-d"}
    assert not any(s.reachable for s in statuses)
    assert by_node["node-a"].source == f"pod {ns}/exalb-speaker-aaaaa:7474"
    assert by_node["node-a"].error  # the port-forward found no kubelet for node-a
    assert by_node["node-d"].source == f"pod {ns}/exalb-speaker-ddddd:7472 (pod proxy)"
    assert by_node["node-d"].error and by_node["node-d"].error.startswith(f"{resp.status} ")
    assert by_node["node-c"].error == f"pod {ns}/exalb-speaker-ccccc is Pending"

    # the CLI: every speaker listed as unreachable with the reason, exit 1, no traceback
    out = io.StringIO()
    code = exalbctl(
        ["peers", "--kubeconfig", str(cp.kubeconfig), "--speaker-namespace", ns, "--timeout", "3"],
        out,
    )
    text = out.getvalue()
    print(text)
    assert code == 1
    for node, pod in (("node-a", "aaaaa:7474"), ("node-b", "bbbbb:9474")):
        assert f"speaker {node} (pod {ns}/exalb-speaker-{pod}): unreachable: " in text
    assert "unreachable: pod" in text and "is Pending" in text


def test_port_forward_needs_its_own_permission(
    control_plane: ControlPlane, speaker_ns: str
) -> None:
    """Listing the speaker pods is not enough to read them: the API server refuses the
    port-forward (403) to a user without ``get`` and ``create`` on ``pods/portforward``."""
    cp, ns = control_plane, speaker_ns
    make_pod(cp, ns, "exalb-speaker-aaaaa", "node-a")
    cp.create_service_account(ns, "lister")
    for kind, body in (
        ("roles", {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
        ("rolebindings", {
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "pod-lister"},
            "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": ns}],
        }),
    ):  # fmt: skip
        resp = cp.api(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{kind}",
            {"metadata": {"name": "pod-lister"}, **body},
        )
        assert resp.ok, resp.message
    kubeconfig = cp.write_token_kubeconfig(cp.create_token(ns, "lister"), f"lister-{ns}")
    source = LiveSource(kubeconfig=str(kubeconfig), speaker_namespace=ns, timeout=5)
    try:
        (status,) = wait_for(
            "RBAC in force",
            lambda: (s := source.speakers()) and "403" in str(s[0].error) and s,
            10,
            0.2,
        )
    finally:
        source.close()
    print(f"\n{status.name}: {status.error}")
    assert status.error is not None and status.error.startswith("403 ")
    assert "pods/portforward" in status.error


def test_discovery_finds_nothing_or_is_forbidden(
    control_plane: ControlPlane, speaker_ns: str
) -> None:
    cp, ns = control_plane, speaker_ns
    out = io.StringIO()
    code = exalbctl(["routes", "--kubeconfig", str(cp.kubeconfig), "--speaker-namespace", ns], out)
    assert code == 1
    assert "unreachable: no speaker pods found; set --speaker-namespace" in out.getvalue()

    # a user who may not list pods there: the RBAC error is the answer
    cp.create_service_account(ns, "viewer")
    kubeconfig = cp.write_token_kubeconfig(cp.create_token(ns, "viewer"), f"viewer-{ns}")
    out = io.StringIO()
    code = exalbctl(
        ["status", "-A", "--kubeconfig", str(kubeconfig), "--speaker-namespace", ns], out
    )
    text = out.getvalue()
    print(text)
    assert code == 1
    assert "cluster API not read (403 Forbidden" in text
    assert "unreachable: cannot list speaker pods: 403 Forbidden" in text
