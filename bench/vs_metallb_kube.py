# size: one apiserver harness (client, watch, audit log, binaries, CRDs), read top to bottom
"""The apiserver side of ``vs_metallb.py``: a fast client, a Service watch, the audit log,
MetalLB's binaries and CRDs, and a namespace the controllers run in.

Why a watch and the audit log instead of polling: on 2 cores, listing 5,000 Services every
quarter second would cost the apiserver more than either controller does. One watch stream
gives the moment each Service got its first IP (as any client sees it) and every
resourceVersion bump (a MODIFIED event per change); the apiserver's audit log (level
Metadata, update/patch on ``services`` and ``services/status`` only) counts every write
*request*, including the ones that change nothing.

Why a namespace for the controllers: MetalLB's controller serves its health probe on every
address (``:<port>``, not configurable), and test servers may listen only on loopback or
inside namespaces the run created. Both controllers therefore run in one namespace of their
own (a one-node lab run, so teardown and the stale-run sweeper cover it) and reach the
apiserver through ``socat``: ``127.0.0.1:<apiserver port>`` inside it → a unix socket in the
run directory → ``127.0.0.1:<apiserver port>`` outside. Same path for both controllers.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.binaries import find_tools
from lab.controlplane import ControlPlane
from lab.runner import Lab

REPO = Path(__file__).resolve().parents[1]
METALLB_MODULE = REPO / "lab" / "metallb"
#: The CRDs MetalLB's programs watch that exalb's chart does not define.
METALLB_EXTRA_CRDS = (
    "bfdprofiles",
    "configurationstates",
    "servicebgpstatuses",
    "servicel2statuses",
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
  - level: Metadata
    verbs: [update, patch]
    resources:
      - group: ""
        resources: [services, services/status]
  - level: None
"""

CTL_TOPOLOGY = """\
# One empty namespace for the controllers of bench/vs_metallb.py (no links, no addresses).
name: vsm
topology:
  nodes:
    ctl:
      kind: linux
      labels:
        exalb.role: client
"""

JSON = dict[str, Any]


# --------------------------------------------------------------------------- MetalLB build


def metallb_version() -> str:
    text = (METALLB_MODULE / "go.mod").read_text()
    m = re.search(r"go\.universe\.tf/metallb (v\S+)", text)
    assert m, "lab/metallb/go.mod names no MetalLB version"
    return m.group(1)


def build_metallb() -> tuple[Path, float]:
    """Run lab/metallb/build.sh (cached); returns the bin directory and seconds taken."""
    t = time.monotonic()
    out = subprocess.run(
        [str(METALLB_MODULE / "build.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"lab/metallb/build.sh failed:\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1]), time.monotonic() - t


def metallb_crd_dir() -> Path:
    """MetalLB's CRDs as shipped in its module source (the module cache; never committed)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    modcache = subprocess.run(
        [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    d = Path(modcache) / f"go.universe.tf/metallb@{metallb_version()}" / "config/crd/bases"
    if not d.is_dir():
        raise RuntimeError(f"{d} missing: run lab/metallb/build.sh (it fills the cache)")
    return d


def install_metallb_crds(cp: ControlPlane) -> None:
    """Apply the CRDs MetalLB needs beyond exalb's (exalb's own must be installed first)."""
    kubectl = str(find_tools().kubectl)
    d = metallb_crd_dir()
    for plural in METALLB_EXTRA_CRDS:
        cp.run_tool([kubectl, "apply", "--server-side", "-f", str(d / f"metallb.io_{plural}.yaml")])

    def served() -> bool:
        return all(
            cp.api("GET", f"/apis/metallb.io/v1beta1/{p}").status == 200 for p in METALLB_EXTRA_CRDS
        )

    wait("MetalLB's CRDs served", served, 30)


def audit_args(workdir: Path) -> tuple[tuple[str, ...], Path]:
    """kube-apiserver flags for the audit log; returns (flags, log path)."""
    policy, log = workdir / "audit-policy.yaml", workdir / "audit.log"
    policy.write_text(AUDIT_POLICY)
    return (
        f"--audit-policy-file={policy}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",
    ), log


# --------------------------------------------------------------------------- waiting


def wait(what: str, cond: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- client


class Api:
    """Keep-alive HTTPS to the apiserver, one connection per thread (admin credentials).

    The bench's own requests must be cheap and quick, so that "as fast as a client can" is
    the apiserver's pace, not the client library's.
    """

    def __init__(self, cp: ControlPlane) -> None:
        self.port = cp.apiserver_port
        self.ctx = ssl.create_default_context(cafile=str(cp.authority.ca.cert))
        self.ctx.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
        self._local = threading.local()
        self._all: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def connection(self, timeout: float | None = 60.0) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ctx, timeout=timeout
        )
        with self._lock:
            self._all.append(conn)
        return conn

    def call(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, JSON]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "vs-metallb-bench"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self.connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            return resp.status, (json.loads(raw) if raw else {})
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: JSON | None = None, **kw: Any) -> JSON:
        status, out = self.call(method, path, body, **kw)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {out.get('message', out)}")
        return out

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()


def service_body(name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        # No NodePorts: the NodePort range (2,768 ports) would cap the Service count.
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def create_services(api: Api, ns: str, names: list[str], workers: int = 8) -> dict[str, float]:
    """Create Services from ``workers`` threads; returns name → monotonic send time."""
    sent: dict[str, float] = {}
    path = f"/api/v1/namespaces/{ns}/services"

    def one(name: str) -> None:
        sent[name] = time.monotonic()
        api.ok("POST", path, service_body(name))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, names))
    return sent


def delete_all(api: Api, collection: str, workers: int = 8) -> None:
    """Delete every object of a namespaced collection (deletecollection, else one by one)."""
    status, _ = api.call("DELETE", collection)
    if status < 300:
        return
    names = [o["metadata"]["name"] for o in api.ok("GET", collection).get("items", [])]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: api.call("DELETE", f"{collection}/{n}"), names))


# --------------------------------------------------------------------------- watch


@dataclass
class SvcState:
    ips: tuple[str, ...] = ()
    first_ip: float | None = None
    modified: int = 0


@dataclass
class ServiceWatch:
    """Every Service event in one namespace, time-stamped on arrival (monotonic)."""

    api: Api
    namespace: str
    services: dict[str, SvcState] = field(default_factory=dict)
    assigned: int = 0
    modified: int = 0
    last_event: float = 0.0
    last_assigned: float = 0.0
    error: str | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: bool = False
    _conn: http.client.HTTPSConnection | None = None

    def start(self) -> ServiceWatch:
        rv = self.api.ok("GET", f"/api/v1/namespaces/{self.namespace}/services")["metadata"][
            "resourceVersion"
        ]
        threading.Thread(target=self._run, args=(rv,), daemon=True, name="watch").start()
        return self

    def _run(self, rv: str) -> None:
        while not self._stop:
            conn = self._conn = self.api.connection(timeout=None)
            try:
                conn.request(
                    "GET",
                    f"/api/v1/namespaces/{self.namespace}/services?watch=1&resourceVersion={rv}"
                    "&allowWatchBookmarks=true&timeoutSeconds=3600",
                    headers={"Accept": "application/json", "User-Agent": "vs-metallb-watch"},
                )
                resp = conn.getresponse()
                if resp.status != 200:
                    self.error = f"watch: HTTP {resp.status}"
                    return
                while line := resp.readline():
                    ev = json.loads(line)
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        self.error = f"watch: {obj.get('message')}"
                        return
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self._on(ev["type"], obj, time.monotonic())
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if not self._stop:
                    self.error = f"watch: {exc}"
                return
            finally:
                conn.close()

    def _on(self, kind: str, obj: JSON, now: float) -> None:
        name = obj["metadata"]["name"]
        lb = (obj.get("status") or {}).get("loadBalancer") or {}
        ips = tuple(i.get("ip", "") for i in lb.get("ingress") or [])
        with self._cond:
            if kind == "DELETED":
                st = self.services.pop(name, None)
                if st is not None and st.first_ip is not None:
                    self.assigned -= 1
            else:
                st = self.services.setdefault(name, SvcState())
                if kind == "MODIFIED":
                    st.modified += 1
                    self.modified += 1
                    self.last_event = now
                st.ips = ips
                if ips and st.first_ip is None:
                    st.first_ip = now
                    self.assigned += 1
                    self.last_assigned = now
            self._cond.notify_all()

    def wait_for(self, what: str, pred: Callable[[ServiceWatch], bool], timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self) or self.error is not None, timeout):
                raise TimeoutError(f"{what}: not after {timeout:.0f}s ({self.assigned} assigned)")
        if self.error:
            raise RuntimeError(self.error)

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        with self._cond:
            return {k: v.ips for k, v in self.services.items()}

    def stop(self) -> None:
        self._stop = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(2)


# --------------------------------------------------------------------------- audit


class AuditLog:
    """Counts write requests on Services from the apiserver's audit log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, since: int, namespace: str) -> Counter[str]:
        """``verb resource[/subresource]`` (`` (code)`` when refused) → requests in
        ``namespace`` since ``mark()``."""
        out: Counter[str] = Counter()
        if not self.path.exists():
            return out
        with self.path.open("rb") as f:
            f.seek(since)
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ref = ev.get("objectRef") or {}
                if ref.get("namespace") != namespace or ref.get("resource") != "services":
                    continue
                sub = ref.get("subresource")
                code = int((ev.get("responseStatus") or {}).get("code") or 0)
                failed = f" ({code})" if code >= 300 else ""
                out[f"{ev.get('verb')} services{'/' + sub if sub else ''}{failed}"] += 1
        return out


# --------------------------------------------------------------------------- controllers' ns


class CtlNamespace:
    """The controllers' namespace (a one-node lab run) and the socat relay into it."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat not found: apt-get install socat")
        topo = workdir / "vsm.clab.yml"
        topo.write_text(CTL_TOPOLOGY)
        self.cp = cp
        self._lab_cm = Lab.up(topo)
        self.lab = self._lab_cm.__enter__()
        self.sock = self.lab.directory / "api.sock"
        self.outer: subprocess.Popen[bytes] | None = None
        try:
            self.outer = subprocess.Popen(
                ["socat", f"UNIX-LISTEN:{self.sock},fork,unlink-early",
                 f"TCP:127.0.0.1:{cp.apiserver_port}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            wait("relay socket", self.sock.exists, 10)
            self.lab.popen(
                "ctl",
                ["socat", f"TCP-LISTEN:{cp.apiserver_port},bind=127.0.0.1,fork,reuseaddr",
                 f"UNIX-CONNECT:{self.sock}"],
                name="relay",
            )  # fmt: skip
            wait("relay in the namespace", self._relay_up, 10)
        except BaseException:
            self.close()
            raise

    def _relay_up(self) -> bool:
        out = self.lab.exec("ctl", ["ss", "-Hltn", f"sport = :{self.cp.apiserver_port}"])
        return bool(out.stdout.strip())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._lab_cm.__exit__(None, None, None)
        if self.outer is not None and self.outer.poll() is None:
            # socat forks one child per connection into its own process group: stop the group
            # we created, by its id (the PID we started).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.outer.pid, signal.SIGTERM)
            try:
                self.outer.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.outer.pid, signal.SIGKILL)
                self.outer.wait(5)


class Proc:
    """One controller process in the controllers' namespace."""

    def __init__(self, ns: CtlNamespace, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.ns = ns
        self.name = name
        self.log_path = ns.lab.node_dir("ctl") / f"{name}.log"
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.popen = ns.lab.popen("ctl", argv, name=name, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_peak_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.ns.lab.stop_process("ctl", self.popen, grace=10)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def go_sum_key() -> str:
    """What the MetalLB build is keyed by (for the report)."""
    h = hashlib.sha256()
    for p in ("go.mod", "go.sum", "frrk8s/aspathprepend.go", "build.sh"):
        h.update((METALLB_MODULE / p).read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def namespace(api: Api, prefix: str) -> Iterator[str]:
    """A fresh namespace whose Services and Events are deleted on exit (no controller-
    manager runs, so deleting the namespace alone would leave its objects behind)."""
    ns = unique(prefix)
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    try:
        yield ns
    finally:
        delete_all(api, f"/api/v1/namespaces/{ns}/services")
        delete_all(api, f"/api/v1/namespaces/{ns}/events")
        api.call("DELETE", f"/api/v1/namespaces/{ns}")
