"""A real control plane plus real ``exalb-controller`` processes, for controller tests.

The controller runs as its own process (as in a cluster), talks to the real
kube-apiserver, and is stopped by PID. Each test gets fresh namespaces; every Service it
created is deleted at the end, so the next test's controller (which watches all
namespaces) starts from a clean slate.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from exalb.k8s.client import KubeClient
from exalb.k8s.resources import (
    CONFIG_KINDS,
    EVENTS,
    IP_ADDRESS_POOLS,
    NAMESPACES,
    SERVICES,
    Resource,
)
from lab.binaries import find_tools
from lab.controlplane import ControlPlane, free_port
from lab.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
CONTROLLER = Path(sys.executable).with_name("exalb-controller")


def install_crds(cp: ControlPlane) -> None:
    """``helm install`` of the chart with only its CRDs (no kubelet runs the workloads)."""
    subprocess.run(
        [
            str(find_tools().helm),
            "--kubeconfig",
            str(cp.kubeconfig),
            "install",
            "exalb",
            str(REPO / "charts" / "exalb"),
            "-n",
            "exalb-system",
            "--create-namespace",
            "--set",
            "controller.enabled=false",
            "--set",
            "speaker.enabled=false",
        ],
        check=True,
        capture_output=True,
        text=True,
    )


class ControllerProc:
    """One ``exalb-controller`` process with its own metrics port and log file."""

    def __init__(self, kubeconfig: Path, namespace: str, logdir: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = logdir / f"controller-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                str(CONTROLLER),
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                namespace,
                "--metrics-addr",
                f"127.0.0.1:{self.port}",
                "--lease-name",
                f"exalb-{namespace}",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for("controller /readyz", lambda: self.http("/readyz")[0] == 200, timeout)

    def metric(self, name: str, **labels: str) -> float | None:
        _, text = self.http("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return None

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class Env:
    """Namespaces, a client and controller processes for one test."""

    def __init__(self, cp: ControlPlane, logdir: Path) -> None:
        self.cp = cp
        self.kube = KubeClient(str(cp.kubeconfig))
        uid = uuid.uuid4().hex[:6]
        self.config_ns = f"cfg-{uid}"
        self.app_ns = f"app-{uid}"
        self.logdir = logdir
        self.controllers: list[ControllerProc] = []
        for ns in (self.config_ns, self.app_ns):
            self.kube.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )

    def start_controller(self, *args: str, ready: bool = True) -> ControllerProc:
        ctl = ControllerProc(self.cp.kubeconfig, self.config_ns, self.logdir, *args)
        self.controllers.append(ctl)
        if ready:
            ctl.wait_ready()
        return ctl

    def close(self) -> None:
        for ctl in self.controllers:
            ctl.stop()
        for ns in (self.app_ns, self.config_ns, "default"):
            for obj in self.kube.list(SERVICES, ns).items:
                if obj["metadata"]["name"] != "kubernetes":
                    self.kube.delete(SERVICES, obj["metadata"]["name"], ns)
        for res in CONFIG_KINDS:
            for obj in self.kube.list(res, self.config_ns).items:
                self.kube.delete(res, obj["metadata"]["name"], self.config_ns)
        for ns in (self.app_ns, self.config_ns):
            self.kube.delete(NAMESPACES, ns)
        self.kube.close()

    # ----------------------------------------------------------------- config
    def apply(
        self,
        resource: Resource,
        name: str,
        spec: dict[str, Any],
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        }
        existing = self.kube.get(resource, name, self.config_ns)
        if existing is None:
            return self.kube.create(resource, body, self.config_ns)
        return self.kube.patch(resource, name, {"spec": spec}, self.config_ns)

    def pool(self, name: str, *addresses: str, **spec: Any) -> dict[str, Any]:
        return self.apply(IP_ADDRESS_POOLS, name, {"addresses": list(addresses), **spec})

    def delete(self, resource: Resource, name: str) -> None:
        self.kube.delete(resource, name, self.config_ns)

    # ----------------------------------------------------------------- services
    def service(
        self,
        name: str,
        *,
        ports: Iterable[tuple[str, int]] = (("TCP", 80),),
        annotations: dict[str, str] | None = None,
        namespace: str | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            # No NodePorts: BGP load balancing does not need them, and the NodePort range
            # (2,768 ports) would cap the number of Services a test or benchmark can create.
            "spec": {
                "type": "LoadBalancer",
                "allocateLoadBalancerNodePorts": False,
                "selector": {"app": name},
                "ports": [
                    {"name": f"p{p}-{proto.lower()}", "port": p, "protocol": proto}
                    for proto, p in ports
                ],
                **spec,
            },
        }
        return self.kube.create(SERVICES, body, namespace or self.app_ns)

    def services(self, names: list[str], workers: int = 8, **kw: Any) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda n: self.service(n, **kw), names))

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        obj = self.kube.get(SERVICES, name, namespace or self.app_ns)
        assert obj is not None, name
        return obj

    def ips(self, name: str, namespace: str | None = None) -> list[str]:
        lb = (self.get(name, namespace).get("status") or {}).get("loadBalancer") or {}
        return [i["ip"] for i in lb.get("ingress") or []]

    def wait_ips(self, name: str, n: int = 1, timeout: float = 20.0) -> list[str]:
        return wait_for(
            f"{n} IP(s) on {name}",
            lambda: ips if len(ips := self.ips(name)) == n else None,
            timeout,
        )

    def all_ips(self, namespace: str | None = None) -> dict[str, list[str]]:
        out = {}
        for obj in self.kube.list(SERVICES, namespace or self.app_ns).items:
            lb = (obj.get("status") or {}).get("loadBalancer") or {}
            out[obj["metadata"]["name"]] = [i["ip"] for i in lb.get("ingress") or []]
        return out

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        for c in (self.get(name).get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype:
                return dict(c)
        return None

    def events(self, name: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        items = self.kube.list(EVENTS, namespace or self.app_ns).items
        return [e for e in items if name is None or e["involvedObject"].get("name") == name]

    def event_reasons(self, name: str, namespace: str | None = None) -> list[str]:
        return [e["reason"] for e in self.events(name, namespace)]


__all__ = ["REPO", "ControllerProc", "Env", "install_crds", "wait_for"]
