"""``kubectl exalb status|routes|peers|why``: the pure joins, the tables, the CLI on a fake
source, and how speakers are addressed (URL parsing, pod discovery, the pod-proxy path).

The canned ``/status`` documents follow ``speaker/status.py`` key for key; one test builds a
document with the speaker's own ``status_document`` so a renamed key fails here too.
"""

from __future__ import annotations

import io
import json
import socket as socketlib
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exalb.k8s.client import ApiError
from exalb.obs import ObservabilityServer
from exalbctl import render, report
from exalbctl.main import main
from exalbctl.report import SpeakerStatus
from exalbctl.source import ApiUnavailableError
from exalbctl.speakers import (
    DEFAULT_SELECTOR,
    Target,
    fetch,
    fetch_all,
    parse_speaker,
    parse_speakers,
    pod_proxy_path,
    status_path,
    targets_from_pods,
)
from speaker.decisions import decide
from speaker.exabgp.render import render_config
from speaker.status import ConfigState, WireView, status_document
from tests.unit.test_speaker_core import config_of, loaded_world

NS = "app"
ROUTERS = {"n1": "198.18.0.1", "n2": "198.18.0.5", "n3": "198.18.0.9"}


# -- canned documents -----------------------------------------------------------------------


def svc(
    name: str,
    ips: list[str],
    *,
    pool: str | None = "pool",
    policy: str = "Cluster",
    conditions: list[dict[str, Any]] | None = None,
    kind: str = "LoadBalancer",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{name}"}
    if pool:
        meta["annotations"] = {"metallb.io/ip-allocated-from-pool": pool}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": kind, "externalTrafficPolicy": policy},
        "status": {
            "loadBalancer": {"ingress": [{"ip": ip} for ip in ips]},
            "conditions": conditions
            if conditions is not None
            else [
                {
                    "type": "exalb.io/IPAllocated",
                    "status": "True",
                    "reason": "IPAllocated",
                    "message": f"{','.join(ips)} from pool {pool}",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }


def route(prefix: str, node: str, on_wire: str = "sent", **attrs: Any) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "peer": f"r1-{node}",
        "peerAddress": ROUTERS[node],
        "nextHop": "self",
        **attrs,
        "onWire": on_wire,
    }


def decision(name: str, announce: bool, reason: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"service": f"{NS}/{name}", "announce": announce}
    if reason:
        out["reason"] = reason
    out.update(kw)
    return out


def speaker_doc(
    node: str,
    services: list[dict[str, Any]],
    rib: list[dict[str, Any]] | None,
    *,
    session: str | None = "established",
    l2: dict[str, Any] | None = None,
    stale: bool = False,
) -> dict[str, Any]:
    addr = ROUTERS[node]
    return {
        "node": node,
        "config": {"loaded": True, "stale": stale, "source": "crd", "problems": []},
        "exabgp": {"connected": rib is not None, "error": None if rib is not None else "down"},
        "peers": [
            {
                "name": f"r1-{node}",
                "address": addr,
                "myASN": 64501,
                "peerASN": 64500,
                "configured": True,
            }
        ],
        "renderProblems": [],
        "sessions": None
        if session is None
        else [
            {
                "peer": f"r1-{node}",
                "address": addr,
                "state": session,
                "fsm": session.upper(),
                "upSeconds": 3725,
                "localAddress": "198.18.0.2",
                "peerASN": 64500,
                "holdTime": 9,
                "families": ["ipv4 unicast"],
                "gracefulRestart": True,
            }
        ],
        "adjRibOut": None if rib is None else {addr: rib},
        "summary": {},
        "warnings": [],
        "services": services,
        "l2": l2 or {"stateFile": None, "generation": None, "sidecar": None, "ips": []},
    }


def wire(prefix: str, **attrs: Any) -> dict[str, Any]:
    return {"prefix": prefix, "nextHop": "198.18.0.2", **attrs}


WEB = "203.0.113.10"
LOCAL = "203.0.113.11"
EMPTY = "203.0.113.12"
L2IP = "203.0.113.20"


def l2_section(node: str, owner: str) -> dict[str, Any]:
    return {
        "stateFile": "/run/exalb/l2.json",
        "generation": 3,
        "sidecar": {"generation": 3, "peers": {}},
        "ips": [
            {
                "ip": L2IP,
                "services": [f"{NS}/arp"],
                "owner": owner,
                "rank": ["n1", "n2", "n3"].index(node),
                "candidates": ["n2", "n1", "n3"],
                "answering": node == owner,
                "reason": None if node == owner else "notOwner",
            }
        ],
    }


def node_services(node: str) -> list[dict[str, Any]]:
    local = (
        decision("local", True, pool="pool", routes=[route(f"{LOCAL}/32", node)])
        if node != "n3"
        else decision("local", False, "noLocalEndpoints", pool="pool")
    )
    arp_l2 = {"announce": node == "n2", "reason": None if node == "n2" else "notOwner"}
    arp_l2["owner"] = "n2"
    return [
        decision(
            "web",
            True,
            pool="pool",
            advertisements=["ads"],
            routes=[route(f"{WEB}/32", node, localPref=200, communities=["64500:1"])],
        ),
        local,
        decision("empty", False, "noEndpoints", pool="pool"),
        decision("arp", False, "notOwner", pool="l2pool", l2=arp_l2),
        decision("cip", False, "notLoadBalancer"),
    ]


def cluster_speakers(n3_reachable: bool = True) -> list[SpeakerStatus]:
    out = []
    for node in ("n1", "n2", "n3"):
        if node == "n3" and not n3_reachable:
            out.append(SpeakerStatus("n3", "unix:///run/n3.sock", error="connection refused"))
            continue
        rib = [wire(f"{WEB}/32", localPref=200, communities=["64500:1"])]
        if node != "n3":
            rib.append(wire(f"{LOCAL}/32"))
        doc = speaker_doc(node, node_services(node), rib, l2=l2_section(node, "n2"))
        out.append(SpeakerStatus(node, f"unix:///run/{node}.sock", doc=doc))
    return out


def cluster_services() -> list[dict[str, Any]]:
    return [
        svc("web", [WEB]),
        svc("local", [LOCAL], policy="Local"),
        svc("empty", [EMPTY]),
        svc("arp", [L2IP], pool="l2pool"),
        svc("cip", [], pool=None, kind="ClusterIP", conditions=[]),
        svc(
            "moved",
            ["198.51.100.7"],
            pool="old",
            conditions=[
                {"type": "exalb.io/IPAllocated", "status": "True", "reason": "IPAllocated"},
                {"type": "exalb.io/OutOfPool", "status": "True", "reason": "IPOutOfPool"},
                {"type": "other.io/Thing", "status": "True"},
            ],
        ),
        svc(
            "pending",
            [],
            pool=None,
            conditions=[
                {"type": "exalb.io/IPAllocated", "status": "False", "reason": "NoAvailableIPs"}
            ],
        ),
    ]


# -- status -------------------------------------------------------------------------------


def by_service(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in doc["services"]}


def test_status_joins_controller_and_speakers() -> None:
    doc = report.status_report(cluster_services(), cluster_speakers(), namespace=NS)
    rows = by_service(doc)
    assert "app/cip" not in rows  # not a LoadBalancer
    web, local, empty = rows["app/web"], rows["app/local"], rows["app/empty"]
    assert web["bgp"] == ["n1", "n2", "n3"] and web["l2"] == [] and web["notAnnouncing"] == {}
    assert web["ips"] == [WEB] and web["pool"] == "pool" and web["flags"] == []
    assert local["bgp"] == ["n1", "n2"]
    assert local["notAnnouncing"] == {"noLocalEndpoints": ["n3"]}
    assert empty["bgp"] == [] and empty["notAnnouncing"] == {"noEndpoints": ["n1", "n2", "n3"]}
    arp = rows["app/arp"]
    assert arp["bgp"] == [] and arp["l2"] == ["n2"]
    assert arp["notAnnouncing"] == {"bgp notOwner, l2 notOwner": ["n1", "n3"]}
    assert rows["app/moved"]["flags"] == ["outOfPool"]
    assert rows["app/pending"]["flags"] == ["pending(NoAvailableIPs)"]
    text = render.render_status(doc)
    assert text.splitlines()[0].split() == [
        "SERVICE", "IPS", "POOL", "BGP", "L2", "NOT", "ANNOUNCING", "FLAGS"
    ]  # fmt: skip
    assert "app/local" in text and "noLocalEndpoints: n3" in text
    assert "n1,n2,n3" in text


def test_status_with_an_unreachable_speaker_and_no_api() -> None:
    speakers = cluster_speakers(n3_reachable=False)
    doc = report.status_report(None, speakers, namespace=NS, api_error="no kubeconfig")
    rows = by_service(doc)
    # without the API the speakers' lists are used; non-LB Services stay out
    assert set(rows) == {"app/web", "app/local", "app/empty", "app/arp"}
    assert rows["app/web"]["bgp"] == ["n1", "n2"] and rows["app/web"]["unreachable"] == ["n3"]
    assert rows["app/web"]["pool"] == "pool"
    assert rows["app/web"]["ips"] == [WEB] and rows["app/arp"]["ips"] == [L2IP]
    text = render.render_status(doc)
    assert "cluster API not read (no kubeconfig)" in text
    assert "speaker n3 (unix:///run/n3.sock): unreachable: connection refused" in text
    assert "unreachable: n3" in text


def test_status_scope_by_name() -> None:
    doc = report.status_report(cluster_services(), cluster_speakers(), namespace=NS, name="web")
    assert [s["service"] for s in doc["services"]] == ["app/web"]
    doc = report.status_report(cluster_services(), cluster_speakers(), namespace="other")
    assert doc["services"] == []
    assert "no LoadBalancer Services found" in render.render_status(doc)


def test_a_service_the_speaker_has_not_seen() -> None:
    sp = SpeakerStatus("n1", "x", doc=speaker_doc("n1", [], []))
    doc = report.status_report([svc("new", [WEB])], [sp])
    assert doc["services"][0]["notAnnouncing"] == {report.NOT_SEEN: ["n1"]}


# -- routes -------------------------------------------------------------------------------


def test_routes_show_the_wire_and_what_is_missing_or_unwanted() -> None:
    services = [
        decision("web", True, routes=[route(f"{WEB}/32", "n1", localPref=200)]),
        decision("gone", True, routes=[route(f"{EMPTY}/32", "n1", on_wire="missing")]),
        decision(
            "odd", True, routes=[route(f"{LOCAL}/32", "n1", on_wire="differs", localPref=300)]
        ),
    ]
    rib = [
        wire(f"{WEB}/32", localPref=200),
        wire(f"{LOCAL}/32", localPref=100),
        wire("203.0.113.99/32"),  # nobody wants it
    ]
    sp = SpeakerStatus("n1", "unix:///n1", doc=speaker_doc("n1", services, rib))
    doc = report.routes_report([sp])
    (node,) = doc["nodes"]
    (peer,) = node["peers"]
    assert peer["peer"] == "r1-n1" and peer["session"] == "established"
    rows = {r["prefix"]: r for r in peer["routes"]}
    assert rows[f"{WEB}/32"]["state"] == "sent" and rows[f"{WEB}/32"]["onWire"] is True
    assert rows[f"{WEB}/32"]["localPref"] == 200 and rows[f"{WEB}/32"]["services"] == ["app/web"]
    assert rows[f"{WEB}/32"]["nextHop"] == "198.18.0.2"  # the wire's, not "self"
    assert rows[f"{EMPTY}/32"]["state"] == "missing" and rows[f"{EMPTY}/32"]["onWire"] is False
    assert rows[f"{LOCAL}/32"]["state"] == "differs"
    assert rows[f"{LOCAL}/32"]["wanted"]["localPref"] == 300
    assert rows["203.0.113.99/32"]["state"] == "unwanted"
    text = render.render_routes(doc)
    assert "MISSING" in text and "UNWANTED" in text and "DIFFERS (want lp=300" in text
    assert "MISSING: wanted by a Service, not in the adj-rib-out" in text
    # --prefix narrows, also by bare IP
    doc = report.routes_report([sp], prefix=WEB)
    assert [r["prefix"] for r in doc["nodes"][0]["peers"][0]["routes"]] == [f"{WEB}/32"]


def test_routes_held_when_the_session_is_down_and_unknown_without_exabgp() -> None:
    services = [decision("web", True, routes=[route(f"{WEB}/32", "n1", on_wire="held")])]
    down = speaker_doc("n1", services, [wire(f"{WEB}/32")], session="idle")
    row = report.node_routes(SpeakerStatus("n1", "x", doc=down))["peers"][0]["routes"][0]
    assert row["state"] == "held" and row["onWire"] is False
    blind = speaker_doc("n1", services, None, session=None)
    node = report.node_routes(SpeakerStatus("n1", "x", doc=blind))
    assert node["exabgp"]["connected"] is False
    row = node["peers"][0]["routes"][0]
    assert row["state"] == "unknown" and row["onWire"] is None
    assert node["peers"][0]["session"] == "unknown"
    text = render.render_routes({"nodes": [node], "states": report.STATE_HELP})
    assert "ExaBGP not connected: down" in text


def test_routes_node_filter_l2_and_unreachable() -> None:
    speakers = cluster_speakers(n3_reachable=False)
    doc = report.routes_report(speakers, node="n2")
    assert [n["node"] for n in doc["nodes"]] == ["n2"]
    assert doc["nodes"][0]["l2"][0]["answering"] is True
    assert f"l2 n2: {L2IP} owner=n2 answering services=app/arp" in render.render_routes(doc)
    doc = report.routes_report(speakers)
    assert doc["nodes"][2] == {
        "node": "n3",
        "source": "unix:///run/n3.sock",
        "reachable": False,
        "error": "connection refused",
    }
    assert "speaker n3 (unix:///run/n3.sock): unreachable" in render.render_routes(doc)


# -- peers --------------------------------------------------------------------------------


def test_peers() -> None:
    doc = report.peers_report(cluster_speakers(n3_reachable=False))
    n1 = doc["nodes"][0]
    (p,) = n1["peers"]
    assert p["peer"] == "r1-n1" and p["state"] == "established" and p["upSeconds"] == 3725
    assert p["routesOut"] == 2 and p["gracefulRestart"] is True and p["myASN"] == 64501
    text = render.render_peers(doc)
    line = next(line for line in text.splitlines() if line.startswith("n1"))
    assert line.split() == [
        "n1", "r1-n1", "198.18.0.1", "64501->64500", "established", "1h2m5s", "9", "yes",
        "ipv4", "unicast", "2", "-",
    ]  # fmt: skip
    # with the node's bfdd: the BFD session's state and timers per peer
    with_bfd = cluster_speakers(n3_reachable=False)
    with_bfd[0].doc["bfd"] = {  # type: ignore[index]
        "sessions": [{"address": "198.18.0.1", "state": "up", "diagnostic": "ok",
                      "multihop": False, "transmitInterval": 300, "receiveInterval": 300,
                      "detectMultiplier": 3}],
        "error": None, "problems": [],
    }  # fmt: skip
    bfd_doc = report.peers_report(with_bfd)
    assert bfd_doc["nodes"][0]["peers"][0]["bfd"]["state"] == "up"
    assert render.render_peers(bfd_doc).splitlines()[1].split()[-2:] == ["up", "300/300x3"]
    assert "speaker n3 (unix:///run/n3.sock): unreachable: connection refused" in text
    # ExaBGP not answering: the configured peer is still listed, state unknown
    blind = SpeakerStatus("n1", "x", doc=speaker_doc("n1", [], None, session=None))
    (p,) = report.node_peers(blind)["peers"]
    assert p["state"] == "unknown" and p["routesOut"] is None


# -- why ----------------------------------------------------------------------------------


EVENTS = [
    {
        "type": "Normal",
        "reason": "IPAllocated",
        "message": f'Assigned IP ["{LOCAL}"]',
        "lastTimestamp": "2025-01-01T00:00:00Z",
        "count": 1,
        "source": {"component": "exalb-controller"},
    },
    {
        "type": "Normal",
        "reason": "nodeAssigned",
        "message": "announcing",
        "lastTimestamp": "2025-01-01T00:05:00Z",
        "count": 3,
    },
]


def test_why_local_policy() -> None:
    local = svc("local", [LOCAL], policy="Local")
    doc = report.why_report(f"{NS}/local", local, cluster_speakers(), events=EVENTS)
    assert doc["found"] is True
    c = doc["controller"]
    assert c["pool"] == "pool" and c["ips"] == [LOCAL] and c["allocated"] is True
    assert [e["reason"] for e in c["events"]] == ["IPAllocated", "nodeAssigned"]
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["n3"]["bgp"] == {"announce": False, "reason": "noLocalEndpoints", "pool": "pool"}
    (r,) = nodes["n1"]["bgp"]["routes"]
    assert r["peer"] == "r1-n1" and r["onWire"] == "sent" and r["session"] == "established"
    assert doc["summary"] == {
        "bgp": ["n1", "n2"],
        "l2": [],
        "notAnnouncing": {"n3": "noLocalEndpoints"},
        "unreachable": [],
    }
    text = render.render_why(doc, now=datetime(2025, 1, 1, 0, 10, tzinfo=UTC))
    assert "externalTrafficPolicy Local" in text
    assert "10m ago" in text and "nodeAssigned (x3): announcing" in text
    n3 = next(line for line in text.splitlines() if line.startswith("n3"))
    assert n3.split() == ["n3", "BGP", "no", "noLocalEndpoints"]
    n1 = next(line for line in text.splitlines() if line.startswith("n1"))
    assert f"{LOCAL}/32" in n1 and "r1-n1 (198.18.0.1) established" in n1 and "sent" in n1
    assert "announced by BGP from: n1,n2; L2 from: -" in text


def test_why_attributes_l2_and_unreachable() -> None:
    web = report.why_report(f"{NS}/web", svc("web", [WEB]), cluster_speakers(False))
    n1 = next(n for n in web["nodes"] if n["node"] == "n1")
    assert n1["bgp"]["routes"][0]["localPref"] == 200
    assert n1["bgp"]["routes"][0]["communities"] == ["64500:1"]
    assert n1["bgp"]["advertisements"] == ["ads"]
    assert web["summary"]["unreachable"] == ["n3"]
    text = render.render_why(web)
    assert "nh=self lp=200 comm=64500:1" in text
    assert "unreachable: connection refused" in text

    arp = report.why_report(f"{NS}/arp", svc("arp", [L2IP], pool="l2pool"), cluster_speakers())
    nodes = {n["node"]: n for n in arp["nodes"]}
    assert nodes["n2"]["l2"]["announce"] is True and nodes["n2"]["l2"]["owner"] == "n2"
    assert nodes["n2"]["l2"]["ips"][0]["answering"] is True
    assert nodes["n1"]["l2"] == {
        "announce": False,
        "reason": "notOwner",
        "owner": "n2",
        "ips": [l2_section("n1", "n2")["ips"][0]],
    }
    assert arp["summary"]["l2"] == ["n2"] and arp["summary"]["bgp"] == []
    text = render.render_why(arp)
    n2_l2 = next(line for line in text.splitlines() if line.startswith("n2") and " L2 " in line)
    assert "yes" in n2_l2 and "owner n2" in n2_l2 and "answering" in n2_l2
    n1_l2 = next(line for line in text.splitlines() if line.startswith("n1") and " L2 " in line)
    assert "notOwner, owner n2" in n1_l2 and "silent" in n1_l2


def test_why_unknown_service_and_no_api() -> None:
    doc = report.why_report(f"{NS}/nope", None, cluster_speakers())
    assert doc["found"] is False
    assert "not found in the cluster" in render.render_why(doc)
    doc = report.why_report(f"{NS}/web", None, cluster_speakers(), api_error="forbidden")
    assert doc["found"] is True  # the speakers know it
    assert doc["controller"] == {"found": None}
    assert "cluster API not read (forbidden)" in render.render_why(doc)


def test_why_reads_real_speaker_documents() -> None:
    """The contract with speaker/status.py: a document it builds is read correctly."""

    w = loaded_world()
    snap = w.snapshot()
    assert snap.node is not None
    ann = decide(config_of(w), snap.node, snap.services, snap.endpoints)
    st = status_document(
        node="n1",
        config=ConfigState(True, False, "crd"),
        announcements=ann,
        rendered=render_config(ann.peers, snap.node, ["/bin/bridge"]),
        wire=WireView([], {}, None, True),
    )
    st = json.loads(json.dumps(st))
    sp = SpeakerStatus("n1", "x", doc=st)
    why = report.why_report("app/loc", None, [sp], api_error="offline")
    assert why["summary"]["notAnnouncing"] == {"n1": "noLocalEndpoints"}
    web = report.why_report("app/web", None, [sp], api_error="offline")
    (r,) = web["nodes"][0]["bgp"]["routes"]
    assert r["onWire"] == "missing" and r["session"] == "none"
    routes = report.routes_report([sp])
    assert routes["nodes"][0]["peers"][0]["routes"][0]["state"] == "missing"


# -- formatting helpers -------------------------------------------------------------------


def test_duration_and_age() -> None:
    assert render.duration(0) == "0s" and render.duration(90061) == "1d1h1m1s"
    assert render.duration(None) == "-" and render.duration(True) == "-"
    now = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)
    assert render.age("2025-01-01T00:59:30Z", now) == "30s ago"
    assert render.age("garbage", now) == "garbage" and render.age(None, now) == "-"
    assert render.age("2025-01-01T00:59:30Z", None) == "2025-01-01T00:59:30Z"


# -- the CLI on a fake source -------------------------------------------------------------


class FakeSource:
    def __init__(
        self,
        services: list[dict[str, Any]] | None,
        speakers: list[SpeakerStatus],
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        self._services = services
        self._speakers = speakers
        self._events = events or []
        self.asked: list[str | None] = []

    def default_namespace(self) -> str:
        return NS

    def services(self, namespace: str | None) -> list[dict[str, Any]]:
        if self._services is None:
            raise ApiUnavailableError("no kubeconfig")
        return [
            s
            for s in self._services
            if namespace is None or s["metadata"]["namespace"] == namespace
        ]

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (s for s in self.services(namespace) if s["metadata"]["name"] == name),
            None,
        )

    def events(self, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        return self._events

    def speakers(self, service: str | None = None) -> list[SpeakerStatus]:
        self.asked.append(service)
        return self._speakers


def run(source: FakeSource, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out, source=source)
    return code, out.getvalue()


def test_cli_status_text_json_yaml() -> None:
    src = FakeSource(cluster_services(), cluster_speakers())
    code, text = run(src, "status")
    assert code == 0 and "app/local" in text and "noLocalEndpoints: n3" in text
    code, text = run(src, "status", "-A", "-o", "json")
    data = json.loads(text)
    assert by_service(data)["app/web"]["bgp"] == ["n1", "n2", "n3"]
    code, text = run(src, "status", "local", "-o", "yaml")
    data = yaml.safe_load(text)
    assert [s["service"] for s in data["services"]] == ["app/local"]
    assert src.asked[-1] == "app/local"  # the speakers were asked about that one only
    code, text = run(src, "status", "app/nope")
    assert code == 1 and "Service app/nope not found" in text


def test_cli_status_without_api_and_without_speakers_fails() -> None:
    dead = [SpeakerStatus("n1", "unix:///x", error="no such socket: /x")]
    code, text = run(FakeSource(None, dead), "status")
    assert code == 1
    assert "cluster API not read" in text and "unreachable: no such socket" in text


def test_cli_routes_peers_why() -> None:
    src = FakeSource(cluster_services(), cluster_speakers(n3_reachable=False), EVENTS)
    code, text = run(src, "routes")
    assert code == 0 and f"{WEB}/32" in text and "unreachable" in text
    code, text = run(src, "routes", "--node", "n1", "-o", "json")
    assert [n["node"] for n in json.loads(text)["nodes"]] == ["n1"]
    code, text = run(src, "routes", "--node", "n9")
    assert code == 1 and "no speaker for node n9" in text
    code, text = run(src, "peers")
    assert code == 0 and "established" in text
    code, text = run(src, "why", "local")
    assert code == 0 and "noLocalEndpoints" not in text  # n3 is unreachable here
    assert "unreachable: connection refused" in text
    src = FakeSource(cluster_services(), cluster_speakers(), EVENTS)
    code, text = run(src, "why", "-n", NS, "local", "-o", "json")
    data = json.loads(text)
    assert data["summary"]["notAnnouncing"] == {"n3": "noLocalEndpoints"}
    assert src.asked[-1] == "app/local"
    code, text = run(src, "why", "app/nope")
    assert code == 1


def test_cli_bad_speaker_flag() -> None:
    with pytest.raises(SystemExit):
        main(["status", "--speaker", "n1"], io.StringIO())


def test_cli_explicit_unreachable_speakers_never_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real LiveSource, no cluster: every speaker unreachable, each one said so."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    out = io.StringIO()
    code = main(
        [
            "routes",
            "--timeout", "1",
            "--speaker", f"n1=unix://{tmp_path}/missing.sock",
            "--speaker", "n2=http://127.0.0.1:9",
        ],
        out,
    )  # fmt: skip
    text = out.getvalue()
    assert code == 1
    assert f"speaker n1 (unix://{tmp_path}/missing.sock): unreachable: no such socket" in text
    assert "speaker n2 (http://127.0.0.1:9): unreachable: cannot connect" in text
    monkeypatch.setenv("EXALB_SPEAKERS", f"n1=unix://{tmp_path}/missing.sock")
    out = io.StringIO()
    assert main(["why", "app/x"], out) == 1
    assert "cluster API not read" in out.getvalue()


# -- reaching speakers --------------------------------------------------------------------


def test_parse_speakers() -> None:
    assert parse_speaker("n1=unix:///run/a.sock") == Target("n1", url="unix:///run/a.sock")
    assert parse_speaker(" n2 = http://127.0.0.1:7473 ").url == "http://127.0.0.1:7473"
    assert [t.name for t in parse_speakers(["n1=http://a:1,n2=http://b:2", "n3=unix:///c"])] == [
        "n1",
        "n2",
        "n3",
    ]
    for bad in ("n1", "=http://a", "n1=ftp://x", "n1=unix://relative"):
        with pytest.raises(ValueError):
            parse_speaker(bad)


def pod(
    name: str,
    node: str,
    phase: str = "Running",
    ip: str | None = "198.18.0.2",
    port: int = 7474,
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    """A speaker pod as the chart renders it (``status`` port on loopback, ``metrics`` on
    the node), or as older charts did (``legacy``: ``/status`` on the ``metrics`` port)."""
    ports = [{"name": "metrics", "containerPort": 7472 if not legacy else port}]
    if not legacy:
        ports.append({"name": "status", "containerPort": port})
    return {
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "speaker", "ports": ports},
                {"name": "garp", "ports": [{"name": "garp-metrics", "containerPort": 7480}]},
            ],
        },
        "status": {"phase": phase, "podIP": ip},
    }


def test_pod_discovery_and_proxy_path() -> None:
    targets = targets_from_pods(
        [
            pod("speaker-b", "n2", port=9000),
            pod("speaker-a", "n1"),
            pod("speaker-c", "n3", phase="Pending", ip=None),
            pod("speaker-d", "n4", ip=None),
            pod("speaker-e", "n5", port=7472, legacy=True),
            {"metadata": {"name": "speaker-f", "namespace": "metallb-system"},
             "spec": {"nodeName": "n6"}, "status": {"phase": "Running", "podIP": "x"}},
        ],
        default_port=7474,
    )  # fmt: skip
    assert [(t.name, t.pod, t.port, t.error, t.proxy) for t in targets] == [
        ("n1", "metallb-system/speaker-a", 7474, None, False),
        ("n2", "metallb-system/speaker-b", 9000, None, False),
        ("n3", "metallb-system/speaker-c", 7474, "pod metallb-system/speaker-c is Pending", False),
        ("n4", "metallb-system/speaker-d", 7474, "pod metallb-system/speaker-d has no IP yet",
         False),
        ("n5", "metallb-system/speaker-e", 7472, None, True),  # an older speaker: pod proxy
        ("n6", "metallb-system/speaker-f", 7474, None, False),  # no named port: the default
    ]  # fmt: skip
    assert targets[0].source == "pod metallb-system/speaker-a:7474"
    assert targets[4].source == "pod metallb-system/speaker-e:7472 (pod proxy)"
    assert (
        pod_proxy_path("metallb-system", "speaker-a", 7472)
        == "/api/v1/namespaces/metallb-system/pods/speaker-a:7472/proxy/status"
    )
    assert status_path("app/web") == "/status?service=app/web"
    assert status_path(None) == "/status"


def test_fetch_through_a_proxy_getter() -> None:
    calls: list[tuple[str, str, Any, float]] = []

    def proxy(
        method: str, path: str, *, query: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        calls.append((method, path, query, timeout))
        if "speaker-b" in path:
            raise OSError("503 Service Unavailable: error trying to reach service")
        if "speaker-c" in path:
            return {"message": "<html>not a speaker</html>"}
        return speaker_doc("n1", [], [])

    targets = targets_from_pods(
        [pod("speaker-a", "n1", port=7472, legacy=True),
         pod("speaker-b", "n2", port=7472, legacy=True),
         pod("speaker-c", "n3", port=7472, legacy=True),
         pod("speaker-d", "n4", phase="Failed", legacy=True)],
        default_port=7474,
    )  # fmt: skip
    got = fetch_all(targets, lambda t: fetch(t, service="app/web", timeout=3, proxy=proxy))
    assert [s.reachable for s in got] == [True, False, False, False]
    assert got[1].error == "503 Service Unavailable: error trying to reach service"
    assert got[2].error == "the answer is not a speaker /status document"
    assert got[3].error == "pod metallb-system/speaker-d is Failed"
    assert sorted(c[1] for c in calls) == [
        f"/api/v1/namespaces/metallb-system/pods/speaker-{x}:7472/proxy/status" for x in "abc"
    ]
    assert all(c[2] == {"service": "app/web"} and c[3] == 3 for c in calls)
    # without API access a pod target is unreachable, with the reason
    assert fetch(targets[0]).error == "no API server access for the pod proxy"


def test_fetch_through_a_port_forward() -> None:
    """The chart's speakers are read with a port-forward to their loopback status port; a
    refusal by the API server or the kubelet is shown as such."""
    calls: list[tuple[str, str, int, str, float]] = []
    doc = json.dumps(speaker_doc("n1", [], [])).encode()

    def forward(ns: str, pod: str, port: int, path: str, *, timeout: float) -> tuple[int, bytes]:
        calls.append((ns, pod, port, path, timeout))
        if pod == "speaker-b":
            raise ApiError(0, "port-forward to speaker-b:7474: failed to connect to localhost")
        if pod == "speaker-c":
            raise ApiError(403, "Forbidden", {"message": 'pods "speaker-c" is forbidden: '
                           'User "dev" cannot create resource "pods/portforward"'})  # fmt: skip
        if pod == "speaker-d":
            return 404, b"not found\n"
        return 200, doc

    targets = targets_from_pods(
        [pod(f"speaker-{x}", f"n{i}") for i, x in enumerate("abcde", 1)], default_port=1
    )
    got = fetch_all(targets, lambda t: fetch(t, service="app/web", timeout=3, forward=forward))
    assert [s.reachable for s in got] == [True, False, False, False, True]
    assert got[1].error == "port-forward to speaker-b:7474: failed to connect to localhost"
    assert got[2].error is not None and got[2].error.startswith('403 pods "speaker-c" is forb')
    assert got[3].error == "HTTP 404: not found"
    assert {c[3] for c in calls} == {"/status?service=app/web"}
    assert {(c[0], c[2], c[4]) for c in calls} == {("metallb-system", 7474, 3)}
    assert fetch(targets[0]).error == "no API server access for the port-forward"


@pytest.fixture
def status_server(tmp_path: Path) -> Iterator[tuple[ObservabilityServer, Path]]:
    """A real ObservabilityServer on loopback and on a unix socket, serving a canned doc."""
    sock = tmp_path / "status.sock"
    seen: list[Mapping[str, str]] = []

    def status(params: Mapping[str, str]) -> dict[str, Any]:
        seen.append(dict(params))
        return speaker_doc("n1", node_services("n1"), [], l2=None)

    server = ObservabilityServer(
        "127.0.0.1:0", endpoints={"/status": status}, unix_socket=str(sock)
    ).start()
    server.seen = seen  # type: ignore[attr-defined]
    try:
        yield server, sock
    finally:
        server.stop()


def test_fetch_over_unix_socket_and_http(
    status_server: tuple[ObservabilityServer, Path],
) -> None:
    server, sock = status_server
    assert sock.stat().st_mode & 0o777 == 0o600
    via_unix = fetch(Target("n1", url=f"unix://{sock}"), service="app/web")
    via_http = fetch(Target("n1", url=f"http://127.0.0.1:{server.port}/"))
    assert via_unix.reachable and via_http.reachable
    assert via_unix.doc == via_http.doc
    assert server.seen[0] == {"service": "app/web"}  # type: ignore[attr-defined]
    # the pod proxy's client escapes the slash; the server decodes it
    urllib.request.urlopen(f"http://127.0.0.1:{server.port}/status?service=app%2Fweb").close()
    assert server.seen[-1] == {"service": "app/web"}  # type: ignore[attr-defined]
    assert fetch(Target("n1", url=f"http://127.0.0.1:{server.port}/nope")).error == (
        "HTTP 404: not found"
    )


def test_unix_socket_lifecycle(tmp_path: Path) -> None:
    """A stale socket file is replaced, a live one or a regular file is refused, and stop()
    removes it."""
    path = tmp_path / "s.sock"
    stale = socketlib.socket(socketlib.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listening
    server = ObservabilityServer("127.0.0.1:0", unix_socket=str(path)).start()
    try:
        with pytest.raises(OSError, match="in use"):
            ObservabilityServer("127.0.0.1:0", unix_socket=str(path))
    finally:
        server.stop()
    assert not path.exists()
    path.write_text("x")
    with pytest.raises(OSError, match="not a socket"):
        ObservabilityServer("127.0.0.1:0", unix_socket=str(path))


def test_offline_commands_take_yaml_too() -> None:
    root = Path(__file__).resolve().parents[2]
    out = io.StringIO()
    assert main(["config", "check", "-o", "yaml", str(root / "examples/legacy/bgp.yaml")], out) == 0
    assert yaml.safe_load(out.getvalue())["valid"] is True


def test_discovery_matches_the_charts_speaker_pods() -> None:
    """The selector and port name are a contract with charts/exalb (its rendered golden)."""
    root = Path(__file__).resolve().parents[2]
    docs = list(yaml.safe_load_all((root / "tests/chart/golden/default.yaml").read_text()))
    (ds,) = [d for d in docs if d and d.get("kind") == "DaemonSet"]
    template = ds["spec"]["template"]
    labels = template["metadata"]["labels"]
    for part in DEFAULT_SELECTOR.split(","):
        key, _, value = part.partition("=")
        assert labels.get(key) == value, part
    pod_doc = {"metadata": {"name": "p", "namespace": "x"}, "spec": {**template["spec"]}}
    pod_doc["spec"]["nodeName"] = "n1"
    (target,) = targets_from_pods([pod_doc], default_port=1)
    assert target.port == 7474 and not target.proxy
