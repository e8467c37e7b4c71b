"""The speaker's L2 wiring without a network: election memo, state publisher, events and
metrics (:mod:`speaker.l2.announcer`), the ``/status`` L2 section, the flag, and node addresses."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from exalb.config.model import BGPAdvertisement, Config, L2Advertisement, Pool
from exalb.contracts.l2_state import Status, decode, encode_status
from exalb.filechannel import write_atomic
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView, node_view
from speaker.announcer import Inputs
from speaker.cluster_store import Snapshot
from speaker.decisions import Options, decide
from speaker.l2.announcer import ANNOUNCE_FAILED, NODE_ASSIGNED, L2Announcer, owned_services
from speaker.l2.election import NO_LOCAL_ENDPOINTS, NOT_OWNER, IPElection, elect
from speaker.l2.election_cache import ElectionCache
from speaker.l2.publisher import StatePublisher
from speaker.main import parse_args
from speaker.status import ConfigState, L2View, WireView, status_document

ip = ipaddress.ip_address
L2_POOL = Pool("l2", cidrs=(ipaddress.ip_network("198.51.100.48/28"),))
BGP_POOL = Pool("bgp", cidrs=(ipaddress.ip_network("203.0.113.0/24"),))
CONFIG = Config(
    pools=(L2_POOL, BGP_POOL),
    l2_advertisements=(L2Advertisement("l2", ("l2",)),),
    bgp_advertisements=(BGPAdvertisement("bgp", ("bgp", "l2")),),
)
NODES = tuple(
    NodeView(n, addresses=(ip(f"198.51.100.{11 + i}"),)) for i, n in enumerate(("n1", "n2", "n3"))
)


def svc(name: str, addr: str, policy: str = "Cluster", share: str | None = None) -> ServiceView:
    return ServiceView(
        "app",
        name,
        assigned_ips=(ip(addr),),
        traffic_policy="Local" if policy == "Local" else "Cluster",
        sharing_key=share,
    )


def eps(name: str, *on: str) -> EndpointsView:
    return EndpointsView("app", name, tuple(Endpoint(("10.0.0.1",), n, ready=True) for n in on))


def owner_of(addr: str, nodes: tuple[NodeView, ...] = NODES) -> str:
    (e,) = elect(CONFIG, [(svc("x", addr), eps("x", "n1", "n2", "n3"))], nodes)
    assert e.owner is not None
    return e.owner


def decide_l2(
    layer: L2Announcer,
    config: Config,
    services: list[ServiceView],
    endpoints: dict[str, EndpointsView],
    nodes: tuple[NodeView, ...],
) -> tuple[IPElection, ...]:
    """The announcer's decision for a speaker without a loadBalancerClass."""
    snap = Snapshot(tuple(services), endpoints, nodes[0], (), 0, nodes)
    return layer.decide(Inputs(config, nodes[0], snap, Options())).elections


# -- memo ---------------------------------------------------------------------------------------


def test_election_memo_equals_elect_and_only_reelects_what_changed() -> None:
    services = [
        svc("a", "198.51.100.50"),
        svc("b", "198.51.100.51", "Local"),
        svc("s1", "198.51.100.52", "Local", share="k"),  # shared IP: one merged ranking
        svc("s2", "198.51.100.52", "Local", share="k"),
        svc("bgp", "203.0.113.9"),  # not L2: not elected
    ]
    endpoints = {
        "app/a": eps("a", "n1", "n2", "n3"),
        "app/b": eps("b", "n2"),
        "app/s1": eps("s1", "n1"),
        "app/s2": eps("s2", "n3"),
    }
    want = elect(CONFIG, [(s, endpoints.get(s.key) or eps(s.name)) for s in services], NODES)
    memo = ElectionCache()
    assert memo.elect(CONFIG, services, endpoints, NODES) == want
    assert (memo.hits, memo.misses) == (0, 5)
    shared = next(e for e in want if e.ip == ip("198.51.100.52"))
    assert shared.services == ("app/s1", "app/s2") and set(shared.candidates) == {"n1", "n3"}
    # one Service's endpoints change: one re-election, same answer as elect()
    endpoints["app/b"] = eps("b", "n3")
    got = memo.elect(CONFIG, services, endpoints, NODES)
    assert (memo.hits, memo.misses) == (4, 1)
    assert got == elect(CONFIG, [(s, endpoints.get(s.key) or eps(s.name)) for s in services], NODES)
    # any Node change invalidates everything (the ranking's candidates changed)
    fewer = NODES[:2]
    memo.elect(CONFIG, services, endpoints, fewer)
    assert memo.misses == 5


# -- publisher ----------------------------------------------------------------------------------


def test_publisher_writes_only_changes_and_never_goes_back_in_generation(tmp_path: Path) -> None:
    path = tmp_path / "run" / "l2-state.json"
    services = [(svc("a", "198.51.100.50"), eps("a", "n1", "n2", "n3"))]
    elections = elect(CONFIG, services, NODES)
    pub = StatePublisher(path, "n2")
    assert pub.generation == 0 and not pub.published
    assert pub.publish(elections, NODES) is True
    doc = decode(path.read_bytes())
    assert (doc.node, doc.generation) == ("n2", 1)
    (entry,) = doc.ips
    assert [c.node for c in entry.candidates] == list(elections[0].candidates)
    assert {c.node: str(c.node_ip) for c in entry.candidates}["n1"] == "198.51.100.11"
    mtime = path.stat().st_mtime_ns
    assert pub.publish(elect(CONFIG, services, NODES), NODES) is False  # same content
    assert path.stat().st_mtime_ns == mtime
    # a restarted speaker continues the generation and rewrites nothing when unchanged
    again = StatePublisher(path, "n2")
    assert (again.generation, again.published) == (1, True)
    assert again.publish(elections, NODES) is False
    changed = elect(CONFIG, [(svc("a", "198.51.100.50", "Local"), eps("a", "n1"))], NODES)
    assert again.publish(changed, NODES) is True
    assert decode(path.read_bytes()).generation == 2
    # the sidecar's report is read back; garbage is "no report"
    assert again.sidecar_status() is None
    write_atomic(again.status_path, encode_status(Status("n2", 2, (ip("198.51.100.50"),))))
    st = again.sidecar_status()
    assert st is not None and st.answering == (ip("198.51.100.50"),)
    again.status_path.write_text("{")
    assert again.sidecar_status() is None


# -- events and metrics -------------------------------------------------------------------------


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []
        self.forgotten: list[str] = []

    def record(
        self,
        obj: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        dedupe: bool = True,
    ) -> bool:
        self.recorded.append((obj["metadata"]["name"], reason, message))
        return True

    def forget(self, obj: dict[str, Any]) -> None:
        self.forgotten.append(obj["metadata"]["name"])


def _ref(key: str) -> dict[str, Any]:
    ns, _, name = key.partition("/")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name}}


def _owned_metric(addr: str) -> float | None:
    return REGISTRY.get_sample_value("exalb_speaker_l2_owned", {"ip": addr})


def test_only_the_new_owner_emits_node_assigned_and_sets_the_metric(tmp_path: Path) -> None:
    addr = "198.51.100.53"
    owner = owner_of(addr)
    other = next(n.name for n in NODES if n.name != owner)
    layers = {}
    fakes = {}
    for n in (owner, other):
        fakes[n] = FakeEvents()
        layers[n] = L2Announcer(n, tmp_path / f"{n}.json", events=fakes[n], service_ref=_ref)
    services = [svc("web", addr)]
    for layer in layers.values():
        el = decide_l2(layer, CONFIG, services, {"app/web": eps("web", "n1", "n2", "n3")}, NODES)
        layer.publish(el, NODES)
        layer.drain_events()
    message = f"announcing from node {owner} with protocol layer2"
    assert fakes[owner].recorded == [("web", NODE_ASSIGNED, message)]
    assert fakes[other].recorded == []
    assert _owned_metric(addr) in (0.0, 1.0)  # both layers share the process registry
    # ETP Local with the only endpoint on `other`: ownership moves there
    for layer in layers.values():
        el = decide_l2(
            layer, CONFIG, [svc("web", addr, "Local")], {"app/web": eps("web", other)}, NODES
        )
        layer.publish(el, NODES)
        layer.drain_events()
    assert fakes[other].recorded[-1] == ("web", NODE_ASSIGNED, message.replace(owner, other))
    assert fakes[owner].forgotten == ["web"]  # so moving back emits again
    assert _owned_metric(addr) == 1.0  # `other` applied last
    # the IP is no longer L2-advertised: its series goes away
    layers[other].publish((), NODES)
    assert _owned_metric(addr) is None
    for layer in layers.values():
        layer.close()


def test_l2_announcer_filters_the_load_balancer_class(tmp_path: Path) -> None:
    layer = L2Announcer("n1", tmp_path / "s.json")
    classy = ServiceView("app", "c", assigned_ips=(ip("198.51.100.54"),), load_balancer_class="x")
    el = decide_l2(layer, CONFIG, [classy], {"app/c": eps("c", "n1")}, NODES)
    assert el == ()
    layer.close()


# -- /status ------------------------------------------------------------------------------------


def test_status_l2_section_and_per_service_decision() -> None:
    services = [svc("web", "198.51.100.50"), svc("loc", "198.51.100.51", "Local"),
                svc("bgp", "203.0.113.7")]  # fmt: skip
    endpoints = {"app/web": eps("web", "n1", "n2", "n3"), "app/loc": eps("loc", "n3"),
                 "app/bgp": eps("bgp", "n1")}  # fmt: skip
    elections = elect(CONFIG, [(s, endpoints[s.key]) for s in services], NODES)
    web = next(e for e in elections if e.services == ("app/web",))
    me = web.candidates[1]  # a standby for web
    ann = decide(CONFIG, NODES[0], services, endpoints)
    # it took over web
    sidecar = Status(me, 3, (ip("198.51.100.50"),), (("n1", True),), interfaces=("eth1",))
    doc = status_document(
        node=me,
        config=ConfigState(True, False, "crd"),
        announcements=ann,
        rendered=None,
        wire=WireView(error="not connected"),
        l2=L2View("/run/exalb/l2-state.json", 3, elections, sidecar),
    )
    l2 = doc["l2"]
    assert (l2["stateFile"], l2["generation"]) == ("/run/exalb/l2-state.json", 3)
    assert l2["sidecar"] == {"generation": 3, "peers": {"n1": True}, "interfaces": ["eth1"]}
    by_ip = {x["ip"]: x for x in l2["ips"]}
    assert by_ip["198.51.100.50"] == {
        "ip": "198.51.100.50",
        "services": ["app/web"],
        "owner": web.owner,
        "rank": 1,
        "candidates": list(web.candidates),
        "answering": True,
        "reason": NOT_OWNER,
    }
    loc = by_ip["198.51.100.51"]
    assert loc["owner"] == "n3" and loc["candidates"] == ["n3"]
    if me != "n3":
        assert (loc["rank"], loc["reason"], loc["answering"]) == (None, NO_LOCAL_ENDPOINTS, False)
    svcs = {d["service"]: d for d in doc["services"]}
    assert svcs["app/web"]["l2"] == {"announce": False, "reason": NOT_OWNER, "owner": web.owner}
    assert "l2" not in svcs["app/bgp"]  # not L2-advertised
    # BGP decides independently (the pool has both kinds): every BGP check passed, there is
    # just no peer in this config
    assert svcs["app/web"]["reason"] == "noPeers"
    # narrowed to one Service; L2 off: nothing answered, nothing claimed
    doc = status_document(
        node=me, config=ConfigState(), announcements=ann, rendered=None,
        wire=WireView(), service="app/loc",
        l2=L2View(None, None, elections, sidecar),
    )  # fmt: skip
    assert [x["ip"] for x in doc["l2"]["ips"]] == ["198.51.100.51"]
    assert doc["l2"]["ips"][0]["answering"] is None and doc["l2"]["sidecar"] is None
    off = status_document(node=me, config=ConfigState(), announcements=None, rendered=None,
                          wire=WireView())  # fmt: skip
    assert off["l2"] == {"stateFile": None, "generation": None, "sidecar": None, "ips": []}


def test_owned_services() -> None:
    addr = "198.51.100.55"
    el = elect(CONFIG, [(svc("w", addr), eps("w", "n1", "n2", "n3"))], NODES)
    assert owned_services(el, owner_of(addr)) == {"app/w"}
    assert owned_services(el, "nobody") == frozenset()


# -- flag and node addresses --------------------------------------------------------------------


def test_l2_state_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--node-name", "n1"]).l2_state is None  # off by default
    assert parse_args(["--node-name", "n1", "--l2-state=/x/s.json"]).l2_state == "/x/s.json"
    monkeypatch.setenv("L2_STATE", "/run/exalb/l2-state.json")
    assert parse_args(["--node-name", "n1"]).l2_state == "/run/exalb/l2-state.json"


def test_node_view_puts_internal_ips_first() -> None:
    view = node_view(
        {
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "ExternalIP", "address": "203.0.113.5"},
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "198.51.100.11"},
                    {"type": "InternalIP", "address": "2001:db8:50::11"},
                ]
            },
        }
    )
    assert view.addresses == (ip("198.51.100.11"), ip("2001:db8:50::11"), ip("203.0.113.5"))


def test_a_status_left_by_a_dead_sidecar_does_not_read_as_answering(tmp_path: Path) -> None:
    now = [1_000_000.0]
    pub = StatePublisher(tmp_path / "l2-state.json", "n2", wall=lambda: now[0])
    fresh = Status("n2", 2, (ip("198.51.100.50"),), written=now[0] - 1.0)
    write_atomic(pub.status_path, encode_status(fresh))
    assert pub.sidecar_status() == fresh
    now[0] += 10.0  # the sidecar rewrites every second; this one stopped
    assert pub.sidecar_status() is None


@pytest.mark.parametrize(("present", "failed"), [({"eth1"}, False), ({"eth0"}, True)])
def test_announce_failed_when_no_advertised_interface_exists(
    tmp_path: Path, present: set[str], failed: bool
) -> None:
    addr = "198.51.100.55"
    owner = owner_of(addr)
    config = Config(
        pools=(L2_POOL,), l2_advertisements=(L2Advertisement("l2", ("l2",), interfaces=("eth1",)),)
    )
    fake = FakeEvents()
    layer = L2Announcer(owner, tmp_path / "s.json", events=fake, service_ref=_ref,
                   local_interfaces=lambda: present)  # fmt: skip
    el = decide_l2(
        layer, config, [svc("web", addr)], {"app/web": eps("web", "n1", "n2", "n3")}, NODES
    )
    layer.publish(el, NODES)
    layer.drain_events()
    reasons = [r for _, r, _ in fake.recorded]
    assert reasons == ([NODE_ASSIGNED, ANNOUNCE_FAILED] if failed else [NODE_ASSIGNED])
    if failed:
        assert f"eth1 from the L2Advertisement do not exist on node {owner}" in fake.recorded[1][2]
    layer.close()
