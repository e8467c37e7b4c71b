"""The per-route floor for ``vs_metallb.py``: a bare ExaBGP API process fed line by line.

ExaBGP runs this as its ``process``. It drains stdin in a thread (as every API process must,
docs/exabgp.md, "Draining stdin") and copies each line written to the FIFO ``<fifo>`` to
ExaBGP, unchanged and at once: the bench writes ``announce route <prefix> next-hop self``
there and times the route's arrival in the router's FIB. Nothing between the bench's write
and ExaBGP but a pipe, so this is the best an ExaBGP-based speaker can do per route.

Usage (from exabgp.conf): ``run <python> exabgp_line_feeder.py <fifo>``.
"""

from __future__ import annotations

import os
import sys
import threading


def main() -> None:
    fifo = sys.argv[1]

    def drain() -> None:
        for _ in sys.stdin:
            pass
        os._exit(0)  # ExaBGP is gone

    threading.Thread(target=drain, daemon=True).start()
    while True:  # a writer that closes the FIFO is not the end: reopen
        with open(fifo) as f:
            for line in f:
                sys.stdout.write(line)
                sys.stdout.flush()


if __name__ == "__main__":
    main()
