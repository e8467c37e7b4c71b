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
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
import yaml

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
_BUILD_HINT = (
    "run tests/controlplane/build.sh (it prints the bin directory) or point "
    "EXALB_CONTROLPLANE_BIN at a directory holding kube-apiserver and etcd"
)
_TOOLS_HINT = (
    "run tests/controlplane/install-tools.sh or point EXALB_TOOLS_BIN at a directory "
    "holding helm and kubectl"
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, reached or stopped."""


class BinariesNotFoundError(ControlPlaneError):
    """kube-apiserver/etcd (or helm/kubectl) are not where we look; the message says how
    to get them, because a silently skipped test suite looks exactly like a green one."""


# --------------------------------------------------------------------------- locating


def cache_root() -> Path:
    """Root of exalb's tool cache; shared with the shell scripts in tests/controlplane."""
    env = os.environ.get("EXALB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "exalb"


@dataclass(frozen=True)
class Binaries:
    """Paths of the two control-plane programs."""

    kube_apiserver: Path
    etcd: Path


@dataclass(frozen=True)
class Tools:
    """Paths of the client tools used by tests and demos."""

    helm: Path
    kubectl: Path


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _binaries_in(directory: Path) -> Binaries | None:
    found = Binaries(directory / "kube-apiserver", directory / "etcd")
    if _executable(found.kube_apiserver) and _executable(found.etcd):
        return found
    return None


def find_controlplane_binaries() -> Binaries:
    """Return kube-apiserver and etcd.

    Order: ``$EXALB_CONTROLPLANE_BIN``; the cache directory ``build.sh`` writes for the
    current ``tests/controlplane/go.sum`` (same hash, so the binaries match the pinned
    versions); and, when exalb runs from an installed copy without that go.sum, the most
    recently built cache entry.
    """
    env = os.environ.get("EXALB_CONTROLPLANE_BIN")
    if env:
        found = _binaries_in(Path(env))
        if found is None:
            raise BinariesNotFoundError(
                f"EXALB_CONTROLPLANE_BIN={env} holds no executable kube-apiserver and etcd; "
                + _BUILD_HINT
            )
        return found
    base = cache_root() / "controlplane"
    if _GO_SUM.is_file():
        digest = hashlib.sha256(_GO_SUM.read_bytes()).hexdigest()[:16]
        found = _binaries_in(base / digest / "bin")
        if found is not None:
            return found
        raise BinariesNotFoundError(
            f"kube-apiserver/etcd not built for the current go.sum (looked in "
            f"{base / digest / 'bin'}); " + _BUILD_HINT
        )
    candidates = sorted(
        (p for p in base.glob("*/bin") if _binaries_in(p) is not None),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    if candidates:
        found = _binaries_in(candidates[0])
        assert found is not None
        return found
    raise BinariesNotFoundError(f"no kube-apiserver/etcd under {base}; " + _BUILD_HINT)


def find_tools() -> Tools:
    """Return helm and kubectl: ``$EXALB_TOOLS_BIN``, then the cache, then ``$PATH``."""
    dirs = [Path(d) for d in (os.environ.get("EXALB_TOOLS_BIN"),) if d]
    dirs.append(cache_root() / "tools" / "bin")
    for directory in dirs:
        helm, kubectl = directory / "helm", directory / "kubectl"
        if _executable(helm) and _executable(kubectl):
            return Tools(helm, kubectl)
    helm_path, kubectl_path = shutil.which("helm"), shutil.which("kubectl")
    if helm_path and kubectl_path:
        return Tools(Path(helm_path), Path(kubectl_path))
    raise BinariesNotFoundError("helm/kubectl not found; " + _TOOLS_HINT)


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


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def new_key(path: Path) -> None:
    # P-256: generated in milliseconds (RSA would dominate start-up time) and accepted by
    # Go's TLS stack and by the service-account token signer (ES256).
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(path), cwd=path.parent,
    )  # fmt: skip
    path.chmod(0o600)


def issue_cert(
    *,
    ca_crt: Path,
    ca_key: Path,
    key: Path,
    crt: Path,
    subject: str,
    extensions: str,
) -> None:
    csr = crt.with_suffix(".csr")
    ext = crt.with_suffix(".ext")
    ext.write_text(extensions)
    new_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=crt.parent)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "7", "-sha256", "-extfile", str(ext), "-out", str(crt),
        cwd=crt.parent,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


@dataclass(frozen=True)
class Pki:
    """File paths of the per-instance credentials."""

    ca_crt: Path
    ca_key: Path
    serving_crt: Path
    serving_key: Path
    admin_crt: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def make_pki(directory: Path) -> Pki:
    """Mint a CA, an apiserver serving cert, an admin client cert and a SA signing key.

    The admin identity is CN=admin, O=system:masters: the ``system:masters`` group is
    bound to cluster-admin by the apiserver's bootstrap RBAC policy, so the harness can do
    anything, while identities we mint later (ServiceAccount tokens) get only what RBAC
    grants them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_crt=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_crt=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_crt=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    new_key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", "/CN=exalb-test-ca",
        "-days", "7", "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(pki.ca_crt), cwd=directory,
    )  # fmt: skip
    sans = ",".join(
        [
            f"IP:{_LOCALHOST}",
            f"IP:{_KUBERNETES_SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    issue_cert(
        ca_crt=pki.ca_crt,
        ca_key=pki.ca_key,
        key=pki.serving_key,
        crt=pki.serving_crt,
        subject="/CN=kube-apiserver",
        extensions="basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={sans}\n",
    )
    issue_cert(
        ca_crt=pki.ca_crt,
        ca_key=pki.ca_key,
        key=pki.admin_key,
        crt=pki.admin_crt,
        subject="/O=system:masters/CN=admin",
        extensions="basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )
    new_key(pki.sa_key)
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub), cwd=directory)
    return pki


@dataclass(frozen=True)
class ApiResponse:
    """Status and decoded JSON body of one apiserver call (body is {} when not JSON)."""

    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The ``Status.message`` of an error response, or an empty string."""
        return str(self.body.get("message", ""))


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
class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1, with an admin kubeconfig; a context manager.

    ``with ControlPlane() as cp:`` starts both and writes ``cp.kubeconfig``;
    leaving the block stops them and deletes ``cp.workdir`` (unless ``keep_workdir``).
    """

    binaries: Binaries | None = None
    startup_timeout: float = _DEFAULT_TIMEOUT
    keep_workdir: bool = False
    extra_apiserver_args: tuple[str, ...] = ()
    workdir: Path = field(init=False)
    pki: Pki = field(init=False)
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

    @property
    def kubeconfig(self) -> Path:
        """Admin (system:masters) kubeconfig for kubectl, helm and the kubernetes client."""
        return self.workdir / "admin.kubeconfig"

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
            self.pki = make_pki(self.workdir / "pki")
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
            {"client-certificate": str(self.pki.admin_crt), "client-key": str(self.pki.admin_key)},
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
        pki = self.pki
        proc = _Proc(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--bind-address={_LOCALHOST}",
                f"--advertise-address={_LOCALHOST}",
                f"--secure-port={self.apiserver_port}",
                f"--etcd-servers=http://{_LOCALHOST}:{self.etcd_port}",
                f"--tls-cert-file={pki.serving_crt}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
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

    # ----------------------------------------------------------------- client side

    def _client_ssl(self, with_admin_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        if with_admin_cert:
            ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def api(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> ApiResponse:
        """One HTTPS call to the apiserver as admin (or as the bearer ``token``).

        Deliberately tiny: tests want the exact status code and the server's own error
        message (which names the offending field), not a client library's interpretation.
        Non-2xx responses are returned, not raised; connection errors raise ``OSError``.
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
            ctx = self._client_ssl(with_admin_cert=False)
        else:
            ctx = self._ssl or self._client_ssl()
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                return _response(resp.status, resp.read(), resp.headers.get_all("Warning"))
        except urllib.error.HTTPError as err:
            return _response(err.code, err.read(), err.headers.get_all("Warning"))

    def version(self) -> dict[str, Any]:
        """The apiserver's ``/version`` document (gitVersion etc.)."""
        return self.api("GET", "/version").body

    def ensure_namespace(self, name: str) -> None:
        """Create namespace ``name`` unless it exists."""
        resp = self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if not resp.ok and resp.status != 409:
            raise ControlPlaneError(f"creating namespace {name}: {resp.status} {resp.message}")

    def delete_namespace(self, name: str) -> None:
        """Delete namespace ``name``.

        Without kube-controller-manager the namespace stays Terminating forever; that is
        harmless for tests, which use unique names.
        """
        self.api("DELETE", f"/api/v1/namespaces/{name}")

    def create_service_account(self, namespace: str, name: str) -> None:
        """Create ServiceAccount ``namespace/name`` unless it exists."""
        resp = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )
        if not resp.ok and resp.status != 409:
            raise ControlPlaneError(
                f"creating serviceaccount {namespace}/{name}: {resp.status} {resp.message}"
            )

    def create_token(self, namespace: str, service_account: str, expiration: int = 3600) -> str:
        """Mint a bound token for an existing ServiceAccount through the TokenRequest API.

        This is how a component gets *exactly* the RBAC a Helm install grants its
        ServiceAccount, instead of running with the harness's admin rights.
        """
        resp = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration},
            },
        )
        if not resp.ok:
            raise ControlPlaneError(
                f"TokenRequest for {namespace}/{service_account}: {resp.status} {resp.message}"
            )
        return str(resp.body["status"]["token"])

    def write_token_kubeconfig(self, token: str, name: str = "serviceaccount") -> Path:
        """Write a kubeconfig that authenticates with ``token``; returns its path."""
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, name, {"token": token})
        return path

    def _write_kubeconfig(self, path: Path, user: str, credentials: Mapping[str, str]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "exalb-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_crt),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": user, "context": {"cluster": "exalb-test", "user": user}}],
            "current-context": user,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(path)

    # ----------------------------------------------------------------- tools

    def run_tool(
        self,
        argv: list[str],
        *,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm/kubectl (or anything reading ``$KUBECONFIG``) against this apiserver.

        Helm keeps cache and config under ``$HOME`` by default; they are redirected into
        the working directory so runs do not touch the user's helm setup.
        """
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        helm_home = self.workdir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def _response(status: int, raw: bytes, warnings: list[str] | None) -> ApiResponse:
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw.decode(errors="replace")}
    body = decoded if isinstance(decoded, dict) else {"items": decoded}
    return ApiResponse(status, body, tuple(warnings or ()))


@contextlib.contextmanager
def control_plane(**kwargs: Any) -> Iterator[ControlPlane]:
    """Functional spelling of ``with ControlPlane(...) as cp``."""
    with ControlPlane(**kwargs) as cp:
        yield cp
