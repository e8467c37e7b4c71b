"""``kubectl exalb`` end to end: real apiserver, real speakers, ExaBGP and FRR.

The ``bgp-ecmp`` lab of ``tests/lab/speaker_lab.py``: three node namespaces, each with a
speaker that also serves its endpoints on ``--status-socket`` (a unix socket in the lab's run
directory).
``exalbctl`` runs in the test process (the host's default namespace) with ``--speaker
nX=unix://...`` and the admin kubeconfig, so it reads the speakers in their namespaces
without any network between them, and the Services, conditions and events from the API.

What the plugin shows is checked against the truth where it is: r1's kernel FIB (which nodes
are next hops) and r1's BGP table (the communities that arrived), not against the speaker's
own claims only.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exalbctl.main import main as exalbctl
from lab.binaries import find_tools
from lab.controlplane import ControlPlane
from lab.runner import Lab
from lab.wait import wait_for
from tests.lab.api_objects import advertisement, pool
from tests.lab.speaker_lab import NODES, SpeakerLab, bgp_peer, speaker_lab

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

POOL4 = "203.0.113.0/24"
WEB, LOCAL, EMPTY = "203.0.113.10", "203.0.113.11", "203.0.113.12"
COMMUNITY = "64500:100"


@pytest.fixture
def sl(lab_bgp_ecmp: Lab, speaker_control_plane: ControlPlane) -> Iterator[SpeakerLab]:
    with speaker_lab(lab_bgp_ecmp, speaker_control_plane) as s:
        yield s


def run(sl: SpeakerLab, *argv: str, speakers: list[str] | None = None) -> tuple[int, str]:
    args = [*argv, "--kubeconfig", str(sl.cp.kubeconfig), "--timeout", "5"]
    for spec in speakers if speakers is not None else sl.speaker_urls():
        args += ["--speaker", spec]
    out = io.StringIO()
    code = exalbctl(args, out)
    text = out.getvalue()
    print(f"\n$ kubectl exalb {' '.join(argv)}\n{text}")
    return code, text


def run_json(sl: SpeakerLab, *argv: str, speakers: list[str] | None = None) -> Any:
    code, text = run(sl, *argv, "-o", "json", speakers=speakers)
    assert code == 0, text
    return json.loads(text)


def controller_writes(sl: SpeakerLab, name: str, *, out_of_pool: bool = False) -> None:
    """What the controller would write besides the IP: the pool annotation and conditions."""
    c = sl.cluster
    path = f"/api/v1/namespaces/{c.app_ns}/services/{name}"
    c._patch(path, {"metadata": {"annotations": {"metallb.io/ip-allocated-from-pool": "pool"}}})
    conds = [
        {
            "type": "exalb.io/IPAllocated",
            "status": "True",
            "reason": "IPAllocated",
            "message": "from pool pool",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
    ]
    if out_of_pool:
        conds.append(
            {
                "type": "exalb.io/OutOfPool",
                "status": "True",
                "reason": "IPOutOfPool",
                "message": "not in any IPAddressPool; kept unchanged",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        )
    c._patch(f"{path}/status", {"status": {"conditions": conds}})


def event(sl: SpeakerLab, name: str, reason: str, message: str) -> None:
    c = sl.cluster
    svc = sl.cp.api("GET", f"/api/v1/namespaces/{c.app_ns}/services/{name}").body
    c._post(
        f"/api/v1/namespaces/{c.app_ns}/events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}"},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Service",
                "name": name,
                "namespace": c.app_ns,
                "uid": svc["metadata"]["uid"],
            },
            "reason": reason,
            "message": message,
            "type": "Normal",
            "source": {"component": "exalb-controller"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:00:00Z",
            "count": 1,
        },
    )


def test_plugin_answers_from_speakers_and_api(sl: SpeakerLab) -> None:
    lab, c = sl.lab, sl.cluster
    sl.cluster.apply_config(
        pool("pool", [POOL4]),
        *(bgp_peer(n) for n in NODES.values()),
        advertisement("ads", ["pool"], communities=[COMMUNITY]),
    )
    for n in NODES.values():
        c.node(n)
    c.service("web", [WEB])
    c.endpoints("web", ["n1"])
    c.service("local", [LOCAL], policy="Local")
    c.endpoints("local", ["n1", "n2"])
    c.service("empty", [EMPTY])
    for name in ("web", "local"):
        controller_writes(sl, name)
    controller_writes(sl, "empty", out_of_pool=True)
    event(sl, "local", "IPAllocated", f'Assigned IP ["{LOCAL}"]')
    sl.start()
    sl.wait_ready()
    assert lab.wait_route("r1", f"{WEB}/32", nexthops=3, timeout=10).gateways == {
        NODES[n].ipv4 for n in NODES
    }
    assert lab.wait_route("r1", f"{LOCAL}/32", nexthops=2, timeout=10).gateways == {
        NODES["n1"].ipv4,
        NODES["n2"].ipv4,
    }
    for name in NODES:
        assert sl.status_socket(name).stat().st_mode & 0o777 == 0o600

    # -- status: who announces what, with the controller's flags -----------------------
    st = run_json(sl, "status", "-n", c.app_ns)
    rows = {s["service"]: s for s in st["services"]}
    web, local, empty = (rows[f"{c.app_ns}/{n}"] for n in ("web", "local", "empty"))
    assert web["bgp"] == ["n1", "n2", "n3"] and web["ips"] == [WEB] and web["pool"] == "pool"
    assert local["bgp"] == ["n1", "n2"]
    assert local["notAnnouncing"] == {"noLocalEndpoints": ["n3"]}
    assert empty["bgp"] == [] and empty["notAnnouncing"] == {"noEndpoints": ["n1", "n2", "n3"]}
    assert empty["flags"] == ["outOfPool"]
    assert all(s["reachable"] and not s["configStale"] for s in st["speakers"])
    code, text = run(sl, "status", "-n", c.app_ns)
    assert code == 0
    local_line = next(line for line in text.splitlines() if line.startswith(f"{c.app_ns}/local"))
    assert local_line.split()[1:5] == [LOCAL, "pool", "n1,n2", "-"]
    assert "noLocalEndpoints: n3" in local_line

    # -- routes: ExaBGP's adj-rib-out, checked against what r1 received -----------------
    routes = run_json(sl, "routes")
    on_wire = {
        n["node"]: {r["prefix"] for p in n["peers"] for r in p["routes"] if r["state"] == "sent"}
        for n in routes["nodes"]
    }
    assert on_wire == {
        "n1": {f"{WEB}/32", f"{LOCAL}/32"},
        "n2": {f"{WEB}/32", f"{LOCAL}/32"},
        "n3": {f"{WEB}/32"},
    }
    n1_peer = routes["nodes"][0]["peers"][0]
    assert n1_peer["address"] == NODES["n1"].router4 and n1_peer["session"] == "established"
    n1_web = next(r for r in n1_peer["routes"] if r["prefix"] == f"{WEB}/32")
    assert n1_web["communities"] == [COMMUNITY] and n1_web["onWire"] is True
    assert n1_web["services"] == [f"{c.app_ns}/web"]
    frr = wait_for(
        "three paths at r1",
        lambda: (r := sl.bgp_route(f"{WEB}/32")) and len(r["paths"]) == 3 and r,
        10,
        0.02,
    )
    assert {p["community"]["string"] for p in frr["paths"]} == {COMMUNITY}
    code, text = run(sl, "routes", "--node", "n3")
    assert code == 0 and f"{WEB}/32" in text and f"{LOCAL}/32" not in text
    assert "MISSING" not in text and "UNWANTED" not in text

    # -- peers --------------------------------------------------------------------------
    peers = run_json(sl, "peers")
    for n in peers["nodes"]:
        (p,) = n["peers"]
        assert p["state"] == "established" and p["address"] == NODES[n["node"]].router4
        assert p["peerASN"] == 64500 and isinstance(p["upSeconds"], int)
        assert p["routesOut"] == (1 if n["node"] == "n3" else 2)
    code, text = run(sl, "peers")
    assert code == 0 and text.count("established") == 3

    # -- why ----------------------------------------------------------------------------
    why = run_json(sl, "why", "local", "-n", c.app_ns)
    nodes = {n["node"]: n for n in why["nodes"]}
    assert nodes["n3"]["bgp"]["announce"] is False
    assert nodes["n3"]["bgp"]["reason"] == "noLocalEndpoints"
    for name in ("n1", "n2"):
        (r,) = nodes[name]["bgp"]["routes"]
        assert r["prefix"] == f"{LOCAL}/32" and r["peerAddress"] == NODES[name].router4
        assert r["communities"] == [COMMUNITY] and r["onWire"] == "sent"
        assert r["session"] == "established"
    assert why["controller"]["pool"] == "pool" and why["controller"]["ips"] == [LOCAL]
    assert [e["reason"] for e in why["controller"]["events"]] == ["IPAllocated"]
    assert why["summary"]["notAnnouncing"] == {"n3": "noLocalEndpoints"}
    code, text = run(sl, "why", f"{c.app_ns}/local")
    assert code == 0
    n3 = next(line for line in text.splitlines() if line.startswith("n3"))
    assert n3.split() == ["n3", "BGP", "no", "noLocalEndpoints"]
    assert "IPAllocated: Assigned IP" in text
    code, text = run(sl, "why", f"{c.app_ns}/nope")
    assert code == 1 and "not found" in text

    # -- an unreachable speaker is shown, the others still answer -----------------------
    missing = Path(sl.dir("n1")) / "no-such.sock"
    code, text = run(
        sl, "status", "-n", c.app_ns, speakers=[*sl.speaker_urls(), f"n4=unix://{missing}"]
    )
    assert code == 0
    assert f"speaker n4 (unix://{missing}): unreachable: no such socket" in text
    sl.stop_speaker("n3")  # SIGTERM: withdraws, and the socket goes away with the server
    assert not sl.status_socket("n3").exists()
    lab.wait_route("r1", f"{WEB}/32", nexthops=2, timeout=10)
    why = run_json(sl, "why", f"{c.app_ns}/web")
    assert why["summary"]["bgp"] == ["n1", "n2"] and why["summary"]["unreachable"] == ["n3"]

    # -- as a kubectl plugin: kubectl finds kubectl-exalb on PATH ----------------------
    venv_bin = str(Path(sys.executable).parent)
    kubectl = str(find_tools().kubectl)
    args = [kubectl, "exalb", "status", "-n", c.app_ns, "--kubeconfig", str(sl.cp.kubeconfig)]
    for spec in sl.speaker_urls(["n1", "n2"]):
        args += ["--speaker", spec]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"},
        check=False,
    )
    print(f"\n$ kubectl exalb status -n {c.app_ns} ...\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    assert any(
        line.startswith(f"{c.app_ns}/web") and "n1,n2" in line for line in proc.stdout.splitlines()
    )
