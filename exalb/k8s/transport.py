"""HTTP to the API server on urllib3: TLS, client certificates, bearer tokens.

Built from :class:`exalb.k8s.kubeconfig.Credentials`, without the ``kubernetes`` package
(why: :mod:`exalb.k8s.kubeconfig`). One TLS context per client, made once: the CA and the
client certificate are loaded at start (a certificate given as data goes through an
anonymous in-memory file, never to disk); the bearer token is read from its file again
every :data:`TOKEN_REFRESH` seconds, since projected service account tokens rotate.

A kubeconfig that needs a credential plugin or a proxy (``needs_official_loader``) is
loaded by :mod:`exalb.k8s.official` (the ``kubernetes`` package, imported only then); its
result feeds the same kind of connection pool and the same request path, so there is one
way requests are sent.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3

from exalb.k8s.kubeconfig import Credentials, KubeconfigError

TOKEN_REFRESH = 60.0  # seconds; client-go re-reads a token file about as often
POOL_SIZE = 16  # watches (one connection each) + the controller's writer pool


@dataclass
class Transport:
    """A connection pool to one API server and the ``Authorization`` header for it."""

    server: str
    pool: urllib3.PoolManager
    authorization: Callable[[], str | None]


class _TokenFile:
    """The token in a file, re-read when older than :data:`TOKEN_REFRESH`."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at = -TOKEN_REFRESH

    def __call__(self) -> str | None:
        with self._lock:
            if self._value is None or self._clock() - self._read_at >= TOKEN_REFRESH:
                try:
                    with open(self._path, encoding="utf-8") as fh:
                        self._value = fh.read().strip()
                    self._read_at = self._clock()
                except OSError:
                    pass  # keep the last token; the API server answers 401 if it expired
            return f"Bearer {self._value}" if self._value else None


def _load_chain(ctx: ssl.SSLContext, creds: Credentials) -> None:
    if not (creds.cert_data or creds.cert_file):
        return
    fds: list[int] = []
    try:

        def path(data: bytes | None, file: str | None, what: str) -> str:
            if data is None:
                if file is None:
                    raise KubeconfigError(f"{what} is missing")
                return file
            fd = os.memfd_create(f"exalb-{what}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, data)
            return f"/proc/self/fd/{fd}"

        cert = path(creds.cert_data, creds.cert_file, "client-certificate")
        key = path(creds.key_data, creds.key_file, "client-key")
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise KubeconfigError(f"client certificate/key: {exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)


def ssl_context(creds: Credentials) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(
            cafile=creds.ca_file,
            cadata=creds.ca_data.decode("ascii", "replace") if creds.ca_data else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise KubeconfigError(f"certificate authority: {exc}") from exc
    if creds.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _load_chain(ctx, creds)
    return ctx


def build(creds: Credentials, socket_options: list[tuple[int, int, int]]) -> Transport:
    if creds.needs_official_loader:
        from exalb.k8s.official import plugin_transport  # noqa: PLC0415 (plugins only)

        return plugin_transport(creds.source, socket_options)
    pool_args: dict[str, Any] = {"maxsize": POOL_SIZE, "socket_options": socket_options}
    if creds.server.startswith("https://"):
        pool_args["ssl_context"] = ssl_context(creds)
        if creds.insecure:
            pool_args["cert_reqs"] = ssl.CERT_NONE
            pool_args["assert_hostname"] = False
        if creds.tls_server_name:
            pool_args["server_hostname"] = creds.tls_server_name
    if creds.token_file and not creds.token:
        auth: Callable[[], str | None] = _TokenFile(creds.token_file)
    else:
        header = f"Bearer {creds.token}" if creds.token else None
        auth = lambda: header  # noqa: E731
    return Transport(creds.server, urllib3.PoolManager(**pool_args), auth)
