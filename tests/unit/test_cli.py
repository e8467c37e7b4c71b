"""The offline CLI on the bundled examples."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from exalb.config import parse_files
from exalbctl.main import main

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_config_check_legacy_examples() -> None:
    for path in sorted((EX / "legacy").glob("*.yaml")):
        code, text = run("config", "check", str(path))
        assert code == 0, text
        assert text.rstrip().endswith("valid")


def test_config_check_crd_examples() -> None:
    code, text = run("config", "check", *map(str, sorted((EX / "crds").glob("*.yaml"))))
    assert code == 0, text
    assert "hold disabled" in text


def test_config_check_reports_every_error_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("address-pools:\n- name: a\n  addresses: [nope]\n- protocol: bgp\n")
    code, text = run("config", "check", str(bad))
    assert code == 1
    assert "address-pools[0].protocol: missing the protocol field" in text
    assert "address-pools[1].name: is required" in text
    code, text = run("config", "check", "-o", "json", str(bad))
    data = json.loads(text)
    assert code == 1 and not data["valid"] and len(data["errors"]) >= 2


def test_config_check_json_model() -> None:
    code, text = run("config", "check", "-o", "json", str(EX / "legacy" / "bgp.yaml"))
    data = json.loads(text)
    assert code == 0 and data["valid"]
    assert data["config"]["peers"][0]["peer_address"] == "10.0.0.1"
    assert data["config"]["pools"][0]["cidrs"] == ["192.168.10.0/24"]


def test_convert_round_trips_to_the_same_model(tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": "metallb-system"},
                "data": {"config": (EX / "legacy" / "bgp.yaml").read_text()},
            }
        )
    )
    code, text = run("config", "convert", str(manifest))
    assert code == 0, text
    converted = tmp_path / "crds.yaml"
    converted.write_text(text)
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert kinds == ["BGPPeer", "IPAddressPool", "BGPAdvertisement"]
    a = parse_files([str(manifest)]).config
    b = parse_files([str(converted)]).config
    assert a is not None and b is not None
    assert (a.pools, a.peers, a.bgp_advertisements) == (b.pools, b.peers, b.bgp_advertisements)


def test_plan_shows_out_of_pool_without_moving_ips() -> None:
    code, text = run(
        "plan",
        "--config",
        str(EX / "plan" / "config-v2.yaml"),
        "--services",
        str(EX / "plan" / "services.yaml"),
        "-o",
        "json",
    )
    assert code == 0
    rows = {r["service"]: r for r in json.loads(text)}
    assert rows["prod/shop"]["action"] == "out-of-pool"
    assert rows["prod/shop"]["planned"] == ["203.0.113.0"]
    assert rows["prod/api"]["action"] == "keep"
    assert rows["infra/dns"]["planned"] == rows["infra/dns-tcp"]["planned"]
    assert rows["prod/internal"]["action"] == "skip"
