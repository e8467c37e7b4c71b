"""The floor for ``bench/bgp.py``: a bare ExaBGP API process that announces N routes at once.

ExaBGP runs this as its ``process`` (no bridge, no speaker). It drains stdin in a thread (as
every API process must, docs/exabgp.md, "Draining stdin"), waits for the session's ``up`` event,
then for the trigger file, then writes the routes as ``announce attributes next-hop self nlri ...``
lines of 256 prefixes (the same batching the speaker's driver uses, so the floor is ExaBGP's best
case) and records the start and the last ack in ``<out>`` as JSON.

Usage (from exabgp.conf): ``run <python> exabgp_feeder.py <trigger> <out> <first-ip> <n>``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import threading
import time

PER_LINE = 256


def main() -> None:
    trigger, out, first, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    up = threading.Event()
    acks = [0]
    acked = threading.Condition()

    def drain() -> None:
        for line in sys.stdin:
            s = line.strip()
            if s in ("done", "error"):
                with acked:
                    acks[0] += 1
                    acked.notify_all()
            elif '"state": "up"' in s:
                up.set()
        os._exit(0)  # ExaBGP is gone

    threading.Thread(target=drain, daemon=True).start()
    up.wait()
    while not os.path.exists(trigger):
        time.sleep(0.001)
    base = ipaddress.ip_address(first)
    prefixes = [f"{base + i}/32" for i in range(n)]
    lines = [
        "announce attributes next-hop self nlri " + " ".join(prefixes[i : i + PER_LINE])
        for i in range(0, n, PER_LINE)
    ]
    t0 = time.monotonic()
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    with acked:
        acked.wait_for(lambda: acks[0] >= len(lines))
    with open(out, "w") as f:
        json.dump({"t0": t0, "acked": time.monotonic(), "lines": len(lines)}, f)
    threading.Event().wait()  # stay alive: ExaBGP respawns a dead process


if __name__ == "__main__":
    main()
