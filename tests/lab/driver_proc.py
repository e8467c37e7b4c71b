"""A stand-in speaker process for lab tests: runs the real Driver until killed.

Usage: ``python driver_proc.py <bridge socket> <spec.json>``; spec = {"neighbors": [[name,
address, family, gr]], "routes": [[prefix, peer, local_pref|null, [communities]]]}. After
every convergence it prints one JSON line with the command counts it has sent so far, so a
test can prove that a restarted speaker converged *by diff* (no announce, no withdraw).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys

import structlog

from speaker.decisions import Route
from speaker.exabgp import connection as drv
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver
from speaker.exabgp.render import Neighbor


def _count(verb: str) -> float:
    return float(drv.COMMANDS.labels(verb)._value.get())


async def main(sock: str, spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    d = Driver(unix_connector(sock), reconnect_delay=0.1)
    d.set_neighbors(Neighbor(n, a, fam, gr, "") for n, a, fam, gr in spec["neighbors"])
    d.set_routes(
        Route(ipaddress.ip_network(p), peer, local_pref=lp, communities=tuple(c))
        for p, peer, lp, c in spec["routes"]
    )
    task = asyncio.create_task(d.run())
    await d.wait_converged(30)
    print(
        json.dumps(
            {
                "converged": True,
                "announce": _count("announce"),
                "withdraw": _count("withdraw"),
                "show": _count("show"),
            }
        ),
        flush=True,
    )
    await task


if __name__ == "__main__":
    # stdout carries the reports; logs go to stderr as JSON (as in the speaker)
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )  # fmt: skip
    asyncio.run(main(sys.argv[1], sys.argv[2]))
