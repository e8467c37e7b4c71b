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

from exalb.config.model import Peer
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.resources import SECRETS
from speaker.metrics import SECRET_ERRORS

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


class SecretPasswords:
    """Resolve the passwords of peers with ``passwordSecret``; thread-safe, cached."""

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
            SECRET_ERRORS.inc()
            log.warning("secret_get_failed", secret=f"{namespace}/{name}", error=str(exc))
            if entry is not None:  # keep the last known password through API trouble
                return entry
            entry = _Entry(None, f"cannot be read: {exc}", now)
        else:
            if obj is None:
                entry = _Entry(None, "not found", now)
            else:
                pw, problem = password_from_secret(obj)
                entry = _Entry(pw, problem, now)
        with self._lock:
            self._cache[(namespace, name)] = entry
        return entry

    def resolve(self, peers: Iterable[Peer]) -> tuple[dict[str, str], list[str]]:
        """Peer name → password for the peers that reference a Secret, plus problems."""
        out: dict[str, str] = {}
        problems: list[str] = []
        for p in peers:
            ref = p.password_secret
            if ref is None:
                continue
            entry = self._fetch(ref.namespace, ref.name)
            if entry.password is not None:
                out[p.name] = entry.password
            else:
                problems.append(
                    f"BGPPeer/{p.name}: spec.passwordSecret: Secret {ref.namespace}/{ref.name} "
                    f"{entry.problem}"
                )
        return out, problems
