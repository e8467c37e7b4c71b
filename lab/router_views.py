"""What a lab's routers and nodes say about routing: FRR's view and the kernel FIB.

A mixin of :class:`lab.runner.Lab` (which brings the nodes and namespaces): tests take the
router's own view (``vtysh ... json``) and the kernel FIB as the oracle of what is on the
wire, never exalb's own report of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab import frr
from lab.fib import Fib, FibRoute
from lab.topology import Node, Role


class LabError(RuntimeError):
    """The lab could not be brought up or a node was asked for something it cannot do."""


class RouterViews:
    """FRR (vtysh) and kernel-FIB queries by node name."""

    _fibs: dict[str, Fib]

    def node(self, name: str) -> Node:
        raise NotImplementedError

    def ns(self, node: str) -> str:
        raise NotImplementedError

    def _frr_dir(self, node: str) -> Path:
        raise NotImplementedError

    # --- FRR ------------------------------------------------------------------------

    def frr(self, router: str) -> frr.FrrInstance:
        if self.node(router).role is not Role.ROUTER:
            raise LabError(f"{router} is not a router")
        return frr.FrrInstance(router, self.ns(router), self._frr_dir(router))

    def vtysh(self, router: str, *commands: str) -> str:
        """Output of vtysh commands on a router."""
        return self.frr(router).vtysh(*commands)

    def vtysh_json(self, router: str, command: str) -> Any:
        """A ``... json`` vtysh command, parsed."""
        return self.frr(router).vtysh_json(command)

    def peer_states(self, router: str) -> dict[str, str]:
        """Peer address -> BGP state on a router (all address families)."""
        return frr.peer_states(self.vtysh_json(router, "show bgp summary json"))

    def wait_established(
        self, router: str, peers: Iterable[str] | None = None, timeout: float = 15.0
    ) -> dict[str, str]:
        """Poll until the given peers (default: all configured) are Established."""
        wanted = set(peers) if peers is not None else None
        deadline = time.monotonic() + timeout
        while True:
            states = self.peer_states(router)
            check = wanted if wanted is not None else set(states)
            if check and all(states.get(p) == "Established" for p in check):
                return states
            if time.monotonic() > deadline:
                raise LabError(f"{router}: peers not Established after {timeout}s: {states}")
            time.sleep(0.05)

    # --- kernel FIB -----------------------------------------------------------------

    def fib(self, node: str) -> Fib:
        if node not in self._fibs:
            self._fibs[node] = Fib(self.ns(node))
        return self._fibs[node]

    def route(self, node: str, prefix: str) -> FibRoute | None:
        return self.fib(node).route(prefix)

    def wait_route(
        self, node: str, prefix: str, nexthops: int | None = None, timeout: float = 5.0
    ) -> FibRoute:
        """Poll the node's kernel FIB until ``prefix`` has ``nexthops`` paths (or any)."""
        return self.fib(node).wait_route(prefix, nexthops, timeout)

    def wait_no_route(self, node: str, prefix: str, timeout: float = 5.0) -> None:
        self.fib(node).wait_no_route(prefix, timeout)
