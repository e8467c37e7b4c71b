"""What every suite shares: the host-dial guard, and the real control plane.

Missing kube-apiserver/etcd binaries or helm/kubectl fail loudly with the command that
builds them: a skipped Kubernetes suite would look green while testing nothing. Set
EXALB_SKIP_K8S=1 to skip those suites on purpose.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from lab.binaries import BinariesNotFoundError, Tools, find_controlplane_binaries, find_tools
from lab.controlplane import ControlPlane
from lab.nsnet import forbid_host_dials

# No test process dials a lab (or any non-loopback) address from the default namespace: lab
# traffic starts inside the lab's namespaces, the host uses loopback relays only.
forbid_host_dials()


def _skip_if_requested() -> None:
    if os.environ.get("EXALB_SKIP_K8S") == "1":
        pytest.skip("EXALB_SKIP_K8S=1")


def tools_or_fail() -> Tools:
    """helm and kubectl from the tools cache (tests/controlplane/install-tools.sh)."""
    _skip_if_requested()
    try:
        return find_tools()
    except BinariesNotFoundError as err:
        pytest.fail(str(err), pytrace=False)


@contextlib.contextmanager
def running_control_plane(purpose: str, **kwargs: Any) -> Iterator[ControlPlane]:
    """A started etcd + kube-apiserver, stopped (and its files removed) afterwards."""
    _skip_if_requested()
    try:
        binaries = find_controlplane_binaries()
    except BinariesNotFoundError as err:
        pytest.fail(f"{purpose} need the control plane binaries: {err}", pytrace=False)
    with ControlPlane(binaries=binaries, **kwargs) as cp:
        yield cp
