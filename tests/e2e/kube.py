"""Small helpers the e2e modules share: helm with a values dict, Service IPs, the doctor run
in-process against the cluster, r1's view of a prefix."""

from __future__ import annotations

import io
import json
from typing import Any

import yaml

from exalbctl.main import main as exalbctl
from lab.cluster.cluster import Cluster
from lab.runner import Lab

CHART = "charts/exalb"
NODE_IP = {"n1": "198.51.100.11", "n2": "198.51.100.12", "n3": "198.51.100.13"}
IP_NODE = {v: k for k, v in NODE_IP.items()}


def helm_values(cluster: Cluster, verb: str, release: str, ns: str, vals: dict[str, Any],
                *extra: str, wait: bool = True) -> None:  # fmt: skip
    path = cluster.dir / f"{release}-{ns}-values.yaml"
    path.write_text(yaml.safe_dump(vals))
    args = [verb, release, CHART, "-n", ns, "--create-namespace", "-f", str(path), *extra]
    if wait:
        args += ["--wait", "--timeout", "180s"]
    cluster.helm(*args)


def image_values(cluster: Cluster) -> dict[str, Any]:
    exalb = cluster.images["exalb"]
    return {"repository": exalb.repository, "tag": exalb.tag, "pullPolicy": "Never"}


def ingress_ips(svc: dict[str, Any]) -> list[str]:
    items = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in items if i.get("ip")]


def service_ips(cluster: Cluster, ns: str) -> dict[str, list[str]]:
    """Every Service of ``ns`` that has an IP: name -> its ingress IPs."""
    items = cluster.get_json("svc", "-n", ns)["items"]
    return {s["metadata"]["name"]: ips for s in items if (ips := ingress_ips(s))}


def doctor(cluster: Cluster, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    """``kubectl exalb doctor -o json`` (in-process) against the cluster: (exit, report)."""
    out = io.StringIO()
    argv = ["doctor", "--kubeconfig", str(cluster.kubeconfig), "--speaker-namespace", ns,
            "-o", "json", *args]  # fmt: skip
    code = exalbctl(argv, out=out)
    return code, json.loads(out.getvalue())


def findings(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == check]


def nexthops(lab: Lab, prefix: str) -> set[str]:
    """r1's FIB: the nodes a prefix goes to."""
    route = lab.route("r1", prefix)
    return {IP_NODE.get(g, g) for g in route.gateways} if route else set()
