"""The chart's install-time guardrails (templates/_guardrails.tpl, values.schema.json, NOTES).

Schema and template refusals need only helm; the ``lookup`` ones run ``helm install``
against the chart tests' own kube-apiserver, where each test creates the object a real
cluster would hold (MetalLB's Deployment, DaemonSet or webhook, kube-proxy's ConfigMap,
another exalb release, Nodes) and deletes it again. No kubelet runs: the objects only have
to exist, as they would for helm on a real cluster.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.chart.conftest import CHART, helm, install, uninstall

APPS = "/apis/apps/v1"


# -- refused without a cluster ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "guardrails.allowEverything=true"],
         "additional properties 'allowEverything' not allowed"),
        (["--set", "guardrails.allowMetalLB=yes"], "/guardrails/allowMetalLB"),
        (["--set", "config.pools[0].name=p", "--set-json", "config.pools[0].spec={}"],
         "missing property 'addresses'"),
        (["--set", "config.pools[0].name=p", "--set-json", "config.pools[0].spec.addresses=[]"],
         "minItems"),
        (["--set", "config.peers[0].name=r", "--set-json", 'config.peers[0].spec={"myASN":1}'],
         "missing property 'peerAddress'"),
        (["--set", "garp.metricsPort=7472"],
         "speaker.metricsPort and garp.metricsPort are both 7472"),
    ],
)  # fmt: skip
def test_values_refused_by_schema_and_template(
    chart_tools: Tools, args: list[str], message: str
) -> None:
    proc = helm(chart_tools, "template", "x", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_template_looks_up_nothing(chart_tools: Tools) -> None:
    """`helm template` sees no cluster: the lookups pass (CI renders without a cluster)."""
    out = helm(chart_tools, "template", "x", str(CHART), "--set", "guardrails.allowMetalLB=false")
    assert "kind: DaemonSet" in out.stdout


# -- refused by looking at the cluster -------------------------------------------------------


def metallb_controller(ns: str, *args: str, replicas: int = 1) -> dict[str, Any]:
    """What MetalLB's chart installs, as far as the guardrail looks."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "metallb-controller", "namespace": ns,
                     "labels": {"app.kubernetes.io/name": "metallb"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "c"}},
            "template": {"metadata": {"labels": {"app": "c"}}, "spec": {"containers": [
                {"name": "controller", "image": "quay.io/metallb/controller:v0.16.2",
                 "args": ["--port=7472", "--webhook-mode=disabled", *args],
                 "env": [{"name": "METALLB_POD_NAME", "value": "x"}]}]}},
        },
    }  # fmt: skip


def metallb_speaker(ns: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "metallb-speaker", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "s"}},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": {
                "hostNetwork": True,
                "containers": [{"name": "speaker", "image": "quay.io/metallb/speaker:v0.13.0",
                                "args": [f"--port={port}", "--health-probe-port=17472"],
                                "ports": [{"name": "monitoring", "containerPort": port}]}]}},
        },
    }  # fmt: skip


WEBHOOK = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "metallb-webhook-configuration"},
    "webhooks": [{
        "name": "ipaddresspoolvalidationwebhook.metallb.io", "failurePolicy": "Ignore",
        "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"namespace": "metallb-system",
                                     "name": "metallb-webhook-service", "path": "/v"}},
        "rules": [{"apiGroups": ["metallb.io"], "apiVersions": ["v1beta1"],
                   "operations": ["CREATE"], "resources": ["ipaddresspools"]}],
    }],
}  # fmt: skip


def kube_proxy(mode: str, strict: bool) -> dict[str, Any]:
    conf = (
        f"kind: KubeProxyConfiguration\nmode: {mode}\nipvs:\n  strictARP: {str(strict).lower()}\n"
    )
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": conf}}  # fmt: skip


def _path(obj: Mapping[str, Any]) -> str:
    api, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
    base = f"/apis/{api}" if "/" in api else f"/api/{api}"
    plural = {"Deployment": "deployments", "DaemonSet": "daemonsets", "ConfigMap": "configmaps",
              "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
              "Node": "nodes"}[kind]  # fmt: skip
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{plural}"


@contextmanager
def present(cp: ControlPlane, *objs: dict[str, Any]) -> Iterator[None]:
    """The objects exist for the duration (created, then deleted, also on failure)."""
    made = []
    try:
        for obj in objs:
            if obj["metadata"].get("namespace"):
                cp.ensure_namespace(obj["metadata"]["namespace"])
            resp = cp.api("POST", _path(obj), obj)
            assert resp.ok, f"create {obj['kind']}: {resp.status} {resp.message}"
            made.append(obj)
        yield
    finally:
        for obj in reversed(made):
            cp.api("DELETE", f"{_path(obj)}/{obj['metadata']['name']}")


def try_install(
    cp: ControlPlane, tools: Tools, release: str, ns: str, *args: str
) -> subprocess.CompletedProcess[str]:
    proc = cp.run_tool(
        [str(tools.helm), "install", release, str(CHART), "--namespace", ns,
         "--create-namespace", *args],
        check=False,
    )  # fmt: skip
    if proc.returncode == 0:
        uninstall(cp, tools, release, ns)
    return proc


@pytest.mark.k8s
@pytest.mark.parametrize(
    ("objects", "found"),
    [
        ([metallb_controller("metallb-system")], "Deployment metallb-system/metallb-controller"),
        ([metallb_speaker("lb", 7472)], "DaemonSet lb/metallb-speaker"),
        ([WEBHOOK], "ValidatingWebhookConfiguration metallb-webhook-configuration"),
    ],
    ids=["controller", "speaker", "webhook"],
)
def test_running_metallb_is_refused_with_an_override(
    chart_cp: ControlPlane, chart_tools: Tools, objects: list[dict[str, Any]], found: str
) -> None:
    cp, tools = chart_cp, chart_tools
    with present(cp, *objects):
        proc = try_install(cp, tools, "guard", "guard-system")
        assert proc.returncode != 0
        assert f"MetalLB runs in this cluster ({found})" in proc.stderr, proc.stderr
        assert "guardrails.allowMetalLB=true" in proc.stderr
        assert "Migrating from MetalLB" in proc.stderr
        # the explicit override; a MetalLB speaker on 7472 then needs other ports
        extra = ["--set", "speaker.metricsPort=7572"] if "speaker" in found else []
        proc = try_install(cp, tools, "guard", "guard-system",
                           "--set", "guardrails.allowMetalLB=true", *extra)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "WARNING: MetalLB still runs" in proc.stdout or "webhook" in found


@pytest.mark.k8s
def test_metallb_speaker_ports_are_refused_while_both_run(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    cp, tools = chart_cp, chart_tools
    allow = ("--set", "guardrails.allowMetalLB=true")
    with present(cp, metallb_speaker("lb", 7472)):
        proc = try_install(cp, tools, "guard", "guard-system", *allow)
        assert proc.returncode != 0
        assert ("speaker.metricsPort 7472 is taken on every node by MetalLB's DaemonSet "
                "lb/metallb-speaker (host network)") in proc.stderr, proc.stderr  # fmt: skip
        ports = ("--set", "speaker.metricsPort=7572", "--set", "garp.metricsPort=17472")
        proc = try_install(cp, tools, "guard", "guard-system", *allow, *ports)
        assert "garp.metricsPort 17472 is taken" in proc.stderr  # an undeclared --*port flag
        proc = try_install(cp, tools, "guard", "guard-system", *allow,
                           "--set", "speaker.metricsPort=7572")  # fmt: skip
        assert proc.returncode == 0, proc.stderr


@pytest.mark.k8s
def test_metallb_that_cannot_conflict_is_not_refused(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    cp, tools = chart_cp, chart_tools
    with present(cp, metallb_controller("metallb-system", replicas=0)):  # scaled to zero
        assert try_install(cp, tools, "guard", "guard-system").returncode == 0
    with present(cp, metallb_controller("metallb-system", "--lb-class=metallb")):
        proc = try_install(cp, tools, "guard", "guard-system")  # it serves another class
        assert proc.returncode == 0, proc.stderr
        proc = try_install(cp, tools, "guard", "guard-system", "--set", "loadBalancerClass=metallb")
        assert proc.returncode != 0 and "MetalLB runs" in proc.stderr


@pytest.mark.k8s
def test_second_exalb_for_the_same_services_is_refused(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    cp, tools = chart_cp, chart_tools
    install(cp, tools, "first", "first-system")
    try:
        proc = try_install(cp, tools, "second", "second-system")
        assert proc.returncode != 0
        assert "another exalb" in proc.stderr and "release first" in proc.stderr, proc.stderr
        other_class = ("--set", "loadBalancerClass=example.com/second")
        crds_only = ("--set", "speaker.enabled=false", "--set", "controller.enabled=false")
        for ok in (other_class, crds_only):
            proc = try_install(cp, tools, "second", "second-system", *ok)
            assert proc.returncode == 0, proc.stderr
        # an upgrade of the release itself is not "another exalb"
        out = install(cp, tools, "first", "first-system", "--reuse-values", upgrade=True)
        assert "STATUS: deployed" in out.stdout
    finally:
        uninstall(cp, tools, "first", "first-system")


L2 = ["--set", "config.pools[0].name=l2", "--set-json",
      'config.pools[0].spec={"addresses":["198.51.100.240/28"]}',
      "--set", "config.l2Advertisements[0].name=l2", "--set-json",
      'config.l2Advertisements[0].spec={"ipAddressPools":["l2"]}']  # fmt: skip


@pytest.mark.k8s
def test_ipvs_without_strict_arp_is_refused_when_l2_is_configured(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    cp, tools = chart_cp, chart_tools
    with present(cp, kube_proxy("ipvs", strict=False)):
        proc = try_install(cp, tools, "guard", "guard-system", *L2)
        assert proc.returncode != 0
        assert "kube-proxy runs in IPVS mode without strictARP" in proc.stderr, proc.stderr
        assert "ConfigMap kube-system/kube-proxy, config.conf" in proc.stderr
        proc = try_install(cp, tools, "guard", "guard-system", *L2,
                           "--set", "guardrails.allowIPVSWithoutStrictARP=true")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert try_install(cp, tools, "guard", "guard-system").returncode == 0  # BGP only
        legacy = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "config", "namespace": "guard-system"},
                  "data": {"config": "address-pools:\n- name: a\n  protocol: layer2\n"
                                     "  addresses: [198.51.100.240/28]\n"}}  # fmt: skip
        with present(cp, legacy):  # L2 from the legacy ConfigMap counts too
            proc = try_install(cp, tools, "guard", "guard-system")
            assert "without strictARP" in proc.stderr, proc.stderr
    with present(cp, kube_proxy("ipvs", strict=True)):
        assert try_install(cp, tools, "guard", "guard-system", *L2).returncode == 0


@pytest.mark.k8s
def test_notes_name_the_doctor_and_warn_when_every_node_is_excluded(
    chart_cp: ControlPlane, chart_tools: Tools
) -> None:
    cp, tools = chart_cp, chart_tools
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "guard-n1", "labels": {
                "node.kubernetes.io/exclude-from-external-load-balancers": ""}}}  # fmt: skip
    proc = try_install(cp, tools, "guard", "guard-system")
    assert "kubectl exalb doctor --speaker-namespace guard-system" in proc.stdout
    with present(cp, node):
        proc = try_install(cp, tools, "guard", "guard-system")
        assert proc.returncode == 0, proc.stderr
        assert "WARNING: every node (1) carries" in proc.stdout
        proc = try_install(cp, tools, "guard", "guard-system",
                           "--set", "speaker.ignoreExcludeLB=true")  # fmt: skip
        assert "WARNING: every node" not in proc.stdout


def test_guardrail_values_are_documented(chart_tools: Tools) -> None:
    """Every guardrail value is in values.yaml (the schema refuses unknown keys)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = set(schema["properties"]["guardrails"]["properties"])
    text = (CHART / "values.yaml").read_text()
    assert keys == {"allowMetalLB", "allowIPVSWithoutStrictARP"}
    assert all(f"  {k}: false" in text for k in keys)
