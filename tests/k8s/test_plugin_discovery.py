"""``kubectl exalb`` finding speakers in a cluster: pod discovery and the pod proxy, against
a real kube-apiserver.

There are no kubelets here, so no pod really runs and the proxy cannot reach one. What is
tested is everything up to that point with the real server: the label selector and the
namespace, the node and port taken from each pod, the proxy path the server accepts as a
route (its refusal names the pod and port), a pod not yet running, an empty namespace, and a
user without RBAC: each becomes an "unreachable, because ..." line, never a crash.

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
    port: int = 7472,
    running: bool = True,
) -> dict[str, Any]:
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
                        "ports": [{"name": "metrics", "containerPort": port}],
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


def test_discovery_and_pod_proxy_errors(control_plane: ControlPlane, speaker_ns: str) -> None:
    cp, ns = control_plane, speaker_ns
    make_pod(cp, ns, "exalb-speaker-aaaaa", "node-a")
    make_pod(cp, ns, "exalb-speaker-bbbbb", "node-b", port=9472)
    make_pod(cp, ns, "exalb-speaker-ccccc", "node-c", running=False)
    make_pod(cp, ns, "exalb-controller-x", "node-a", labels={"app.kubernetes.io/part-of": "exalb"})

    source = LiveSource(kubeconfig=str(cp.kubeconfig), speaker_namespace=ns, timeout=3)
    try:
        targets = source.targets()
        assert [(t.name, t.pod, t.port, t.error) for t in targets] == [
            ("node-a", f"{ns}/exalb-speaker-aaaaa", 7472, None),
            ("node-b", f"{ns}/exalb-speaker-bbbbb", 9472, None),
            (
                "node-c",
                f"{ns}/exalb-speaker-ccccc",
                7472,
                f"pod {ns}/exalb-speaker-ccccc is Pending",
            ),
        ]
        # the proxy path is one the server routes: its answer is about that pod and port,
        # a refusal to dial loopback, not a 404 for an unknown path
        path = pod_proxy_path(ns, "exalb-speaker-aaaaa", 7472)
        resp = cp.api("GET", path)
        print(f"\nGET {path} -> {resp.status} {resp.message}")
        assert resp.status not in (200, 404), resp.message
        statuses = source.speakers("app/web")
    finally:
        source.close()
    by_node = {s.name: s for s in statuses}
    assert set(by_node) == {"node-a", "node-b", "node-c"}
    assert not any(s.reachable for s in statuses)
    assert by_node["node-a"].source == f"pod {ns}/exalb-speaker-aaaaa:7472"
    assert by_node["node-a"].error and by_node["node-a"].error.startswith(f"{resp.status} ")
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
    for node, pod in (("node-a", "aaaaa:7472"), ("node-b", "bbbbb:9472")):
        assert f"speaker {node} (pod {ns}/exalb-speaker-{pod}): unreachable: " in text
    assert "unreachable: pod" in text and "is Pending" in text


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
