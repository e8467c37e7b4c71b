"""A Local Service's new path waits for kube-proxy (speaker.proxy_hold, speaker.proxy_gate):
which paths are held, what releases them, and how kube-proxy's answer is read."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import replace

import pytest

from exalb.config.model import BGPAdvertisement, Config, Peer, Pool
from exalb.contracts.speaker_status import Reason
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView, service_view
from speaker.decisions import Announcements, decide
from speaker.main import parse_args
from speaker.proxy_gate import ProxyGate, ask_kube_proxy
from speaker.proxy_hold import REFUSED_GRACE, Check, HoldState, Verdict, hold, verdict_of
from tests.unit.helpers import sync

ip = ipaddress.ip_address
PEER = Peer(name="r1", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"))
CONFIG = Config(
    pools=(Pool(name="prod", cidrs=(ipaddress.ip_network("203.0.113.0/24"),)),),
    peers=(PEER,),
    bgp_advertisements=(BGPAdvertisement(name="ad", pools=("prod",)),),
    source="crd",
)
NODE = NodeView(name="n1", addresses=(ip("198.18.0.2"),))
LOCAL = ServiceView(namespace="ns", name="web", traffic_policy="Local",
                    assigned_ips=(ip("203.0.113.10"),), health_check_node_port=31000)  # fmt: skip
CLUSTER = ServiceView(namespace="ns", name="api", assigned_ips=(ip("203.0.113.11"),))
SERVICES = (LOCAL, CLUSTER)
MAX_HOLD = 10.0


def announcements(services: tuple[ServiceView, ...] = SERVICES) -> Announcements:
    eps = {s.key: EndpointsView("ns", s.name, (Endpoint(("10.0.0.1",), "n1"),)) for s in services}
    return decide(CONFIG, NODE, services, eps)


def started() -> HoldState:
    """After a first computation in which no Service was announced."""
    return hold(announcements(()), (), NODE, HoldState(), {}, 0.0, MAX_HOLD).state


def decision(ann: Announcements, key: str) -> tuple[bool, Reason | None]:
    d = next(d for d in ann.decisions if d.service == key)
    return d.announce, d.reason


def test_first_computation_holds_nothing_what_exabgp_may_still_announce_stays() -> None:
    ann = announcements()
    result = hold(ann, SERVICES, NODE, HoldState(), {}, 0.0, MAX_HOLD)
    assert result.announcements == ann
    assert result.state.in_force == {LOCAL.key}
    assert not result.checks


def test_a_new_local_path_is_held_and_checked_at_kube_proxy_on_the_node_address() -> None:
    result = hold(announcements(), SERVICES, NODE, started(), {}, 5.0, MAX_HOLD)
    assert decision(result.announcements, LOCAL.key) == (False, Reason.PROXY_NOT_READY)
    assert decision(result.announcements, CLUSTER.key) == (True, None)  # Cluster: never held
    assert {str(r.prefix) for r in result.announcements.routes} == {"203.0.113.11/32"}
    assert result.checks == (Check(LOCAL.key, "198.18.0.2", 31000),)
    assert result.held == (LOCAL.key,)
    assert result.deadline == 15.0
    warning = next(d for d in result.announcements.decisions if d.service == LOCAL.key).warnings
    assert "kube-proxy" in warning[-1] and "10 s" in warning[-1]


def test_kube_proxy_ready_or_no_health_check_releases_the_path() -> None:
    held = hold(announcements(), SERVICES, NODE, started(), {}, 0.0, MAX_HOLD).state
    for verdict in (Verdict.READY, Verdict.UNAVAILABLE):
        result = hold(announcements(), SERVICES, NODE, held, {LOCAL.key: verdict}, 1.0, MAX_HOLD)
        assert decision(result.announcements, LOCAL.key) == (True, None)
        assert result.released == ((LOCAL.key, verdict, 1.0),)
        assert not result.checks and result.deadline is None
        assert LOCAL.key in result.state.in_force


def test_zero_local_endpoints_keeps_the_hold_until_it_runs_out() -> None:
    state = hold(announcements(), SERVICES, NODE, started(), {}, 0.0, MAX_HOLD).state
    not_ready = {LOCAL.key: Verdict.NOT_READY}
    result = hold(announcements(), SERVICES, NODE, state, not_ready, 9.9, MAX_HOLD)
    assert decision(result.announcements, LOCAL.key)[0] is False
    assert result.deadline == 10.0  # from when the path was first wanted, not from now
    result = hold(announcements(), SERVICES, NODE, result.state, not_ready, 10.0, MAX_HOLD)
    assert decision(result.announcements, LOCAL.key) == (True, None)
    assert result.released == ((LOCAL.key, None, 10.0),)  # None: ran out


def test_a_path_in_force_is_never_held_again_and_a_path_that_left_starts_over() -> None:
    state = hold(announcements(), SERVICES, NODE, HoldState(), {}, 0.0, MAX_HOLD).state
    again = hold(announcements(), SERVICES, NODE, state, {}, 1.0, MAX_HOLD)
    assert decision(again.announcements, LOCAL.key) == (True, None)  # kube-proxy not asked
    gone = hold(announcements((CLUSTER,)), (CLUSTER,), NODE, again.state, {}, 2.0, MAX_HOLD)
    assert gone.state.in_force == frozenset()
    back = hold(announcements(), SERVICES, NODE, gone.state, {}, 3.0, MAX_HOLD)
    assert decision(back.announcements, LOCAL.key) == (False, Reason.PROXY_NOT_READY)


def test_nothing_to_ask_releases_at_once() -> None:
    no_port = replace(LOCAL, health_check_node_port=None)
    for services, node in (((no_port, CLUSTER), NODE), (SERVICES, replace(NODE, addresses=()))):
        result = hold(announcements(services), services, node, started(), {}, 0.0, MAX_HOLD)
        assert decision(result.announcements, LOCAL.key) == (True, None)
        assert result.released == ((LOCAL.key, Verdict.UNAVAILABLE, 0.0),)


def test_service_view_reads_the_health_check_node_port() -> None:
    obj = {"metadata": {"name": "web", "namespace": "ns"},
           "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}}  # fmt: skip
    assert service_view(obj).health_check_node_port is None
    for raw, want in ((31000, 31000), ("31000", None), (True, None), (0, None), (70000, None)):
        obj["spec"]["healthCheckNodePort"] = raw  # type: ignore[index]
        assert service_view(obj).health_check_node_port == want, raw


def answer(status: str, body: object) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\r\n".encode() + (
        body if isinstance(body, bytes) else json.dumps(body).encode()
    )


def kube_proxy(count: object, ns: str = "ns", name: str = "web") -> dict[str, object]:
    """kube-proxy's health-check body (pkg/proxy/healthcheck)."""
    return {"service": {"namespace": ns, "name": name}, "localEndpoints": count,
            "serviceProxyHealthy": True}  # fmt: skip


def test_verdict_of_kube_proxys_answer_and_of_anything_else() -> None:
    key = LOCAL.key
    assert verdict_of(answer("200 OK", kube_proxy(2)), key) is Verdict.READY
    assert verdict_of(answer("503 Service Unavailable", kube_proxy(0)), key) is Verdict.NOT_READY
    # 503 with endpoints: kube-proxy's own health is stale, its rules hold them
    assert verdict_of(answer("503 Service Unavailable", kube_proxy(1)), key) is Verdict.READY
    for bad in (
        answer("200 OK", kube_proxy(1, name="other")),  # another Service's check
        answer("200 OK", kube_proxy(True)),
        answer("200 OK", kube_proxy("1")),
        answer("200 OK", [1]),
        answer("200 OK", b"{not json"),
        answer("200 OK", b"[" * 100_000),  # cut at MAX_ANSWER: not JSON
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"",
    ):
        assert verdict_of(bad, key) is Verdict.UNAVAILABLE, bad[:40]


async def _serve(reply: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@sync
async def test_ask_kube_proxy_over_http_and_a_closed_port_is_refused() -> None:
    server, port = await _serve(answer("200 OK", kube_proxy(1)))
    async with server:
        assert await ask_kube_proxy(Check(LOCAL.key, "127.0.0.1", port), 2.0) is Verdict.READY
    assert await ask_kube_proxy(Check(LOCAL.key, "127.0.0.1", port), 2.0) is Verdict.REFUSED


@sync
async def test_ask_kube_proxy_gives_up_on_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        check = Check(LOCAL.key, "127.0.0.1", server.sockets[0].getsockname()[1])
        assert await ask_kube_proxy(check, 0.2) is Verdict.UNAVAILABLE


@sync
async def test_gate_asks_until_kube_proxy_is_ready_and_wakes_the_loop_on_each_new_verdict() -> None:
    answers = [Verdict.REFUSED, Verdict.NOT_READY, Verdict.NOT_READY, Verdict.READY]
    asked: list[Check] = []
    woken = asyncio.Event()

    async def probe(check: Check, timeout: float) -> Verdict:
        asked.append(check)
        return answers.pop(0) if answers else Verdict.READY

    gate = ProxyGate(MAX_HOLD, probe=probe, interval=0.01)
    gate.on_change = woken.set
    runner = asyncio.create_task(gate.run())
    await asyncio.sleep(0)
    first = gate.apply(announcements(), SERVICES, NODE)  # first computation: nothing held
    assert decision(first, LOCAL.key) == (True, None)
    assert decision(gate.apply(announcements((CLUSTER,)), (CLUSTER,), NODE), CLUSTER.key)[0]
    wakes = 0
    while decision(ann := gate.apply(announcements(), SERVICES, NODE), LOCAL.key)[0] is False:
        assert ann.routes == announcements((CLUSTER,)).routes
        await asyncio.wait_for(woken.wait(), 5)
        woken.clear()
        wakes += 1
    assert wakes == 3  # refused, not ready (the repeat wakes nobody), ready
    assert len(asked) == 4 and set(asked) == {Check(LOCAL.key, "198.18.0.2", 31000)}
    runner.cancel()


def test_a_refused_check_holds_briefly_until_kube_proxy_has_answered_here_then_fully() -> None:
    refused = {LOCAL.key: Verdict.REFUSED}
    state = hold(announcements(), SERVICES, NODE, started(), {}, 0.0, MAX_HOLD).state
    result = hold(announcements(), SERVICES, NODE, state, refused, 0.1, MAX_HOLD)
    assert result.held == (LOCAL.key,) and result.deadline == REFUSED_GRACE
    result = hold(announcements(), SERVICES, NODE, result.state, refused, REFUSED_GRACE, MAX_HOLD)
    assert result.released == ((LOCAL.key, Verdict.REFUSED, REFUSED_GRACE),)
    # once a check on this node had kube-proxy's answer, a refusal is "not yet"
    other = replace(LOCAL, name="other", assigned_ips=(ip("203.0.113.12"),),
                    health_check_node_port=31001)  # fmt: skip
    services = (LOCAL, other)
    state = hold(announcements(()), (), NODE, HoldState(), {}, 0.0, MAX_HOLD).state
    seen = {LOCAL.key: Verdict.NOT_READY, other.key: Verdict.REFUSED}
    result = hold(announcements(services), services, NODE, state, seen, 0.0, MAX_HOLD)
    result = hold(announcements(services), services, NODE, result.state, seen, 5.0, MAX_HOLD)
    assert result.state.answered and result.held == (other.key, LOCAL.key)
    assert result.deadline == MAX_HOLD


def test_the_speaker_flag_defaults_to_10_s_and_refuses_absurd_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROXY_HOLD_SECONDS", raising=False)
    assert parse_args(["--node-name", "n1"]).proxy_hold_seconds == 10.0
    assert parse_args(["--node-name", "n1", "--proxy-hold-seconds", "0"]).proxy_hold_seconds == 0
    for bad in ("-1", "301", "1e9"):
        with pytest.raises(SystemExit):
            parse_args(["--node-name", "n1", "--proxy-hold-seconds", bad])
