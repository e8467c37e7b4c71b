"""Fixtures for lab tests: running topologies from ``containerlab/`` in namespaces.

Every lab test runs a topology file of the repository with the one runner
(``lab.runner.Lab``); helpers are imported as ``tests.lab.<module>``. Reuse::

    @pytest.mark.lab
    def test_something(lab_bgp_ecmp: Lab) -> None:
        lab_bgp_ecmp.start_exabgp_static("n1", ["203.0.113.10/32"])
        lab_bgp_ecmp.wait_route("r1", "203.0.113.10/32", nexthops=1)

    def test_other(lab_factory: Callable[[str], Lab]) -> None:
        lab = lab_factory("two-leaf")

Every lab gets a fresh, unique run name (namespaces ``exalb-<run>-<node>``), so tests and
parallel workers never collide; teardown runs after the test, pass or fail. The first lab
test of a session skips everything (with the reason) when root or namespaces are missing,
and sweeps runs left by crashed earlier sessions; a topology with routers or BGP nodes also
skips when FRR or ExaBGP is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lab import bird
from lab.controlplane import ControlPlane
from lab.runner import Lab, needs_bgp, new_run_name, unavailable_reason
from lab.teardown import sweep_stale
from lab.topology import topology_path
from lab.topology_load import load_topology
from tests.conftest import running_control_plane, tools_or_fail
from tests.lab.speaker_lab import install_crds


@pytest.fixture(scope="session")
def lab_available() -> None:
    """Skip when no lab can run here; remove stale runs of dead test sessions."""
    reason = unavailable_reason(bgp=False)
    if reason is not None:
        pytest.skip(reason)
    sweep_stale()


def skip_unless_runnable(name: str) -> None:
    """Skip when the topology needs FRR/ExaBGP and they are missing."""
    reason = unavailable_reason(bgp=needs_bgp(load_topology(topology_path(name))))
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def lab_factory(lab_available: None) -> Iterator[Callable[[str], Lab]]:
    """Start topologies by name; all are torn down when the test ends."""
    labs: list[Lab] = []

    def start(name: str) -> Lab:
        skip_unless_runnable(name)
        lab = Lab.start(topology_path(name), new_run_name())
        labs.append(lab)
        return lab

    yield start
    for lab in reversed(labs):
        lab.down()


@pytest.fixture
def lab_bgp_ecmp(lab_factory: Callable[[str], Lab]) -> Lab:
    """The ``bgp-ecmp`` topology running (r1, n1..n3, c); no ExaBGP started yet."""
    return lab_factory("bgp-ecmp")


@pytest.fixture(params=["frr", "bird"])
def lab_router(request: pytest.FixtureRequest, lab_factory: Callable[[str], Lab]) -> Lab:
    """bgp-ecmp's nodes behind r1 running FRR (``bgp-ecmp``) or BIRD 2 (``bgp-bird``): for
    router-agnostic tests, which read r1 through ``SpeakerLab.bgp_route``/``sessions``."""
    if request.param == "bird" and not bird.available():
        pytest.skip("BIRD 2 is not installed (Debian's bird2)")
    return lab_factory("bgp-ecmp" if request.param == "frr" else "bgp-bird")


@pytest.fixture
def lab_two_leaf(lab_factory: Callable[[str], Lab]) -> Lab:
    """The ``two-leaf`` topology running (leaf1, leaf2, n1, n2, c); no ExaBGP started yet."""
    return lab_factory("two-leaf")


@pytest.fixture(scope="session")
def speaker_control_plane() -> Iterator[ControlPlane]:
    """One apiserver for the session (shared by the BGP and L2 speaker labs), with the
    chart's CRDs installed by kubectl."""
    tools_or_fail()
    with running_control_plane("speaker lab tests") as cp:
        install_crds(cp)
        yield cp
