"""Fixtures for the Helm chart tests (charts/exalb).

Rendering and linting need only the ``helm`` binary; installing, RBAC checks and running
the programs under the chart's ServiceAccounts need the real kube-apiserver (marked
``k8s``). The chart tests get a control plane of their own, so their releases (and the
cluster-scoped ClusterRoles they create) never meet tests/k8s's release.

Missing binaries fail loudly (a skipped suite would look green); EXALB_SKIP_K8S=1 skips the
apiserver tests only (rendering needs nothing but helm).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.conftest import running_control_plane, tools_or_fail

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "exalb"
HERE = Path(__file__).resolve().parent
VALUES = HERE / "values"
GOLDEN = HERE / "golden"
#: Set to 1 to rewrite tests/chart/golden/*.yaml from the current chart instead of comparing.
UPDATE_ENV = "EXALB_UPDATE_GOLDEN"
NAMESPACE = "exalb-system"


@pytest.fixture(scope="session")
def chart_tools() -> Tools:
    return tools_or_fail()


@pytest.fixture(scope="session")
def chart_cp() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the chart tests (a session of their own)."""
    with running_control_plane("chart tests") as cp:
        yield cp


def helm(tools: Tools, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm without a cluster (template/lint); helm's own dirs are kept out of $HOME."""
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env.setdefault(var, "/nonexistent/helm")
    proc = subprocess.run(
        [str(tools.helm), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def render_text(tools: Tools, *args: str, release: str = "exalb") -> str:
    return helm(tools, "template", release, str(CHART), "--namespace", NAMESPACE, *args).stdout


def render(tools: Tools, *args: str, release: str = "exalb") -> list[dict[str, Any]]:
    """``helm template`` → the list of rendered objects."""
    return [d for d in yaml.safe_load_all(render_text(tools, *args, release=release)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} matches"
    return matches[0]


def containers(pod_owner: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_owner["spec"]["template"]["spec"]["containers"]}


# --------------------------------------------------------------------------- releases


def install(
    cp: ControlPlane, tools: Tools, release: str, namespace: str, *args: str, upgrade: bool = False
) -> subprocess.CompletedProcess[str]:
    """``helm install`` (or ``upgrade``) into the test apiserver.

    No ``--wait``: there is no kubelet, so pods never run and a Deployment never becomes
    ready; the tests check the objects instead.
    """
    verb = ["upgrade"] if upgrade else ["install", "--create-namespace"]
    return cp.run_tool(
        [str(tools.helm), *verb, release, str(CHART), "--namespace", namespace, *args]
    )


def uninstall(cp: ControlPlane, tools: Tools, release: str, namespace: str) -> None:
    cp.run_tool([str(tools.helm), "uninstall", release, "--namespace", namespace], check=False)


def manifest(cp: ControlPlane, tools: Tools, release: str, namespace: str) -> list[dict[str, Any]]:
    """The objects helm installed for ``release`` (``helm get manifest``)."""
    out = cp.run_tool([str(tools.helm), "get", "manifest", release, "-n", namespace]).stdout
    return [d for d in yaml.safe_load_all(out) if d]
