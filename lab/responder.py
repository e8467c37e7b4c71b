"""A tiny HTTP responder that stands in for a Service's pods on one lab node.

In a cluster, kube-proxy delivers traffic for a LoadBalancer IP to the Service's pods; the
lab has no kube-proxy, so each node runs this responder bound to the Service IP, answering
with the node's name. That makes "which node did the router send me to?" visible to the
client, which is the whole point of the ECMP demo. Started inside a node namespace.

    python -m lab.responder --bind 203.0.113.10 --port 80 --name n1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="exalb-lab-responder")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--name", required=True)
    args = p.parse_args(argv)
    body = f"{args.name}\n".encode()

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

    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    print(f"responding as {args.name} on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
