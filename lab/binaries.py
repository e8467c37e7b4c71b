"""Where the lab finds the programs it runs: the Kubernetes control plane and helm/kubectl.

Binaries come from ``tests/controlplane/build.sh`` (built from the Go modules into the cache)
and ``tests/controlplane/install-tools.sh`` (helm, kubectl); a missing one is an error whose
message says how to get it, because a silently skipped test suite looks like a green one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

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


class BinariesNotFoundError(RuntimeError):
    """kube-apiserver/etcd (or helm/kubectl) are not where we look; the message says how
    to get them, because a silently skipped test suite looks exactly like a green one."""


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
