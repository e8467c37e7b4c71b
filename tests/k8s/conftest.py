"""Fixtures for tests against a real kube-apiserver + etcd (see lab.controlplane).

One control plane per test session (start-up costs seconds, not minutes, but still more
than a test); every test gets its own namespace, emptied and deleted afterwards.

Missing binaries fail the session loudly with instructions: a skipped k8s suite would look
green while testing nothing. Set EXALB_SKIP_K8S=1 to skip on purpose.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.conftest import running_control_plane, tools_or_fail

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "exalb"
RELEASE = "exalb"
RELEASE_NAMESPACE = "exalb-system"

#: kind -> (apiVersion, plural) of every metallb.io kind the chart installs.
KINDS: dict[str, tuple[str, str]] = {
    "IPAddressPool": ("metallb.io/v1beta1", "ipaddresspools"),
    "L2Advertisement": ("metallb.io/v1beta1", "l2advertisements"),
    "BGPAdvertisement": ("metallb.io/v1beta1", "bgpadvertisements"),
    "Community": ("metallb.io/v1beta1", "communities"),
    "BGPPeer": ("metallb.io/v1beta2", "bgppeers"),
}


@pytest.fixture(scope="session")
def tools() -> Tools:
    return tools_or_fail()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver for the whole session, stopped at the end."""
    with running_control_plane("k8s tests") as cp:
        yield cp


def resource_path(kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a metallb.io collection (or one object) in ``namespace``."""
    api_version, plural = KINDS[kind]
    path = f"/apis/{api_version}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _wait_established(cp: ControlPlane, timeout: float = 30.0) -> None:
    """Poll until every CRD is Established and its resource is served (no fixed sleep)."""
    deadline = time.monotonic() + timeout
    pending = set(KINDS)
    while pending:
        for kind in sorted(pending):
            api_version, plural = KINDS[kind]
            crd = cp.api(
                "GET",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.metallb.io",
            )
            conditions = crd.body.get("status", {}).get("conditions", [])
            established = any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            )
            served = cp.api("GET", f"/apis/{api_version}/{plural}").status == 200
            if established and served:
                pending.discard(kind)
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"CRDs not established after {timeout}s: {sorted(pending)}")
        if pending:
            time.sleep(0.1)


@pytest.fixture(scope="session")
def helm_release(control_plane: ControlPlane, tools: Tools) -> str:
    """Install charts/exalb with the real helm, as a user would; returns helm's output."""
    proc = control_plane.run_tool(
        [
            str(tools.helm),
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--set",
            "controller.enabled=false",
            "--set",
            "speaker.enabled=false",
            "--wait",
            "--timeout",
            "60s",
        ]
    )
    _wait_established(control_plane)
    return proc.stdout


def _namespace_name(request: pytest.FixtureRequest) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(
    control_plane: ControlPlane, helm_release: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace for one test; its objects are deleted afterwards.

    Without kube-controller-manager nothing garbage-collects a deleted namespace's
    contents, so the fixture deletes the collections it knows about itself.
    """
    name = _namespace_name(request)
    control_plane.ensure_namespace(name)
    try:
        yield name
    finally:
        for kind in KINDS:
            control_plane.api("DELETE", resource_path(kind, name))
        for path in (
            f"/api/v1/namespaces/{name}/serviceaccounts",
            f"/api/v1/namespaces/{name}/secrets",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/roles",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/rolebindings",
        ):
            control_plane.api("DELETE", path)
        control_plane.delete_namespace(name)
