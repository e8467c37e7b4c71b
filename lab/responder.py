"""A tiny responder that stands in for a Service's pods on one lab node.

In a cluster, kube-proxy delivers traffic for a LoadBalancer IP to the Service's pods; the
lab has no kube-proxy, so each node runs this responder bound to the Service IPs, answering
with the node's name. That makes "which node did the router (or the L2 owner) send me to?"
visible to the client, which is the whole point of the ECMP and failover checks. Started
inside a node namespace (see ``Lab.start_responder``); stdlib only, so it runs as a plain
script from any interpreter.

* HTTP (default): every GET is answered with ``<name>\\n``.
* UDP (``--udp``): every datagram is answered with ``<name> <datagram>``, so a client can
  match answers to its requests while it sends one every few milliseconds.

    python lab/responder.py --bind 203.0.113.10 --port 80 --name n1
    python lab/responder.py --udp --bind 198.51.100.50 --bind 2001:db8:50::50 --port 9999 \\
        --name n1
"""

from __future__ import annotations

import argparse
import ipaddress
import selectors
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


#: Printed (to stderr) once every address is bound: from then on nothing is refused.
READY = "responding as"


def serve_udp(binds: Sequence[str], port: int, name: str) -> Callable[[], None]:
    """Bind; the returned loop answers every datagram with ``name + b" " + datagram``."""
    prefix = name.encode() + b" "
    sel = selectors.DefaultSelector()
    for address in binds:
        sock = socket.socket(_family(address), socket.SOCK_DGRAM)
        sock.bind((address, port))
        sel.register(sock, selectors.EVENT_READ)
    return lambda: _udp_loop(sel, prefix)


def _udp_loop(sel: selectors.BaseSelector, prefix: bytes) -> None:
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data, peer = sock.recvfrom(2048)
            sock.sendto(prefix + data, peer)


def serve_http(binds: Sequence[str], port: int, name: str) -> Callable[[], None]:
    """Bind; the returned loop answers every GET with ``name``, one server thread each."""
    body = f"{name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    servers = []
    for address in binds:
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": _family(address)})
        server = server_class((address, port), Handler)
        server.daemon_threads = True
        servers.append(server)

    def loop() -> None:
        for server in servers[1:]:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[0].serve_forever()

    return loop


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="exalb-lab-responder")
    p.add_argument("--bind", required=True, action="append", help="address (repeatable)")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--name", required=True)
    p.add_argument("--udp", action="store_true", help="answer UDP datagrams instead of HTTP")
    args = p.parse_args(argv)
    what = "udp" if args.udp else "http"
    loop = (serve_udp if args.udp else serve_http)(args.bind, args.port, args.name)
    binds = ", ".join(args.bind)
    print(f"{READY} {args.name} on {binds} {what}/{args.port}", file=sys.stderr, flush=True)
    loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
