"""A throwaway Kubernetes control plane (etcd + kube-apiserver) for tests and lab demos.

Why this exists: exalb's controller and speaker must be exercised against a *real*
kube-apiserver — real admission, real CRD schema and CEL validation, real RBAC, real
TokenRequest — not a mock whose behaviour we would have to guess. Like controller-runtime's
envtest we run the two upstream binaries as plain processes; unlike a kind cluster there is
no container runtime, no kubelet and no node, so start-up takes a few seconds and needs no
privileges.

Binaries come from ``tests/controlplane/build.sh`` (kube-apiserver and etcd built from the Go
modules) and ``tests/controlplane/install-tools.sh`` (helm, kubectl); see
:func:`find_controlplane_binaries` and :func:`find_tools`.

Rules this module keeps:

* every listener binds to 127.0.0.1 on a port picked from the kernel's free ports;
* credentials are minted per instance (a throwaway CA, serving and client certificates,
  service-account signing key) with the ``openssl`` CLI, because the ``cryptography``
  package is not a dependency of exalb;
* processes are stopped by the PID we started, never by name, and the working directory is
  removed on :meth:`ControlPlane.stop` — also when start-up fails half-way;
* readiness is polled (``/health`` on etcd, ``/readyz`` on the apiserver), never slept for.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from lab.apiserver import AdminAccess, ApiError
from lab.binaries import Binaries, find_controlplane_binaries
from lab.pki import CertificateAuthority, KeyPair, PkiError

log = structlog.get_logger(__name__)

#: Service ClusterIP range handed to the apiserver. Pure data here (no kube-proxy runs);
#: it only has to be a valid range, and 10.96.0.0/16 mirrors kubeadm's default.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
#: First address of the range; the apiserver allocates it to the ``kubernetes`` Service,
#: so the serving certificate names it like a real cluster's would.
_KUBERNETES_SERVICE_IP = "10.96.0.1"
_LOCALHOST = "127.0.0.1"
_DEFAULT_TIMEOUT = 60.0
_REPO_ROOT = Path(__file__).resolve().parents[1]
_GO_SUM = _REPO_ROOT / "tests" / "controlplane" / "go.sum"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, reached or stopped."""


# Errors of the parts, under one name for callers.
ControlPlaneErrors = (ControlPlaneError, ApiError, PkiError)


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    There is a window between closing our probe socket and the server binding the port;
    :meth:`ControlPlane.start` retries once with fresh ports if a server fails to come up.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            # start_new_session: a Ctrl-C aimed at pytest must not reach the servers before
            # our own shutdown does (etcd would stop first and the apiserver would spin).
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.debug("controlplane.process.started", name=self.name, pid=self.popen.pid)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the PID we started, SIGKILL it after ``timeout``; no name matching."""
        proc = self.popen
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("controlplane.process.kill", name=self.name, pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=timeout)
        log.debug("controlplane.process.stopped", name=self.name, pid=proc.pid)
        self.popen = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ControlPlane(AdminAccess):
    """etcd + kube-apiserver on 127.0.0.1, with an admin kubeconfig; a context manager.

    ``with ControlPlane() as cp:`` starts both and writes ``cp.kubeconfig``;
    leaving the block stops them and deletes ``cp.workdir`` (unless ``keep_workdir``).
    """

    binaries: Binaries | None = None
    startup_timeout: float = _DEFAULT_TIMEOUT
    keep_workdir: bool = False
    extra_apiserver_args: tuple[str, ...] = ()
    workdir: Path = field(init=False)
    authority: CertificateAuthority = field(init=False)
    admin: KeyPair = field(init=False)
    serving: KeyPair = field(init=False)
    apiserver_port: int = field(init=False, default=0)
    etcd_port: int = field(init=False, default=0)
    #: Seconds from spawning the processes until etcd is healthy and /readyz says ok.
    startup_seconds: float = field(init=False, default=0.0)
    _etcd: _Proc | None = field(init=False, default=None)
    _apiserver: _Proc | None = field(init=False, default=None)
    _ssl: ssl.SSLContext | None = field(init=False, default=None)
    _owns_workdir: bool = field(init=False, default=False)

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def server(self) -> str:
        """Base URL of the apiserver."""
        return f"https://{_LOCALHOST}:{self.apiserver_port}"

    def start(self) -> None:
        """Create credentials, start etcd then the apiserver, wait until /readyz is ok.

        Any failure stops what was started and removes the working directory before the
        exception propagates, so a broken start leaves no process and no files behind.
        """
        binaries = self.binaries or find_controlplane_binaries()
        self.binaries = binaries
        self.workdir = Path(tempfile.mkdtemp(prefix="exalb-controlplane-"))
        self._owns_workdir = True
        atexit.register(self.stop)
        try:
            self.authority = CertificateAuthority(self.workdir / "pki", "exalb-test-ca")
            # system:masters is bound to cluster-admin by the bootstrap RBAC policy, so the
            # harness can do anything, while identities minted later (ServiceAccount
            # tokens) get only what RBAC grants them.
            self.admin = self.authority.client("admin", "admin", "system:masters")
            self.serving = self.authority.serving(
                "apiserver",
                "kube-apiserver",
                [_LOCALHOST, _KUBERNETES_SERVICE_IP],
                ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
            )  # fmt: skip
            self._ssl = self._client_ssl()
            for attempt in (1, 2):
                try:
                    self._start_processes()
                    break
                except ControlPlaneError as err:
                    # A port may have been taken between probing and binding; a second
                    # try with fresh ports (and fresh etcd data) settles that race. Other
                    # failures would only fail again, twice as slowly.
                    if attempt == 2 or "address already in use" not in str(err):
                        raise
                    log.warning("controlplane.start.retry")
                    self._stop_processes()
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        except BaseException:
            self.stop()
            raise

    def _start_processes(self) -> None:
        began = time.monotonic()
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        # The kubeconfig names the server port, so it is rewritten for every attempt.
        self._write_kubeconfig(
            self.kubeconfig,
            "admin",
            {"client-certificate": str(self.admin.cert), "client-key": str(self.admin.key)},
        )
        self._start_etcd()
        self._start_apiserver()
        self.startup_seconds = time.monotonic() - began
        log.info(
            "controlplane.ready",
            server=self.server,
            startup_seconds=round(self.startup_seconds, 2),
            workdir=str(self.workdir),
        )

    def stop(self) -> None:
        """Stop the apiserver, then etcd (by PID), and remove the working directory.

        Idempotent; also registered with :mod:`atexit` so an interrupted test session does
        not leak servers.
        """
        self._stop_processes()
        atexit.unregister(self.stop)
        if self._owns_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def _stop_processes(self) -> None:
        if self._apiserver is not None:
            self._apiserver.stop()
        if self._etcd is not None:
            self._etcd.stop()

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """Stop and start kube-apiserver on the same port; etcd and its data stay.

        Models an apiserver rollout (or, with ``down_for`` seconds of downtime, an outage):
        clients must survive it and find every object (CRDs included) where they left it.
        """
        if self._apiserver is None:
            raise ControlPlaneError("control plane is not running")
        began = time.monotonic()
        self._apiserver.stop()
        if down_for > 0:
            time.sleep(down_for)
        self._start_apiserver()
        log.info("controlplane.apiserver.restarted", seconds=round(time.monotonic() - began, 2))

    # ----------------------------------------------------------------- processes

    def _start_etcd(self) -> None:
        assert self.binaries is not None
        data = self.workdir / "etcd"
        peer_port = free_port()
        client_url = f"http://{_LOCALHOST}:{self.etcd_port}"
        peer_url = f"http://{_LOCALHOST}:{peer_port}"
        # Plain HTTP is acceptable: both ends are on loopback and live for one test session.
        proc = _Proc(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=exalb",
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=exalb={peer_url}",
                "--initial-cluster-state=new",
                # Durability is worthless for throwaway data and fsync dominates latency.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd = proc
        proc.start()
        self._wait(proc, lambda: self._etcd_healthy(client_url), "etcd /health")

    def _start_apiserver(self) -> None:
        assert self.binaries is not None
        ca = self.authority
        proc = _Proc(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--bind-address={_LOCALHOST}",
                f"--advertise-address={_LOCALHOST}",
                f"--secure-port={self.apiserver_port}",
                f"--etcd-servers=http://{_LOCALHOST}:{self.etcd_port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={ca.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={ca.sa_pub}",
                f"--service-account-signing-key-file={ca.sa_key}",
                "--allow-privileged=true",
                # The endpoint reconciler publishes the advertise address as the endpoint of
                # the `kubernetes` Service and refuses loopback addresses; nothing in a
                # node-less test cluster routes to that Service, so skip it.
                "--endpoint-reconciler-type=none",
                *self.extra_apiserver_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._apiserver = proc
        proc.start()
        self._wait(proc, self._apiserver_ready, "kube-apiserver /readyz")

    def _wait(self, proc: _Proc, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while True:
            if not proc.alive():
                raise ControlPlaneError(
                    f"{proc.name} exited while waiting for {what}; last log lines:\n"
                    + proc.log_tail()
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ok after {self.startup_timeout:.0f}s; last log lines:\n"
                    + proc.log_tail()
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    @staticmethod
    def _etcd_healthy(client_url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        try:
            return self.api("GET", "/readyz", timeout=2).status == 200
        except OSError:
            return False


@contextlib.contextmanager
def control_plane(**kwargs: Any) -> Iterator[ControlPlane]:
    """Functional spelling of ``with ControlPlane(...) as cp``."""
    with ControlPlane(**kwargs) as cp:
        yield cp
