"""exalb-speaker's graceful drain and weighted ECMP end to end: real speakers reading a real
kube-apiserver, real ExaBGP, real FRR (``bgp-ecmp``: r1 AS 64500, nodes n1..n3 eBGP); the
oracle is r1's kernel FIB and FRR's BGP table (see ``speaker_lab.py``).

* SIGTERM: the node's path leaves r1's FIB at once (GRACEFUL_SHUTDOWN: FRR sets LOCAL_PREF 0
  on it and picks the other nodes), FRR still holds it for the drain time, then it is
  withdrawn and the speaker exits 0; the session is never touched.
* A cordoned node drains only when opted in (annotation ``exalb.io/drain-on-cordon``), and
  announces again when uncordoned.
* Weighted ECMP: r1's kernel weights follow the ready local endpoints per node.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exalb.config.objects import WEIGHTED_ECMP_ANNOTATION
from exalb.views import DRAIN_ON_CORDON_ANNOTATION
from lab.controlplane import ControlPlane
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.api_objects import advertisement, pool
from tests.lab.speaker_lab import (
    NODES,
    SpeakerLab,
    bgp_peer,
    nexthops,
    speaker_lab,
    timed_wait_nexthops,
)

pytestmark = [pytest.mark.lab, pytest.mark.k8s]
DRAIN = 2.0


@pytest.fixture
def sl(lab_bgp_ecmp: Lab, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    with speaker_lab(lab_bgp_ecmp, speaker_control_plane) as s:
        yield s


def config(sl: SpeakerLab, *, weighted: bool = False) -> None:
    ad = advertisement("ads", ["pool"])
    if weighted:
        ad["metadata"]["annotations"] = {WEIGHTED_ECMP_ANNOTATION: "true"}
    sl.cluster.apply_config(
        pool("pool", ["203.0.113.0/24"]), *(bgp_peer(n) for n in NODES.values()), ad
    )
    for n in NODES.values():
        sl.cluster.node(n)


def frr_paths(sl: SpeakerLab, prefix: str) -> dict[str, dict[str, Any]]:
    """r1's BGP paths for ``prefix`` by the announcing node."""
    by_ip = {n.ipv4: name for name, n in NODES.items()}
    entry = sl.bgp_route(prefix) or {}
    return {by_ip[p["nexthops"][0]["ip"]]: p for p in entry.get("paths", [])}


def gshut(path: dict[str, Any]) -> bool:
    return path.get("locPrf") == 0 and "graceful-shutdown" in str(path.get("community"))


def test_sigterm_and_an_opted_in_cordon_drain_before_withdrawing(sl: SpeakerLab) -> None:
    lab, c = sl.lab, sl.cluster
    prefix = "203.0.113.70/32"
    config(sl)
    c.service("web", ["203.0.113.70"])
    c.endpoints("web", ["n1", "n2", "n3"])
    sl.start(None, "--drain-seconds", str(DRAIN))
    sl.wait_ready()
    lab.wait_route("r1", prefix, nexthops=3, timeout=15)
    sessions = sl.sessions()

    # SIGTERM: out of the FIB at once, still at FRR (de-preferred) until the withdraw
    t = sl.signal_speaker("n1", signal.SIGTERM)
    moved = timed_wait_nexthops(lab, prefix, 2, t, timeout=5)
    assert gshut(frr_paths(sl, prefix)["n1"]), frr_paths(sl, prefix)["n1"]
    wait_for("n1's path withdrawn", lambda: "n1" not in frr_paths(sl, prefix), DRAIN + 10, 0.01)
    withdrawn = time.monotonic() - t
    assert sl.wait_speaker_exit("n1") == 0
    print(f"\nSIGTERM -> out of r1's FIB {moved * 1000:.0f} ms, withdrawn {withdrawn:.2f} s "
          f"(drain {DRAIN} s)")  # fmt: skip
    assert withdrawn >= DRAIN - 0.1, "withdrawn before the drain time was over"
    sl.start_speaker("n1", "--drain-seconds", str(DRAIN))
    lab.wait_route("r1", prefix, nexthops=3, timeout=15)

    # a cordon without the opt-in changes nothing (MetalLB's behaviour) ...
    c.patch_node("n3", {"spec": {"unschedulable": True}})
    time.sleep(1.0)
    assert nexthops(lab, prefix) == 3 and not gshut(frr_paths(sl, prefix)["n3"])
    # ... with it, the node drains, then withdraws, and comes back when uncordoned
    t = time.monotonic()
    opt_in = {"annotations": {DRAIN_ON_CORDON_ANNOTATION: "true"}}
    c.patch_node("n2", {"spec": {"unschedulable": True}, "metadata": opt_in})
    timed_wait_nexthops(lab, prefix, 2, t, timeout=5)
    assert gshut(frr_paths(sl, prefix)["n2"])
    drain = sl.status("n2")["speaker"]["drain"]
    assert drain["reason"] == "cordoned" and drain["phase"] == "gshut", drain
    wait_for("n2 withdrawn", lambda: "n2" not in frr_paths(sl, prefix), DRAIN + 10, 0.01)
    assert sl.status("n2")["speaker"]["drain"]["phase"] == "withdrawn"
    c.patch_node("n2", {"spec": {"unschedulable": None}})
    lab.wait_route("r1", prefix, nexthops=3, timeout=10)
    assert not gshut(frr_paths(sl, prefix)["n2"])
    c.patch_node("n3", {"spec": {"unschedulable": None}})
    assert sl.sessions() == sessions, "a drain touched a BGP session"


def test_weighted_ecmp_follows_ready_local_endpoints(sl: SpeakerLab) -> None:
    lab, c = sl.lab, sl.cluster
    prefix = "203.0.113.71/32"
    config(sl, weighted=True)
    c.service("loc", ["203.0.113.71"], policy="Local")
    c.endpoints("loc", ["n1", "n1", "n1", "n2"])
    sl.start()
    sl.wait_ready()
    ip = {name: n.ipv4 for name, n in NODES.items()}

    def weights() -> dict[str, int]:
        route = lab.route("r1", prefix)
        return route.weights if route else {}

    wait_for("weights 3:1", lambda: weights() == {ip["n1"]: 75, ip["n2"]: 25}, 15, 0.02)
    sessions = sl.sessions()
    c.endpoints("loc", ["n1", "n2", "n2", "n3"])
    wait_for("weights 1:2:1", lambda: weights() == {ip["n1"]: 25, ip["n2"]: 50, ip["n3"]: 25},
             10, 0.02)  # fmt: skip
    routes = [r for s in sl.status("n2")["services"] if s.get("routes") for r in s["routes"]]
    assert routes and routes[0]["extendedCommunities"] == ["bandwidth:64502:250000"]
    assert routes[0]["onWire"] == "sent"
    assert sl.sessions() == sessions, "a weight change touched a BGP session"
