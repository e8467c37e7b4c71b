"""The offline CLI on the bundled examples."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exalb.config.documents import parse_files
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


def legacy_configmap(path: Path, legacy: str) -> Path:
    """MetalLB's legacy ConfigMap holding ``legacy`` as its config, written to ``path``."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": "metallb-system"},
                "data": {"config": legacy},
            }
        )
    )
    return path


def test_convert_round_trips_to_the_same_model(tmp_path: Path) -> None:
    manifest = legacy_configmap(tmp_path / "cm.yaml", (EX / "legacy" / "bgp.yaml").read_text())
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


def test_convert_refuses_what_the_objects_could_not_resolve(tmp_path: Path) -> None:
    """A peer naming a BFD profile the config does not define: MetalLB's converter fails on
    it, and so does convert (instead of writing objects exalb would then refuse)."""
    legacy = (
        "peers:\n- {peer-address: 203.0.113.1, peer-asn: 64512, my-asn: 64513,"
        " bfd-profile: nothere}\n"
        "address-pools:\n- {name: default, protocol: bgp, addresses: [198.51.100.0/24]}\n"
    )
    manifest = legacy_configmap(tmp_path / "cm.yaml", legacy)
    code, text = run("config", "convert", str(manifest))
    assert code == 1
    assert "spec.bfdProfile: BFDProfile 'nothere' does not exist" in text
    assert "apiVersion" not in text  # nothing written


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


# -- hostile input: a clear error and exit 1, never a traceback (issue 12, point 8) ---------


SERVICES, CONFIG = EX / "plan" / "services.yaml", EX / "plan" / "config-v1.yaml"


def cli_on(tmp_path: Path, text: str) -> dict[str, tuple[int, str]]:
    """Every command that reads a YAML file, on ``text``; each must exit 0 or 1."""
    f = tmp_path / "input.yaml"
    f.write_text(text)
    commands = {
        "check": ("config", "check", str(f)),
        "check-json": ("config", "check", "-o", "json", str(f)),
        "convert": ("config", "convert", str(f)),
        "convert-json": ("config", "convert", "-o", "json", str(f)),
        "plan-config": ("plan", "--config", str(f), "--services", str(SERVICES)),
        "plan-services": ("plan", "--config", str(CONFIG), "--services", str(f)),
    }
    out = {}
    for name, argv in commands.items():
        code, printed = run(*argv)
        assert code in (0, 1), (name, code, printed)
        out[name] = (code, printed)
    return out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: List\nitems: 5\n", "items: must be a list, got 5"),
        ('kind: ConfigMap\nmetadata: "x"\n', "metadata: must be a mapping, got 'x'"),
        ("apiVersion: v1\nkind: ConfigMap\ndata: 7\n", "data: must be a mapping, got 7"),
        ("a: [\n", "is not valid YAML"),
        ("a: 1\na: 2\n", "the key 'a' is given twice"),
        ("address-pools: " + "[" * 3000 + "]" * 3000, "nested deeper than 64 levels"),
        ("\x00\x01", "is not valid YAML"),
    ],
)  # fmt: skip
def test_malformed_files_give_a_clear_error_and_exit_1(
    tmp_path: Path, text: str, message: str
) -> None:
    results = cli_on(tmp_path, text)
    for name in ("check", "convert", "plan-config"):
        code, printed = results[name]
        assert code == 1 and message in printed, (name, printed)


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"address-pools: [\xe9]\n")
    for argv in (("config", "check", str(f)), ("config", "convert", str(f))):
        code, printed = run(*argv)
        assert code == 1 and "is not UTF-8 text" in printed


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)
EXAMPLES = [
    doc
    for path in sorted(EX.rglob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc is not None
]


def mutate(doc: Any, target: int, value: Any) -> Any:
    """``doc`` with its ``target``-th value (depth first, modulo the count) replaced."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(doc, ())
    path = paths[target % len(paths)]
    if not path:
        return value
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@given(st.sampled_from(EXAMPLES), st.integers(0, 10_000), plain, st.booleans())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzzed_config_files_never_raise(
    tmp_path: Path, example: Any, target: int, value: Any, bare: bool
) -> None:
    """Any YAML: a known-good example with one value replaced by anything, or anything."""
    doc = value if bare else mutate(example, target, value)
    cli_on(tmp_path, yaml.safe_dump(doc))
    legacy = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
              "data": {"config": yaml.safe_dump(doc)}}  # fmt: skip
    cli_on(tmp_path, yaml.safe_dump(legacy))
