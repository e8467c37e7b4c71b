"""The real programs under the chart's identities: is the chart's RBAC enough?

The chart is installed; a token is minted for each component's ServiceAccount; the real
``exalb-controller`` and ``exalb-speaker`` (plus ExaBGP through the chart's launcher command,
as the speaker pod's second container) run as local processes with exactly the command
lines the installed manifest holds (``/run/exalb`` remapped to a private directory,
``$(POD_IP)`` = 127.0.0.1, ``$(NODE_NAME)`` = a Node object the test creates). Any missing
permission shows up as a 403 in their logs or as a Service/peer that never gets done.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane, free_port
from lab.wait import wait_for
from tests.chart.conftest import containers, find, install, manifest, uninstall

pytestmark = pytest.mark.k8s

RELEASE = "ident"
NS = "ident-system"
APPS = "ident-apps"
NODE = "ident-node"
FULL = f"{RELEASE}-exalb"
BIN = Path(sys.executable).parent
T = TypeVar("T")


class Proc:
    """A program started in its own session, logging to a file, stopped by its PID."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        pid = self.popen.pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout)
        # Children it started in its session (ExaBGP's bridge): the group is our PID.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def closed_port_below_16384() -> int:
    """A TCP port nobody listens on, in the range BGPPeer.spec.peerPort allows."""
    for port in range(16384, 10000, -1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 16384")


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def assert_no_forbidden(proc: Proc) -> None:
    bad = [ln for ln in proc.log().splitlines() if re.search(r"\b403\b|forbidden", ln, re.I)]
    assert not bad, "permission errors:\n" + "\n".join(bad[:10])


def program_argv(container: dict[str, Any], run_dir: Path) -> list[str]:
    """The container's command line as a local process."""
    values = {"POD_IP": "127.0.0.1", "NODE_NAME": NODE}
    argv = [
        re.sub(r"\$\(([A-Z_]+)\)", lambda m: values[m.group(1)], a).replace(
            "/run/exalb", str(run_dir)
        )
        for a in [*container["command"], *container.get("args", [])]
    ]
    exe = argv[0]
    argv[0] = sys.executable if exe == "python" else str(BIN / exe)
    return argv


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NODE_NAME")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def release(chart_cp: ControlPlane, chart_tools: Tools) -> Iterator[list[dict[str, Any]]]:
    """The chart installed with free metrics ports and a pinned peer Secret."""
    try:
        install(
            chart_cp, chart_tools, RELEASE, NS,
            "--set", f"controller.metricsPort={free_port()}",
            "--set", f"speaker.metricsPort={free_port()}",
            "--set", f"speaker.statusPort={free_port()}",
            "--set-json", 'speaker.secretNames=["tor-password"]',
        )  # fmt: skip
        chart_cp.ensure_namespace(APPS)
        yield manifest(chart_cp, chart_tools, RELEASE, NS)
    finally:
        # helm first: its release record is a Secret of NS, which the sweep below deletes
        uninstall(chart_cp, chart_tools, RELEASE, NS)
        for path in (
            f"/api/v1/namespaces/{APPS}/services",
            f"/apis/discovery.k8s.io/v1/namespaces/{APPS}/endpointslices",
            f"/api/v1/namespaces/{NS}/secrets",
            f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases",
            *(
                f"/apis/metallb.io/{v}/namespaces/{NS}/{plural}"
                for v, plural in (
                    ("v1beta1", "ipaddresspools"),
                    ("v1beta1", "bgpadvertisements"),
                    ("v1beta2", "bgppeers"),
                )
            ),
        ):
            chart_cp.api("DELETE", path)
        chart_cp.api("DELETE", f"/api/v1/nodes/{NODE}")


def create(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = cp.api("POST", path, body)
    assert resp.ok, f"POST {path}: {resp.status} {resp.message}"
    return resp.body


def metallb(
    cp: ControlPlane, kind: str, version: str, plural: str, name: str, spec: dict[str, Any]
) -> None:
    create(
        cp,
        f"/apis/metallb.io/{version}/namespaces/{NS}/{plural}",
        {
            "apiVersion": f"metallb.io/{version}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def lb_service(cp: ControlPlane, name: str) -> None:
    create(
        cp,
        f"/api/v1/namespaces/{APPS}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        },
    )


def ingress(cp: ControlPlane, name: str) -> list[str]:
    svc = cp.api("GET", f"/api/v1/namespaces/{APPS}/services/{name}").body
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or []]


# --------------------------------------------------------------------------- controller


def test_controller_runs_under_the_chart_identity(
    chart_cp: ControlPlane, release: list[dict[str, Any]], tmp_path: Path
) -> None:
    cp = chart_cp
    (ctl,) = containers(find(release, "Deployment")).values()
    token = cp.create_token(NS, f"{FULL}-controller")
    kubeconfig = cp.write_token_kubeconfig(token, "chart-controller")
    argv = [*program_argv(ctl, tmp_path), "--kubeconfig", str(kubeconfig)]
    port = ctl["ports"][0]["containerPort"]
    assert f"--metrics-addr=127.0.0.1:{port}" in argv
    assert f"--namespace={NS}" in argv

    metallb(cp, "IPAddressPool", "v1beta1", "ipaddresspools", "ctl-pool",
            {"addresses": ["203.0.113.0/30"]})  # fmt: skip
    lb_service(cp, "ctl-web")
    proc = Proc(argv, tmp_path / "controller.log", clean_env(POD_NAME="ident-controller-0"))
    try:
        wait_for("controller /readyz", lambda: http(port, "/readyz")[0] == 200)
        ips = wait_for("an IP on ctl-web", lambda: ingress(cp, "ctl-web"))
        assert ips == ["203.0.113.0"]
        # Leader election on the Lease the Role names.
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{FULL}-controller"
        lease = cp.api("GET", lease_path)
        assert lease.ok, lease.message
        assert lease.body["spec"]["holderIdentity"] == "ident-controller-0"
        # ipaddresspools/status and events: both writes allowed.
        pool_path = f"/apis/metallb.io/v1beta1/namespaces/{NS}/ipaddresspools/ctl-pool"
        wait_for(
            "pool status counters",
            lambda: (cp.api("GET", pool_path).body.get("status") or {}).get("assignedIPv4") == 1,
        )
        events = cp.api("GET", f"/api/v1/namespaces/{APPS}/events").body["items"]
        assert any(e["involvedObject"].get("name") == "ctl-web" for e in events), events
        assert_no_forbidden(proc)
        assert proc.popen.poll() is None, proc.log()
    except BaseException:
        print(proc.log()[-5000:])
        raise
    finally:
        proc.stop()
        cp.api("DELETE", f"/api/v1/namespaces/{APPS}/services/ctl-web")
        cp.api("DELETE", f"/apis/metallb.io/v1beta1/namespaces/{NS}/ipaddresspools/ctl-pool")
    assert proc.popen.returncode == 0, proc.log()[-3000:]


# --------------------------------------------------------------------------- speaker


def _world(cp: ControlPlane, bgp_port: int) -> None:
    """Node, peer with a password Secret, pool, advertisement, a Service with an IP and a
    ready endpoint on the node: everything the speaker reads."""
    create(cp, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    resp = cp.api(
        "PATCH",
        f"/api/v1/nodes/{NODE}/status",
        {"status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.10"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert resp.ok, resp.message
    create(
        cp,
        f"/api/v1/namespaces/{NS}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tor-password"},
            "type": "kubernetes.io/basic-auth",
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        },
    )
    metallb(cp, "IPAddressPool", "v1beta1", "ipaddresspools", "spk-pool",
            {"addresses": ["203.0.113.8/29"]})  # fmt: skip
    metallb(cp, "BGPAdvertisement", "v1beta1", "bgpadvertisements", "spk-adv",
            {"ipAddressPools": ["spk-pool"]})  # fmt: skip
    metallb(cp, "BGPPeer", "v1beta2", "bgppeers", "tor", {
        "myASN": 64512, "peerASN": 64500, "peerAddress": "127.0.0.1", "peerPort": bgp_port,
        "passwordSecret": {"name": "tor-password", "namespace": NS},
    })  # fmt: skip
    lb_service(cp, "spk-web")
    resp = cp.api(
        "PATCH",
        f"/api/v1/namespaces/{APPS}/services/spk-web/status",
        {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}},
        content_type="application/merge-patch+json",
    )
    assert resp.ok, resp.message
    create(
        cp,
        f"/apis/discovery.k8s.io/v1/namespaces/{APPS}/endpointslices",
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "spk-web-1", "labels": {"kubernetes.io/service-name": "spk-web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": NODE,
                           "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
    )  # fmt: skip


def test_speaker_and_exabgp_run_under_the_chart_identity(
    chart_cp: ControlPlane, release: list[dict[str, Any]], tmp_path: Path
) -> None:
    cp = chart_cp
    pod = containers(find(release, "DaemonSet"))
    spk, exa = pod["speaker"], pod["exabgp"]
    port = next(p["containerPort"] for p in spk["ports"] if p["name"] == "metrics")
    status_port = next(p["containerPort"] for p in spk["ports"] if p["name"] == "status")
    token = cp.create_token(NS, f"{FULL}-speaker")
    kubeconfig = cp.write_token_kubeconfig(token, "chart-speaker")
    # A short private stand-in for the pod's emptyDir (unix socket paths are limited).
    run_dir = Path(tempfile.mkdtemp(prefix="exalb-run-"))
    speaker_argv = [*program_argv(spk, run_dir), "--kubeconfig", str(kubeconfig)]
    exabgp_argv = program_argv(exa, run_dir)
    procs: list[Proc] = []
    try:
        _world(cp, bgp_port=closed_port_below_16384())  # nobody listens: the session stays down
        procs.append(Proc(exabgp_argv, tmp_path / "exabgp.log", clean_env()))
        speaker = Proc(speaker_argv, tmp_path / "speaker.log", clean_env())
        procs.append(speaker)
        # Ready = caches synced (every list/watch allowed), config applied, bridge connected
        # (ExaBGP started from the rendered file and runs the bridge on the shared socket).
        wait_for("speaker /readyz", lambda: http(port, "/readyz")[0] == 200, timeout=60)
        assert http(port, "/status")[0] == 404  # never on the node address
        code, body = http(status_port, "/status")
        assert code == 200
        status = json.loads(body)
        assert status["node"] == NODE
        assert status["config"]["loaded"] is True and status["config"]["stale"] is False
        assert status["exabgp"]["connected"] is True
        (peer,) = status["peers"]
        # configured = rendered into exabgp.conf, which needs the password: the Secret `get`
        # the chart pinned by name was allowed.
        assert peer["name"] == "tor" and peer["configured"] is True, status
        assert status["renderProblems"] == []
        (decision,) = [d for d in status["services"] if d["service"].endswith("/spk-web")]
        assert decision["announce"] is True, decision
        assert {r["prefix"] for r in decision["routes"]} == {"203.0.113.9/32"}
        conf_path = run_dir / "bgp" / "exabgp.conf"
        assert conf_path.stat().st_mode & 0o777 == 0o640  # MD5 passwords: never world-readable
        conf = conf_path.read_text()
        assert "neighbor 127.0.0.1" in conf and "md5-password" in conf
        assert str(BIN / "exalb-exabgp-bridge") in conf
        assert_no_forbidden(speaker)
        for p in procs:
            assert p.popen.poll() is None, p.log()[-3000:]
    except BaseException:
        for p in procs:
            print(f"--- {p.argv[0]}\n{p.log()[-5000:]}")
        raise
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
