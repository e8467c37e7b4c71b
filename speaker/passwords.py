"""BGPPeer ``passwordSecret`` → MD5 password, read on demand, one Secret at a time.

Why ``get`` and not an informer: the speaker runs on every node, so its RBAC must be as
small as possible. Watching all Secrets of the config namespace would hand every node every
secret there; a ``get`` of exactly the referenced names is all it needs (the chart can even
pin ``resourceNames``). A short cache bounds API traffic; the speaker's periodic resync picks
up a rotated password within the TTL.

MetalLB's rule: the Secret must be of type ``kubernetes.io/basic-auth`` and carry the key
``password``.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from exalb.config.model import Peer, SecretRef
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import SECRETS
from speaker.exabgp.render import RenderProblem
from speaker.metrics import PASSWORD_STALE, SECRET_ERRORS

log = structlog.get_logger("exalb.speaker.passwords")

BASIC_AUTH = "kubernetes.io/basic-auth"


def password_from_secret(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(password, problem): exactly one of them is set."""
    if obj.get("type") != BASIC_AUTH:
        return None, f"type is {obj.get('type')!r}, want {BASIC_AUTH}"
    raw = (obj.get("data") or {}).get("password")
    if raw is None:
        return None, "has no key 'password'"
    try:
        return base64.b64decode(str(raw), validate=True).decode(), None
    except (binascii.Error, UnicodeDecodeError) as exc:
        return None, f"key 'password' is not valid base64 UTF-8: {exc}"


@dataclass
class _Entry:
    password: str | None
    problem: str | None
    fetched: float


#: Event reason on a BGPPeer whose password Secret cannot be read.
SECRET_EVENT = "PasswordSecretUnavailable"


class SecretPasswords:
    """Resolve the passwords of peers with ``passwordSecret``; thread-safe, cached.

    **A password once known is only replaced by another password.** When the Secret cannot
    be read (deleted: 404, forbidden, the API server down, or edited into something that
    holds no password), the last known password stays in use with a warning (log, a
    problem in ``/status``, an event on the BGPPeer, ``exalb_speaker_password_secret_stale``):
    dropping it would remove the neighbor and tear down a working session, the outage a
    careless ``kubectl delete secret`` must not cause. Only a peer whose password was never
    known is left unconfigured.
    """

    def __init__(
        self, kube: KubeClient, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def _fetch(self, namespace: str, name: str) -> _Entry:
        now = self._clock()
        with self._lock:
            entry = self._cache.get((namespace, name))
        if entry is not None and now - entry.fetched < self._ttl:
            return entry
        try:
            obj = self._kube.get(SECRETS, name, namespace)
        except ApiError as exc:
            log.warning("secret_get_failed", secret=f"{namespace}/{name}", error=str(exc))
            fresh = _Entry(None, f"cannot be read: {exc}", now)
        else:
            fresh = _Entry(None, "not found", now) if obj is None else _parse(obj, now)
        if fresh.password is None:
            SECRET_ERRORS.inc()
            if entry is not None and entry.password is not None:
                fresh = _Entry(entry.password, fresh.problem, now)  # keep the last known
        with self._lock:
            self._cache[(namespace, name)] = fresh
        return fresh

    def resolve(self, peers: Iterable[Peer]) -> tuple[dict[str, str], list[RenderProblem]]:
        """Peer name → password for the peers that reference a Secret, plus problems (an
        error: no password, the neighbor is left out; a warning: the last known one is
        used)."""
        out: dict[str, str] = {}
        problems: list[RenderProblem] = []
        for p in peers:
            ref = p.password_secret
            if ref is None:
                continue
            entry = self._fetch(ref.namespace, ref.name)
            if entry.password is not None:
                out[p.name] = entry.password
            stale = entry.password is not None and entry.problem is not None
            PASSWORD_STALE.labels(p.name).set(1 if stale else 0)
            if entry.problem is not None:
                problems.append(secret_problem(p.name, ref, entry.problem, kept=stale))
        return out, problems


def _parse(obj: Mapping[str, Any], now: float) -> _Entry:
    pw, problem = password_from_secret(obj)
    return _Entry(pw, problem, now)


def secret_problem(peer: str, ref: SecretRef, problem: str, *, kept: bool) -> RenderProblem:
    where = f"Secret {ref.namespace}/{ref.name} {problem}"
    if kept:
        return RenderProblem(peer, "spec.passwordSecret", f"{where}; the last known password "
                             "stays in use", "warning", SECRET_EVENT)  # fmt: skip
    return RenderProblem(peer, "spec.passwordSecret", where, "error", SECRET_EVENT)
