"""One real cluster (containerlab/k8s-bgp: control plane, n1..n3 with containerd + kubelet +
kube-proxy, FRR r1, client c) for the whole e2e session, torn down at its end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.binaries import BinariesNotFoundError, find_controlplane_binaries, find_tools
from lab.runner import Lab, new_run_name

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "containerlab" / "k8s-bgp" / "k8s-bgp.clab.yml"


def cluster_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, kubelet)"
    for tool in ("containerd", "runc", "ctr", "nsenter", "buildah", "mmdebstrap", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} missing (scripts/setup.sh installs it)"
    if not Path("/usr/lib/frr/bgpd").exists():
        return "Debian's frr missing"
    return None


@pytest.fixture(scope="session")
def cluster_lab() -> Iterator[Lab]:
    if os.environ.get("EXALB_SKIP_K8S") == "1":
        pytest.skip("EXALB_SKIP_K8S=1")
    reason = cluster_unavailable()
    if reason:
        pytest.fail(f"the e2e cluster {reason}", pytrace=False)
    try:
        bins = find_controlplane_binaries()
        find_tools()
    except BinariesNotFoundError as err:
        pytest.fail(str(err), pytrace=False)
    if not (bins.kube_apiserver.parent / "kubelet").exists():
        pytest.fail("kubelet not built: run tests/controlplane/build.sh", pytrace=False)
    with Lab.up(TOPOLOGY, run=new_run_name()) as lab:
        yield lab
