"""BIRD 2 (Debian's ``bird2``) as a lab router: a second router implementation next to FRR.

Why: exalb must work with any router a user has, and BIRD behaves differently where it
matters (graceful restart keeps stale paths until End-of-RIB, no JSON output, its own
multipath rules). A router node labelled ``exalb.router: bird`` runs BIRD from its bound
``bird.conf`` (containerlab's file, like FRR's ``frr.conf``); BIRD configures no addresses,
so the router's come from its ``exec`` lines.

One instance per router, all state under its directory: ``bird -f`` (foreground, started by
the lab as a recorded process and stopped by PID), its own control socket (``-s``) that
``birdc -s`` reaches from any namespace, and a copy of the config.

``birdc`` has no JSON output; :func:`parse_route` and :func:`parse_protocols` turn its text
into the shapes the tests use for FRR's JSON (``paths`` with ``nexthops`` and ``stale``; a
state per neighbor), so router-agnostic tests read either.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lab import netns
from lab.frrconf import IPAddress

if TYPE_CHECKING:
    from lab.topology import Node

BIRD_CONF_TARGET = "/etc/bird/bird.conf"


class BirdError(RuntimeError):
    """BIRD failed to start or answer."""


def available() -> bool:
    return shutil.which("bird") is not None and shutil.which("birdc") is not None


@dataclass(frozen=True)
class BirdInstance:
    node: str
    namespace: str
    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "bird.ctl"

    @property
    def config(self) -> Path:
        return self.directory / "bird.conf"

    def argv(self) -> list[str]:
        return ["bird", "-f", "-c", str(self.config), "-s", str(self.socket)]

    def birdc(self, *command: str, timeout: float = 10.0) -> str:
        """``birdc -s <socket> <command>`` (a unix socket: any namespace works)."""
        proc = netns.run(["birdc", "-s", str(self.socket), *command], timeout=timeout)
        return proc.stdout

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = netns.run(["birdc", "-s", str(self.socket), "show", "status"], check=False)
            if proc.returncode == 0 and "Daemon is up and running" in proc.stdout:
                return
            if time.monotonic() > deadline:
                raise BirdError(f"{self.node}: birdc not answering after {timeout}s")
            time.sleep(0.05)

    def protocols(self) -> dict[str, dict[str, Any]]:
        return parse_protocols(self.birdc("show", "protocols", "all"))

    def bgp_route(self, prefix: str) -> dict[str, Any] | None:
        """FRR's ``show bgp ... <prefix> json`` shape: ``{"paths": [...]}`` or None.

        BIRD marks no single route stale in its output: while a neighbor's graceful restart
        is active (from the session loss until its End-of-RIB or the restart timer), every
        route of that protocol is stale, so each path gets ``stale`` from its protocol."""
        argv = ["birdc", "-s", str(self.socket), "show", "route", "for", prefix, "all"]
        proc = netns.run(argv, check=False)
        if "Network not found" in proc.stdout:
            return None
        if proc.returncode != 0:
            raise BirdError(f"{self.node}: {' '.join(argv)}: {proc.stdout}{proc.stderr}")
        route = parse_route(proc.stdout, prefix)
        if route is not None:
            restarting = {
                p["name"] for p in self.protocols().values() if p.get("gracefulRestartActive")
            }
            for path in route["paths"]:
                path["stale"] = path["protocol"] in restarting
        return route


class Starter(Protocol):
    """What :func:`start` needs of the lab (:class:`lab.runner.Lab`)."""

    def popen(self, node: str, argv: Sequence[str], name: str | None = None) -> Any: ...


def start(lab: Starter, router: Node, inst: BirdInstance) -> BirdInstance:
    """Start BIRD for ``router`` from a copy of its bound ``bird.conf`` (``configure``
    commands must never touch the repository's file); a recorded lab process."""
    conf = router.bind_source(BIRD_CONF_TARGET)
    if conf is None or not available():
        raise BirdError(f"{router.name}: needs a bird.conf bind and Debian's bird2 installed")
    inst.directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(conf, inst.config)
    lab.popen(router.name, inst.argv(), name="bird")
    return inst


# -- birdc text -----------------------------------------------------------------------------

_PROTO_HEAD = re.compile(r"^(\S+)\s+BGP\s+\S+\s+(\S+)\s+(\S+)\s*(\S*)")


def parse_protocols(text: str) -> dict[str, dict[str, Any]]:
    """``show protocols all``: neighbor address -> {name, state, bgpState, routes, ...}.

    ``state`` follows FRR's words: ``Established`` when BIRD's BGP state is, else BIRD's."""
    out: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        head = _PROTO_HEAD.match(line)
        if head:
            current = {
                "name": head.group(1),
                "proto": head.group(2),  # up, start, down
                "since": head.group(3),  # changes whenever the protocol's state does
                "info": head.group(4),
            }
            continue
        if current is None:
            continue
        if line.strip() == "Neighbor graceful restart active":
            current["gracefulRestartActive"] = True  # until End-of-RIB or the restart timer
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        value = value.strip()
        if key == "BGP state":
            current["bgpState"] = value
            current["state"] = value
        elif key == "Neighbor address":
            current["address"] = value
            out[value] = current
        elif key == "Neighbor AS":
            current["remoteAs"] = int(value)
        elif key == "Routes":  # "1 imported, 0 exported, 1 preferred"
            numbers = re.findall(r"(\d+) (\w+)", value)
            current["routes"] = {w: int(n) for n, w in numbers}
    return out


_ROUTE_HEAD = re.compile(r"^(\S+)?\s+(?:unicast|blackhole|unreachable)\s+\[(\S+) [^\]]*\]\s*(\*)?")
_VIA = re.compile(r"via (\S+) on (\S+)")


def parse_route(text: str, prefix: str) -> dict[str, Any] | None:
    """``show route for <prefix> all``: every BGP path of the prefix, as FRR's JSON has
    them (``nexthops[0].ip``, ``stale``, ``bestpath``, ``aspath``, ``protocol``)."""
    net = ipaddress.ip_network(prefix)
    paths: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    inside = False
    for line in text.splitlines():
        if line.startswith("Table ") or line.startswith("BIRD "):
            continue
        head = _ROUTE_HEAD.match(line)
        if head:
            if head.group(1):
                inside = ipaddress.ip_network(head.group(1), strict=False) == net
            if not inside:
                current = None
                continue
            current = {"protocol": head.group(2), "bestpath": bool(head.group(3)),
                       "stale": False, "nexthops": []}  # fmt: skip
            paths.append(current)
            continue
        if current is None:
            continue
        _route_detail(current, line)
    return {"prefix": prefix, "paths": paths} if paths else None


def _route_detail(path: dict[str, Any], line: str) -> None:
    """One detail line of a path (``via``, ``BGP.*`` attributes) into its FRR-shaped dict."""
    via = _VIA.search(line)
    if via:
        path["nexthops"].append({"ip": via.group(1), "interface": via.group(2)})
    key, _, value = line.strip().partition(":")
    if key == "BGP.next_hop" and not path["nexthops"]:
        path["nexthops"].append({"ip": value.split()[0]})
    elif key == "BGP.as_path":
        path["aspath"] = value.strip()
    elif key == "BGP.local_pref":
        path["locPrf"] = int(value)
    elif key == "BGP.community":
        path["community"] = value.strip()


def parse_bird_asn(text: str) -> int | None:
    m = re.search(r"^\s*local(?:\s+\S+)?\s+as\s+(\d+)\s*;", text, re.M)
    return int(m.group(1)) if m else None


def parse_bird_neighbors(text: str) -> dict[IPAddress, int]:
    """``neighbor <ip> as <n>`` lines of a bird.conf."""
    out: dict[IPAddress, int] = {}
    for m in re.finditer(r"neighbor\s+([0-9A-Fa-f:.]+)\s+as\s+(\d+)", text):
        out[ipaddress.ip_address(m.group(1))] = int(m.group(2))
    return out
