"""One peer ExaBGP refuses, or whose password Secret is gone, must not cost the others.

Issue 12, points 4 and 5: a ``holdTime`` ExaBGP refuses (past the parser, e.g. a model built
by another path) used to make ExaBGP refuse the whole rendered file, so a good new peer and
peer removals were never applied while ``configApplied`` stayed true; a deleted password
Secret removed its neighbor and tore the session down. Here the real ``exabgp validate``
finds the culprit, the announcer applies the rest and reports it on that BGPPeer, and a
password once known stays in use.
"""

from __future__ import annotations

import base64
import ipaddress
import sys
from pathlib import Path
from typing import Any

from exalb.config.model import Config, Peer, SecretRef
from exalb.k8s.client import ApiError
from exalb.views import NodeView
from speaker import metrics
from speaker.announcer import Inputs
from speaker.bgp import BGPAnnouncer
from speaker.decisions import Options
from speaker.exabgp.driver import exabgp_validate, scratch_validator
from speaker.exabgp.isolate import refused_neighbors, summary
from speaker.exabgp.render import REFUSED_EVENT, passwords_in_config, render_config
from speaker.passwords import SECRET_EVENT, SecretPasswords
from speaker.peer_events import PeerEvents
from speaker.status import ConfigState, WireView, status_document
from tests.unit.helpers import sync
from tests.unit.test_speaker_core import NS, loaded_world
from tests.unit.test_speaker_loop import FakeDriver

ip = ipaddress.ip_address
EXABGP = str(Path(sys.executable).parent / "exabgp")
BRIDGE = ("/usr/bin/env", "exalb-exabgp-bridge", "--socket", "/run/exalb/exabgp-bridge.sock")
NODE = NodeView(name="n1", addresses=(ip("198.51.100.2"),))


def peer(name: str, last_octet: int, **kw: Any) -> Peer:
    return Peer(name, 64501, ip(f"203.0.113.{last_octet}"), peer_asn=64500, **kw)


GOOD = (peer("a", 1), peer("c", 9), peer("d", 13))
# Built by hand: the parser refuses this since issue 12; the speaker must cope anyway.
BAD = peer("b", 5, hold_time=1_000_000)


# -- finding the culprit ------------------------------------------------------------------


@sync
async def test_real_exabgp_refuses_one_neighbor_and_it_alone_is_blamed(tmp_path: Path) -> None:
    rendered = render_config((*GOOD, BAD), NODE, BRIDGE)
    validate = scratch_validator(tmp_path / "exabgp.conf", exabgp_validate(EXABGP))
    complaint = await validate(rendered.text)
    assert complaint is not None  # the whole file is refused for one neighbor
    blamed = await refused_neighbors(rendered, validate, complaint)
    assert list(blamed) == ["b"]
    assert "65535" in blamed["b"]
    reduced = rendered.without(blamed)
    assert [n.peer_name for n in reduced.neighbors] == ["a", "c", "d"]
    assert await validate(reduced.text) is None  # the rest is a config ExaBGP runs
    assert not list(tmp_path.iterdir())  # the scratch file is gone


@sync
async def test_bisection_costs_log_n_validations_and_blames_only_what_is_refused_alone() -> None:
    peers = [peer(f"p{i:02d}", 1 + 4 * i) for i in range(16)]
    rendered = render_config(peers, NODE, BRIDGE)
    calls: list[str] = []

    def judge(bad: set[str]) -> Any:
        async def validate(text: str) -> str | None:
            calls.append(text)
            hit = [name for name in bad if f"description {name};" in text]
            return f"error: x\nrefused {','.join(sorted(hit))}" if hit else None

        return validate

    blamed = await refused_neighbors(rendered, judge({"p11"}), "whole")
    assert list(blamed) == ["p11"] and blamed["p11"] == "refused p11"
    assert len(calls) <= 1 + 2 * 4  # the head, then two halves per level of 16 = 2^4
    calls.clear()
    assert set(await refused_neighbors(rendered, judge({"p02", "p13"}), "whole")) == {
        "p02",
        "p13",
    }

    async def head_refused(text: str) -> str | None:
        return "error: bad process"

    assert await refused_neighbors(rendered, head_refused, "whole") == {}

    async def only_together(text: str) -> str | None:  # p00 and p15 clash, each alone is fine
        return "error: clash" if "p00;" in text and "p15;" in text else None

    assert await refused_neighbors(rendered, only_together, "whole") == {}


def test_summary_keeps_exabgps_reason_not_its_log_prefixes() -> None:
    text = (
        "configuration   loading /x/exabgp.conf.check\n"
        "error: /x/exabgp.conf.check is not a valid config file: \n"
        "syntax error in section neighbor\nline 9: hold-time 1000000 ;\n\n"
        "holdtime must be smaller or equal to 65535\n"
    )
    assert summary(text) == (
        "syntax error in section neighbor; line 9: hold-time 1000000 ;; "
        "holdtime must be smaller or equal to 65535"
    )
    assert len(summary("x" * 10_000)) == 300


# -- the announcer applies the rest and tells the truth -----------------------------------


class FakeSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def record(self, obj: dict[str, Any], reason: str, message: str, **_kw: Any) -> bool:
        self.events.append((obj["metadata"]["name"], reason, message))
        return True


def inputs(peers: tuple[Peer, ...]) -> Inputs:
    store = loaded_world()
    config = Config(peers=peers, source="crd")
    return Inputs(config, NODE, store.snapshot(), Options())


def announcer(driver: FakeDriver, path: Path, sink: FakeSink, **kw: Any) -> BGPAnnouncer:
    def ref(name: str) -> dict[str, Any]:
        return {"kind": "BGPPeer", "metadata": {"name": name, "namespace": NS, "uid": name}}

    events = PeerEvents(sink, ref, "n1")
    return BGPAnnouncer(
        driver,
        bridge_argv=BRIDGE,
        config_path=path,
        events=events,
        resolve_source=lambda _ip: None,  # no kernel lookup: the text is the rendered one
        **kw,
    )


@sync
async def test_a_refused_neighbor_is_left_out_reported_and_the_rest_applied(
    tmp_path: Path,
) -> None:
    driver, sink = FakeDriver(), FakeSink()
    driver.refuse_text = "hold-time 1000000"
    bgp = announcer(driver, tmp_path / "exabgp.conf", sink)
    # before: a and c run; now d is added, c removed and b (refused) added
    assert await bgp.apply(bgp.decide(inputs((GOOD[0], GOOD[1]))))
    plan = bgp.decide(inputs((GOOD[0], BAD, GOOD[2])))
    assert await bgp.apply(plan)
    assert "description d;" in driver.applied[-1]  # the good new peer is in
    assert "description c;" not in driver.applied[-1]  # the removed one is gone
    assert "description b;" not in driver.applied[-1]
    assert bgp.config_applied and metrics.CONFIG_APPLIED._value.get() == 1
    assert bgp.rendered is not None
    (problem,) = [p for p in bgp.rendered.problems if p.peer == "b"]
    assert problem.severity == "error" and problem.event == REFUSED_EVENT
    assert "65535" in str(problem)
    doc = status_document(node="n1", config=_state(), announcements=plan.announcements,
                          rendered=bgp.rendered, wire=WireView())  # fmt: skip
    assert {p["name"]: p["configured"] for p in doc["peers"]} == {"a": True, "b": False, "d": True}
    assert any(r.startswith("BGPPeer/b: spec: ExaBGP refuses") for r in doc["renderProblems"])
    assert bgp.events is not None
    bgp.events.drain()
    assert [(n, r) for n, r, _ in sink.events] == [("b", REFUSED_EVENT)]
    # the same decision again: judged once, nothing re-validated, no second event
    validations = len(driver.validated)
    assert await bgp.apply(bgp.decide(inputs((GOOD[0], BAD, GOOD[2]))))
    bgp.events.drain()
    assert len(driver.validated) == validations and len(sink.events) == 1


@sync
async def test_a_config_refused_as_a_whole_keeps_the_old_one_and_says_so(tmp_path: Path) -> None:
    driver, sink = FakeDriver(), FakeSink()
    bgp = announcer(driver, tmp_path / "exabgp.conf", sink)
    assert await bgp.apply(bgp.decide(inputs(GOOD)))
    good_text = driver.applied[-1]
    driver.refuse = True  # even the head alone: no neighbor to blame
    assert await bgp.apply(bgp.decide(inputs(GOOD[:2])))  # a retry would not help
    assert bgp.applied_text == good_text and not bgp.config_applied
    assert metrics.CONFIG_APPLIED._value.get() == 0
    assert bgp.rendered is not None
    assert [n.peer_name for n in bgp.rendered.neighbors] == ["a", "c", "d"]  # what runs
    assert any("previous config stays in force" in str(p) for p in bgp.rendered.errors)
    validations = len(driver.validated)
    assert await bgp.apply(bgp.decide(inputs(GOOD[:2])))
    assert len(driver.validated) == validations  # not judged again


def _state() -> ConfigState:
    return ConfigState(True, False, "crd")


# -- a deleted Secret keeps the last known password ---------------------------------------


class SecretKube:
    """``get`` of one Secret, which can be deleted (404 is ``None``) or made to fail."""

    def __init__(self) -> None:
        self.secret: dict[str, Any] | None = {
            "type": "kubernetes.io/basic-auth",
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        }
        self.error: Exception | None = None

    def get(self, _res: object, name: str, namespace: str | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.secret


SECRET_PEER = peer("s", 17, password_secret=SecretRef("bgp-pw", NS))


@sync
async def test_a_deleted_secret_keeps_the_session_with_the_last_known_password(
    tmp_path: Path,
) -> None:
    kube, now = SecretKube(), [0.0]
    passwords = SecretPasswords(kube, ttl=30, clock=lambda: now[0])  # type: ignore[arg-type]
    driver, sink = FakeDriver(), FakeSink()
    bgp = announcer(driver, tmp_path / "exabgp.conf", sink, passwords=passwords)
    assert await bgp.apply(bgp.decide(inputs((SECRET_PEER,))))
    with_password = driver.applied[-1]
    assert passwords_in_config(with_password) == {"s": "s3cret"}
    kube.secret = None  # kubectl delete secret bgp-pw
    now[0] = 31  # the cache expired: the Secret is read again and is gone
    plan = bgp.decide(inputs((SECRET_PEER,)))
    assert await bgp.apply(plan)
    assert plan.rendered.text == with_password  # same neighbor, same password: no reload
    assert driver.applied == [with_password]
    (problem,) = plan.rendered.problems
    assert problem.severity == "warning" and problem.event == SECRET_EVENT
    assert "not found; the last known password stays in use" in str(problem)
    assert metrics.PASSWORD_STALE.labels("s")._value.get() == 1
    assert bgp.events is not None
    bgp.events.drain()
    assert [(n, r) for n, r, _ in sink.events] == [("s", SECRET_EVENT)]
    # the Secret is back: the warning and the metric clear
    kube.secret = {"type": "kubernetes.io/basic-auth", "data": {"password": "bmV3"}}
    now[0] = 62
    plan = bgp.decide(inputs((SECRET_PEER,)))
    assert plan.rendered.problems == () and passwords_in_config(plan.rendered.text) == {"s": "new"}
    assert metrics.PASSWORD_STALE.labels("s")._value.get() == 0


@sync
async def test_a_restarted_speaker_keeps_the_password_of_the_file_exabgp_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exabgp.conf"
    path.write_text(render_config((SECRET_PEER,), NODE, BRIDGE, {"s": "s3cret"}).text)
    kube = SecretKube()
    kube.secret = None  # deleted while the speaker was restarting
    driver = FakeDriver()
    bgp = announcer(driver, path, FakeSink(), passwords=SecretPasswords(kube))  # type: ignore[arg-type]
    plan = bgp.decide(inputs((SECRET_PEER,)))
    assert plan.rendered.text == path.read_text()  # the session is not touched
    (problem,) = plan.rendered.problems
    assert problem.severity == "warning" and "the password ExaBGP runs with" in str(problem)


def test_api_errors_keep_the_last_known_password_too() -> None:
    kube, now = SecretKube(), [0.0]
    passwords = SecretPasswords(kube, ttl=30, clock=lambda: now[0])  # type: ignore[arg-type]
    assert passwords.resolve([SECRET_PEER]) == ({"s": "s3cret"}, [])
    for error in (ApiError(403, "forbidden"), ApiError(503, "unavailable")):
        kube.error = error
        now[0] += 31
        found, problems = passwords.resolve([SECRET_PEER])
        assert found == {"s": "s3cret"}
        assert [p.severity for p in problems] == ["warning"]
    kube.error, kube.secret = None, {"type": "Opaque", "data": {}}  # edited into nonsense
    now[0] += 31
    found, problems = passwords.resolve([SECRET_PEER])
    assert found == {"s": "s3cret"} and "stays in use" in str(problems[0])
