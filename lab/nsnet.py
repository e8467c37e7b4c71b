"""Sockets inside lab namespaces from the host process, and a relay to the local apiserver.

Why: the speakers run inside the node namespaces (like a hostNetwork pod on its node), but
the test control plane listens on 127.0.0.1 of the *default* namespace, which a namespace
cannot reach. Instead of linking a namespace to the default one (forbidden by the lab's
network-safety rules), :class:`ApiRelay` listens on ``127.0.0.1:<apiserver port>`` inside
each node namespace and relays every connection, from the test process, to the real
apiserver. TLS passes through untouched, so the admin kubeconfig (server
``https://127.0.0.1:<port>``, certificate for 127.0.0.1) works unchanged inside a node.

A socket belongs to the namespace its creating thread was in; ``setns(2)`` moves only the
calling thread, so :func:`in_netns` switches, creates, and switches back at once (and
checks that it did: a thread left in a lab namespace would put every later socket there).

The host never dials a lab address: the machine's own uplink may share a documentation
range with a lab plan, so a connection from the default namespace to a lab address could
leave the machine. :func:`forbid_host_dials` makes that a hard error in any process that
calls it (the test session, ``scripts/lab``, the benchmarks): a socket of the process's own
namespace may only reach loopback; sockets made inside lab namespaces are not limited.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import http.client
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

CLONE_NEWNET = 0x40000000
#: ioctl on a socket: a new fd for the network namespace the socket belongs to (Linux 4.9+).
SIOCGSKNS = 0x894C
_libc = ctypes.CDLL(None, use_errno=True)
_host_netns: tuple[int, int] | None = None


class HostDialError(PermissionError):
    """A socket of the default namespace tried to reach a non-loopback address."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


@contextlib.contextmanager
def in_netns(namespace: str) -> Iterator[None]:
    """Run the block's socket creations inside ``namespace`` (this thread only).

    On the way out the thread must be back in its own namespace; if switching back failed,
    this raises instead of leaving the thread (and every socket it makes later) inside.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
            if current_netns() != _identity(own):
                raise OSError(f"thread did not return from namespace {namespace}")
    finally:
        os.close(own)
        os.close(target)


def current_netns() -> tuple[int, int]:
    """Identity of the calling thread's network namespace."""
    st = os.stat("/proc/thread-self/ns/net")
    return (st.st_dev, st.st_ino)


def socket_in(
    namespace: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A socket that belongs to ``namespace`` (use it from any thread)."""
    with in_netns(namespace):
        return socket.socket(family, kind, proto)


def socket_netns(sock: socket.socket) -> tuple[int, int] | None:
    """The namespace a socket belongs to, or None when the kernel will not say (no root)."""
    try:
        fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    except OSError:
        return None
    try:
        return _identity(fd)
    finally:
        os.close(fd)


def _check_dial(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("socket.connect", "socket.sendto", "socket.sendmsg") or len(args) < 2:
        return
    sock, address = args[0], args[1]
    if not isinstance(sock, socket.socket) or not isinstance(address, tuple):
        return
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return  # a host name: only "localhost" is ever used, and it resolves to loopback
    if ip.is_loopback or ip.is_unspecified:
        return
    where = socket_netns(sock)
    if where is None or where == _host_netns:
        raise HostDialError(
            f"a socket of the default namespace dialled {ip}: lab addresses are reached from "
            "inside a lab namespace (lab.nsnet.socket_in), the host uses loopback relays only"
        )


def forbid_host_dials() -> None:
    """From now on, refuse any connect/sendto from this process's own namespace to a
    non-loopback address (an audit hook; it cannot be removed, calling twice is harmless)."""
    global _host_netns  # noqa: PLW0603 (one hook per process, installed once)
    if _host_netns is not None:
        return
    _host_netns = current_netns()
    sys.addaudithook(_check_dial)


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
