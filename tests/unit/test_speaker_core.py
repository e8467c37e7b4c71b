"""The speaker's pure pieces: the cluster store, the decision memo, /status, source addresses,
Secret passwords, and the CLI flags."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from exalb.config.documents import parse_documents
from exalb.config.model import Config, Peer, SecretRef
from exalb.views import NodeView
from speaker.cluster_store import ClusterStore
from speaker.decision_cache import DecisionCache
from speaker.decisions import Options, decide
from speaker.exabgp.render import render_config
from speaker.exabgp.show import AdjRibEntry, NeighborStatus
from speaker.main import parse_args
from speaker.passwords import SecretPasswords, password_from_secret
from speaker.sources import with_source_addresses
from speaker.status import ConfigState, WireView, status_document

ip = ipaddress.ip_address
NS = "metallb-system"


def cfg_objects() -> list[dict[str, Any]]:
    meta = {"namespace": NS}
    return [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "p", **meta},
            "spec": {"addresses": ["203.0.113.0/24"]},
        },
        {
            "apiVersion": "metallb.io/v1beta2",
            "kind": "BGPPeer",
            "metadata": {"name": "r1", **meta},
            "spec": {"myASN": 64501, "peerASN": 64500, "peerAddress": "198.18.0.1"},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "BGPAdvertisement",
            "metadata": {"name": "a", **meta},
            "spec": {"ipAddressPools": ["p"], "communities": ["64500:1"]},
        },
    ]


def svc(name: str, ip_: str, policy: str = "Cluster") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "app", "name": name},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy},
        "status": {"loadBalancer": {"ingress": [{"ip": ip_}]}},
    }


def eps(service: str, nodes: list[str], suffix: str = "x") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "app",
            "name": f"{service}-{suffix}",
            "labels": {"kubernetes.io/service-name": service},
        },
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": n} for n in nodes],
    }


NODE = {
    "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
    "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.2"}]},
}


def loaded_world(changes: list[str] | None = None) -> ClusterStore:
    w = ClusterStore("n1", on_change=(changes.append if changes is not None else lambda _k: None))
    for i, obj in enumerate(cfg_objects()):
        w.on_config("added", f"{NS}/o{i}", None, obj)
    w.on_node("added", "n1", None, NODE)
    w.on_service("added", "app/web", None, svc("web", "203.0.113.10"))
    w.on_endpoint_slice("added", "app/web-x", None, eps("web", ["n2"]))
    w.on_service("added", "app/loc", None, svc("loc", "203.0.113.11", "Local"))
    w.on_endpoint_slice("added", "app/loc-x", None, eps("loc", ["n2"]))
    return w


def config_of(w: ClusterStore) -> Config:
    result = parse_documents(w.snapshot().config_documents, namespace=NS)
    assert result.config is not None, result.problems
    return result.config


def test_world_merges_slices_and_reports_only_real_changes() -> None:
    changes: list[str] = []
    w = loaded_world(changes)
    snap = w.snapshot()
    assert {s.key for s in snap.services} == {"app/web", "app/loc"}
    assert snap.node is not None and snap.node.name == "n1"
    assert snap.endpoints["app/web"].has_serving_on("n2")
    # a second slice of the same Service adds endpoints; deleting it removes them
    w.on_endpoint_slice("added", "app/loc-y", None, eps("loc", ["n1"], "y"))
    assert w.snapshot().endpoints["app/loc"].has_serving_on("n1")
    w.on_endpoint_slice("deleted", "app/loc-y", eps("loc", ["n1"], "y"), None)
    assert not w.snapshot().endpoints["app/loc"].has_serving_on("n1")
    # an identical update triggers nothing; another node's change does (L2 election input)
    n = len(changes)
    w.on_service("modified", "app/web", None, svc("web", "203.0.113.10"))
    assert len(changes) == n
    w.on_node("added", "n2", None, {"metadata": {"name": "n2"}})
    assert changes[n:] == ["node"]
    w.on_node("modified", "n2", None, {"metadata": {"name": "n2"}})  # a heartbeat
    assert changes[n:] == ["node"]
    assert [v.name for v in w.snapshot().nodes] == ["n1", "n2"]
    # unchanged views keep their identity (the memo relies on it)
    before = {s.key: s for s in w.snapshot().services}
    w.on_service("modified", "app/loc", None, svc("loc", "203.0.113.12", "Local"))
    after = {s.key: s for s in w.snapshot().services}
    assert after["app/web"] is before["app/web"] and after["app/loc"] is not before["app/loc"]
    w.on_service("deleted", "app/web", None, None)
    assert {s.key for s in w.snapshot().services} == {"app/loc"}


def test_memo_equals_decide_and_only_redecides_what_changed() -> None:
    w = loaded_world()
    config = config_of(w)
    memo = DecisionCache()
    snap = w.snapshot()
    assert snap.node is not None
    first = memo.decide(config, snap.node, snap.services, snap.endpoints, Options())
    assert first == decide(config, snap.node, snap.services, snap.endpoints, Options())
    assert (memo.hits, memo.misses) == (0, 2)
    w.on_endpoint_slice("modified", "app/loc-x", None, eps("loc", ["n1"]))
    snap = w.snapshot()
    assert snap.node is not None
    second = memo.decide(config, snap.node, snap.services, snap.endpoints, Options())
    assert (memo.hits, memo.misses) == (1, 1)
    assert second == decide(config, snap.node, snap.services, snap.endpoints, Options())
    assert {str(r.prefix) for r in second.routes} == {"203.0.113.10/32", "203.0.113.11/32"}
    # a node change invalidates everything
    node2 = NodeView("n1", (("kubernetes.io/hostname", "n1"), ("x", "y")))
    memo.decide(config, node2, snap.services, snap.endpoints, Options())
    assert memo.hits == 0


def test_status_says_why_and_what_is_on_the_wire() -> None:
    w = loaded_world()
    config = config_of(w)
    snap = w.snapshot()
    assert snap.node is not None
    ann = decide(config, snap.node, snap.services, snap.endpoints)
    rendered = render_config(ann.peers, snap.node, ["/bin/bridge"])
    neighbor = NeighborStatus(
        ip("198.18.0.1"), "down", "ESTABLISHED", 0, ip("198.18.0.2"), 64500, 9, ("ipv4 unicast",),
        False,
    )  # fmt: skip
    rib = {
        "198.18.0.1": {
            ipaddress.ip_network("203.0.113.10/32"): AdjRibEntry(
                ip("198.18.0.1"), ipaddress.ip_network("203.0.113.10/32"), "198.18.0.2",
                communities=("64500:1",),
            )
        }
    }  # fmt: skip
    doc = status_document(
        node="n1",
        config=ConfigState(True, False, "crd"),
        announcements=ann,
        rendered=rendered,
        wire=WireView([neighbor], rib, None, True, {"198.18.0.1": "notification received (6,2)"}),
    )
    by = {d["service"]: d for d in doc["services"]}
    assert by["app/loc"] == {
        "service": "app/loc",
        "announce": False,
        "reason": "noLocalEndpoints",
        "pool": "p",
        "advertisements": ["a"],
    }
    (route,) = by["app/web"]["routes"]
    assert route["onWire"] == "sent" and route["peerAddress"] == "198.18.0.1"
    assert route["communities"] == ["64500:1"]
    # ExaBGP's first-second "down" is not believed: the FSM says established
    assert doc["sessions"][0]["state"] == "established"
    assert doc["sessions"][0]["peer"] == "r1"
    # ExaBGP's reason the last time the session went down, next to it
    assert doc["sessions"][0]["lastDownReason"] == "notification received (6,2)"
    assert doc["adjRibOut"]["198.18.0.1"][0]["prefix"] == "203.0.113.10/32"
    assert doc["peers"][0]["configured"] is True
    # without ExaBGP's answer the state is unknown, never guessed
    doc = status_document(
        node="n1",
        config=ConfigState(True, True, "crd", ("error: x",)),
        announcements=ann,
        rendered=rendered,
        wire=WireView(error="not connected"),
        service="app/web",
    )
    assert doc["config"]["stale"] is True and doc["sessions"] is None
    assert [r["onWire"] for r in doc["services"][0]["routes"]] == ["unknown"]


def test_source_addresses_are_filled_only_where_missing() -> None:
    p1 = Peer("a", 64501, ip("198.18.0.1"), peer_asn=64500)
    p2 = Peer("b", 64501, ip("2001:db8::1"), peer_asn=64500, source_address=ip("2001:db8::9"))
    p3 = Peer("c", 64501, ip("198.18.0.5"), peer_asn=64500)
    resolved = {ip("198.18.0.1"): ip("198.18.0.2"), ip("198.18.0.5"): None}
    out = with_source_addresses([p1, p2, p3], resolved.get)
    assert [p.source_address for p in out] == [ip("198.18.0.2"), ip("2001:db8::9"), None]
    rendered = render_config(out[:1], NodeView("n1", addresses=(ip("198.18.0.2"),)), ["/b"])
    assert "local-address 198.18.0.2;" in rendered.text


def test_password_from_secret() -> None:
    ok = {
        "type": "kubernetes.io/basic-auth",
        "data": {"password": base64.b64encode(b"pw").decode()},
    }
    assert password_from_secret(ok) == ("pw", None)
    assert password_from_secret({"type": "Opaque", "data": {}})[0] is None
    assert password_from_secret({"type": "kubernetes.io/basic-auth", "data": {}})[1]


class FakeKube:
    def __init__(self) -> None:
        self.gets = 0

    def get(self, _res: object, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.gets += 1
        if name == "missing":
            return None
        return {"type": "kubernetes.io/basic-auth", "data": {"password": "cHc="}}


def test_secret_passwords_are_cached_and_problems_named() -> None:
    kube = FakeKube()
    now = [0.0]
    sp = SecretPasswords(kube, ttl=30, clock=lambda: now[0])  # type: ignore[arg-type]
    peers = [
        Peer("a", 1, ip("198.18.0.1"), peer_asn=2, password_secret=SecretRef("s", NS)),
        Peer("b", 1, ip("198.18.0.5"), peer_asn=2, password_secret=SecretRef("missing", NS)),
        Peer("c", 1, ip("198.18.0.9"), peer_asn=2, password="inline"),
    ]
    pw, problems = sp.resolve(peers)
    assert pw == {"a": "pw"}
    assert [str(p) for p in problems] == [
        f"BGPPeer/b: spec.passwordSecret: Secret {NS}/missing not found"
    ]
    sp.resolve(peers)
    assert kube.gets == 2
    now[0] = 31
    sp.resolve(peers)
    assert kube.gets == 4


def test_flags_and_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    monkeypatch.setenv("NODE_NAME", "n7")
    monkeypatch.setenv("KEEP_ROUTES_ON_EXIT", "true")
    args = parse_args([])
    assert (args.node_name, args.namespace, args.config_map) == ("n7", NS, "config")
    assert args.metrics_addr == "127.0.0.1:7473" and args.withdraw_on_exit is False
    assert parse_args(["--withdraw-on-exit"]).withdraw_on_exit is True
    args = parse_args(["--node-name", "x", "--lb-class", "c", "--ignore-exclude-lb"])
    assert (args.node_name, args.lb_class, args.ignore_exclude_lb) == ("x", "c", True)
