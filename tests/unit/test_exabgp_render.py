"""Golden-file tests of the rendered exabgp.conf; every golden file also passes ExaBGP's own
``exabgp validate -n`` (5.0.15), so a golden can never encode a config ExaBGP would refuse.

Regenerate after an intended change:
``EXALB_UPDATE_GOLDEN=1 pytest tests/unit/test_exabgp_render.py``.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import exabgp_conf
from exalb.config.model import LabelSelector, Peer, SecretRef
from exalb.views import NodeView
from speaker.exabgp.launch import exabgp_argv, instance_environment
from speaker.exabgp.render import config_head, fill, render_config

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]
EXABGP = Path(sys.executable).parent / "exabgp"
# /usr/bin/env exists everywhere, so `exabgp validate` (which checks that `run` names an
# existing program) accepts the goldens without patching them.
BRIDGE = ("/usr/bin/env", "exalb-exabgp-bridge", "--socket", "/run/exalb/exabgp-bridge.sock")
ip = ipaddress.ip_address

NODE = NodeView(name="node-1", addresses=(ip("2001:db8:1::2"), ip("198.18.0.2")))
EBGP = Peer(name="tor", my_asn=64501, peer_asn=64500, peer_address=ip("198.18.0.1"))
FULL_V4 = Peer(
    name="tor-a",
    my_asn=64501,
    peer_asn=64500,
    peer_address=ip("198.51.100.1"),
    peer_port=1790,
    source_address=ip("198.51.100.2"),
    router_id=ipaddress.IPv4Address("198.18.0.99"),
    hold_time=3,
    keepalive_time=2,
    ebgp_multihop=True,
    password='s3cret pass;with"quotes',
    node_selectors=(LabelSelector((("rack", "a"),)),),
    enable_graceful_restart=True,
)
IBGP_V6 = Peer(
    name="rr-v6",
    my_asn=64500,
    peer_asn=64500,
    peer_address=ip("2001:db8:1::1"),
    source_address=ip("2001:db8:1::2"),
    hold_time=30,
)
DYNAMIC = Peer(
    name="dyn",
    my_asn=64501,
    dynamic_asn="external",
    peer_address=ip("203.0.113.1"),
    password_secret=SecretRef("bgp-pw", "metallb-system"),
)

CASES: dict[str, tuple[tuple[Peer, ...], dict[str, str]]] = {
    "empty": ((), {}),
    "ebgp_v4_defaults": ((EBGP,), {}),
    "mixed": ((IBGP_V6, DYNAMIC, FULL_V4, EBGP), {"dyn": "deadbeef"}),
}


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXABGP_ROOT=str(path.parent))
    return subprocess.run(
        [str(EXABGP), "validate", "-n", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, tmp_path: Path) -> None:
    peers, passwords = CASES[name]
    rendered = render_config(peers, NODE, BRIDGE, passwords)
    assert not rendered.errors, rendered.errors
    golden = GOLDEN / f"{name}.conf"
    if os.environ.get("EXALB_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered.text)
    assert rendered.text == golden.read_text()
    copy = tmp_path / golden.name
    copy.write_text(golden.read_text())
    res = _validate(copy)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_golden_file_is_valid_for_exabgp(tmp_path: Path) -> None:
    files = sorted(GOLDEN.glob("*.conf"))
    assert files
    for f in files:
        copy = tmp_path / f.name
        copy.write_text(f.read_text())
        res = _validate(copy)
        assert res.returncode == 0, f"{f.name}: {res.stdout}{res.stderr}"


def test_validation_catches_a_broken_config(tmp_path: Path) -> None:
    """Guard against a validator that accepts anything (e.g. a wrong invocation)."""
    bad = tmp_path / "bad.conf"
    bad.write_text(config_head(BRIDGE, "n1") + "neighbor 198.18.0.1 { local-as 1; }\n")
    assert _validate(bad).returncode != 0


def test_mixed_mapping_details() -> None:
    rendered = render_config(CASES["mixed"][0], NODE, BRIDGE, CASES["mixed"][1])
    by_name = {n.peer_name: n for n in rendered.neighbors}
    full = by_name["tor-a"].block
    assert "connect 1790;" in full and "outgoing-ttl 255;" in full
    assert "manual-eor true;" in full and "graceful-restart 120;" in full
    assert "router-id 198.18.0.99;" in full and "local-address 198.51.100.2;" in full
    assert 'md5-password "czNjcmV0IHBhc3M7d2l0aCJxdW90ZXM=";' in full
    assert "md5-base64 true;" in full
    assert "hold-time 3;" in full
    v6 = by_name["rr-v6"].block
    assert "family { ipv6 unicast; }" in v6 and "outgoing-ttl" not in v6
    assert "router-id 198.18.0.2;" in v6  # node's IPv4 address, not its first address
    assert "peer-as auto;" in by_name["dyn"].block
    ebgp = by_name["tor"].block
    assert "hold-time 90;" in ebgp and "outgoing-ttl" not in ebgp
    assert "local-address" not in ebgp  # ExaBGP picks it (auto)
    assert [n.address for n in rendered.neighbors] == [
        "198.18.0.1", "198.51.100.1", "203.0.113.1", "2001:db8:1::1"
    ]  # fmt: skip
    assert {(p.peer, p.field) for p in rendered.problems} == {
        ("tor-a", "spec.keepaliveTime"),
        ("dyn", "spec.dynamicASN"),
    }
    assert all(p.severity == "warning" for p in rendered.problems)


@dataclass(frozen=True)
class _PeerWithUnsupported(Peer):
    """Stands in for model fields (connectTime, vrf) the parsers may add."""

    connect_time: int | None = None
    vrf: str | None = None


def test_problems_are_reported_not_dropped() -> None:
    unsupported = _PeerWithUnsupported(
        name="u", my_asn=1, peer_asn=2, peer_address=ip("198.18.0.1"),
        connect_time=5, bfd_profile="fast", vrf="red",
    )  # fmt: skip
    no_rid = Peer(name="v6only", my_asn=1, peer_asn=2, peer_address=ip("2001:db8::1"))
    dup = Peer(name="dup", my_asn=1, peer_asn=3, peer_address=ip("198.18.0.1"))
    secret = Peer(
        name="sec", my_asn=1, peer_asn=2, peer_address=ip("198.18.0.9"),
        password_secret=SecretRef("s", "ns"),
    )  # fmt: skip
    long_pw = Peer(name="long", my_asn=1, peer_asn=2, peer_address=ip("198.18.0.13"),
                   password="x" * 81)  # fmt: skip
    v6_node = NodeView(name="v6-node", addresses=(ip("2001:db8::2"),))
    rendered = render_config([unsupported, dup, secret, long_pw], NODE, BRIDGE)
    rendered_v6 = render_config([no_rid], v6_node, BRIDGE)
    assert [(p.peer, p.field) for p in rendered_v6.problems] == [("v6only", "spec.routerID")]
    assert not rendered_v6.neighbors
    found = {(p.peer, p.field, p.severity) for p in rendered.problems}
    assert found == {
        ("u", "spec.connectTime", "warning"),
        ("u", "spec.vrf", "warning"),
        ("dup", "spec.peerAddress", "error"),
        ("sec", "spec.passwordSecret", "error"),
        ("long", "spec.password", "error"),
    }
    assert [n.peer_name for n in rendered.neighbors] == ["u"]
    assert all(str(p).startswith(("BGPPeer/", "warning: BGPPeer/")) for p in rendered.problems)


def test_hold_time_derivation() -> None:
    only_keepalive = Peer(name="k", my_asn=1, peer_asn=2, peer_address=ip("198.18.0.1"),
                          keepalive_time=10)  # fmt: skip
    rendered = render_config([only_keepalive], NODE, BRIDGE)
    assert "hold-time 30;" in rendered.text and not rendered.problems


@pytest.mark.parametrize(
    "argv",
    [(), ("relative/bridge",), ("/bin/bridge", "--socket", "/tmp/a b"), ("/bin/x;", "y")],
)
def test_process_block_refuses_unsafe_argv(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        config_head(argv, "n1")


def test_template_optional_lines_and_missing_values() -> None:
    template = "a ${x};\n?y    b ${y};\nc\n"
    assert fill(template, {"x": 1, "y": None}) == "a 1;\nc\n"
    assert fill(template, {"x": 1, "y": ""}) == "a 1;\nc\n"
    assert fill(template, {"x": 1, "y": 0}) == "a 1;\n    b 0;\nc\n"
    with pytest.raises(KeyError):
        fill(template, {"y": 2})


def exabgp_env_output(env: dict[str, str], tmp_path: Path) -> configparser.ConfigParser:
    """What ExaBGP itself makes of the packaged env file plus ``env`` (``exabgp ... env``)."""
    argv = exabgp_argv(str(EXABGP), tmp_path / "unused.conf")
    assert argv[1:3] == ["--env-file", exabgp_conf.path("exabgp.env")]
    clean = {k: v for k, v in os.environ.items() if not k.lower().startswith("exabgp")}
    res = subprocess.run(
        [*argv[:3], "env"], capture_output=True, text=True, env={**clean, **env},
        check=False, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    seen = configparser.ConfigParser()
    seen.read_string(res.stdout)
    return seen


def test_environment_defaults_and_env_file(tmp_path: Path) -> None:
    env = instance_environment(pipename="exalb", root="/run/exalb", run_as_root=True)
    assert env["exabgp.daemon.user"] == "root" and env["EXABGP_ROOT"] == "/run/exalb"
    assert (
        instance_environment(pipename="p", root="/r", run_as_root=False)["exabgp.daemon.user"]
        == "nobody"
    )
    seen = exabgp_env_output(env, tmp_path)
    assert seen["exabgp.log"]["statistics"] == "false"
    assert seen["exabgp.api"]["ack"] == "true" and seen["exabgp.api"]["encoder"] == "json"
    assert seen["exabgp.api"]["respawn"] == "true" and seen["exabgp.api"]["terminate"] == "false"
    assert seen["exabgp.daemon"]["daemonize"] == "false"


def test_env_file_is_read_by_exabgp(tmp_path: Path) -> None:
    """ExaBGP itself parses the env file we ship, and the per-instance values win."""
    seen = exabgp_env_output(
        instance_environment(pipename="p1", root="/r", run_as_root=True), tmp_path
    )
    assert seen["exabgp.log"]["statistics"] == "false"
    assert seen["exabgp.daemon"]["user"].strip("'") == "root"
    assert seen["exabgp.api"]["pipename"].strip("'") == "p1"
    assert seen["exabgp.tcp"]["bind"] == "''"
