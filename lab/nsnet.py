"""Sockets inside lab namespaces from the host process, and a relay to the local apiserver.

Why: the speakers run inside the node namespaces (like a hostNetwork pod on its node), but
the test control plane listens on 127.0.0.1 of the *default* namespace, which a namespace
cannot reach. Instead of linking a namespace to the default one (forbidden by the lab's
network-safety rules), :class:`ApiRelay` listens on ``127.0.0.1:<apiserver port>`` inside
each node namespace and relays every connection, from the test process, to the real
apiserver. TLS passes through untouched, so the admin kubeconfig (server
``https://127.0.0.1:<port>``, certificate for 127.0.0.1) works unchanged inside a node.

A socket belongs to the namespace its creating thread was in; ``setns(2)`` moves only the
calling thread, so :func:`in_netns` switches, creates, and switches back at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import socket
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(namespace: str) -> Iterator[None]:
    """Run the block's socket creations inside ``namespace`` (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def socket_in(namespace: str, family: int = socket.AF_INET) -> socket.socket:
    with in_netns(namespace):
        return socket.socket(family, socket.SOCK_STREAM)


def http_get(
    namespace: str, port: int, path: str, host: str = "127.0.0.1", timeout: float = 15.0
) -> tuple[int, bytes]:
    """GET ``http://host:port/path`` from inside ``namespace``."""
    sock = socket_in(namespace)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class ApiRelay:
    """``127.0.0.1:port`` in each namespace → ``127.0.0.1:port`` of the test process."""

    def __init__(self, port: int, namespaces: list[str]) -> None:
        self.port = port
        self.listeners: list[socket.socket] = []
        self.connections: list[socket.socket] = []
        self._stopping = False
        for ns in namespaces:
            lst = socket_in(ns)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("127.0.0.1", port))
            lst.listen(64)
            self.listeners.append(lst)
        for lst in self.listeners:
            threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _accept(self, lst: socket.socket) -> None:
        while not self._stopping:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.connections += [client, upstream]
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        for s in self.listeners + self.connections:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class HostRelay:
    """``127.0.0.1:<free port>`` of the host → ``address:port`` inside ``namespace``.

    The reverse of :class:`ApiRelay`: a cluster's apiserver lives in a namespace of its own,
    and host tools (kubectl, helm, the tests' client) reach it through this listener on the
    host's loopback. Only loopback is listened on; the upstream socket is created inside the
    namespace, so the host never routes to a lab address.
    """

    def __init__(self, namespace: str, port: int, address: str = "127.0.0.1") -> None:
        self.namespace, self.target = namespace, (address, port)
        self.connections: list[socket.socket] = []
        self._stopping = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="host-relay").start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket_in(self.namespace)
            try:
                upstream.settimeout(5)
                upstream.connect(self.target)
                upstream.settimeout(None)
            except OSError:
                client.close()
                upstream.close()
                continue
            self.connections = [c for c in self.connections if c.fileno() != -1]
            self.connections += [client, upstream]
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        for s in [self.listener, *self.connections]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
