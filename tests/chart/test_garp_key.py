"""The garp sidecars' probe key (issue 12, point 1): a Secret only the garp container mounts,
made by the chart with a random key unless ``garp.keySecret`` names your own, and never
rotated by an upgrade (it is looked up and kept)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from garp.keys import read_keyring
from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.chart.conftest import VALUES, containers, find, install, render, uninstall

KEY_DIR = "/etc/exalb/garp-key"


def _key_mounts(ds: dict[str, Any]) -> dict[str, str]:
    return {
        name: m["mountPath"]
        for name, c in containers(ds).items()
        for m in c.get("volumeMounts", [])
        if m["name"] == "garp-key"
    }


def test_chart_made_key_is_mounted_into_garp_only(chart_tools: Tools) -> None:
    docs = render(chart_tools)
    secret = find(docs, "Secret", "exalb-garp-key")
    key = base64.b64decode(secret["data"]["key"])
    assert len(key) == 64 and key.isalnum()
    ds = find(docs, "DaemonSet")
    assert _key_mounts(ds) == {"garp": KEY_DIR}
    (garp_mount,) = [m for m in containers(ds)["garp"]["volumeMounts"] if m["name"] == "garp-key"]
    assert garp_mount["readOnly"] is True
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    # 0440 and the pod's fsGroup: the non-root garp user reads it; only garp mounts it
    assert volumes["garp-key"]["secret"] == {"secretName": "exalb-garp-key", "defaultMode": 0o440}
    assert f"--key-dir={KEY_DIR}" in containers(ds)["garp"]["args"]
    # another render, another key: nothing predictable is ever shipped
    assert find(render(chart_tools), "Secret")["data"] != secret["data"]


def test_own_key_secret(chart_tools: Tools) -> None:
    docs = render(chart_tools, "--set", "garp.keySecret=my-garp-key")
    assert [d for d in docs if d["kind"] == "Secret"] == []
    ds = find(docs, "DaemonSet")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["garp-key"]["secret"]["secretName"] == "my-garp-key"
    assert _key_mounts(ds) == {"garp": KEY_DIR}


def test_no_garp_no_key(chart_tools: Tools) -> None:
    docs = render(chart_tools, "-f", str(VALUES / "minimal.yaml"))
    assert [d for d in docs if d["kind"] == "Secret"] == []
    volumes = find(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
    assert "garp-key" not in {v["name"] for v in volumes}


@pytest.mark.k8s
def test_upgrade_keeps_the_key(chart_cp: ControlPlane, chart_tools: Tools, tmp_path: Any) -> None:
    cp, tools, release, ns = chart_cp, chart_tools, "keyed", "keyed-system"
    path = f"/api/v1/namespaces/{ns}/secrets/keyed-exalb-garp-key"
    try:
        install(cp, tools, release, ns)
        first = cp.api("GET", path)
        assert first.ok, first.message
        key = first.body["data"]["key"]
        (tmp_path / "key").write_bytes(base64.b64decode(key))
        assert len(read_keyring(tmp_path).keys[0]) == 64  # what the sidecar will read
        # a rotation done with kubectl (previous + new key) ...
        rotated = {"key": base64.b64encode(b"N" * 40).decode(), "previous": key}
        patched = cp.api(
            "PATCH", path, {"data": rotated}, content_type="application/merge-patch+json"
        )
        assert patched.ok, patched.message
        install(cp, tools, release, ns, "--reuse-values", "--set", "garp.logLevel=debug",
                upgrade=True)  # fmt: skip
        # ... survives the upgrade, which generates nothing new
        after = cp.api("GET", path)
        assert after.ok and after.body["data"] == rotated
    finally:
        uninstall(cp, tools, release, ns)
