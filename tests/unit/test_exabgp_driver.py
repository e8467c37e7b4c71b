"""The driver against a fake ExaBGP bridge that speaks 5.0.15's line protocol."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from speaker.decisions import Route
from speaker.exabgp import connection as drv
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import ConfigRefusedError, Driver
from speaker.exabgp.render import Neighbor, Rendered

net = ipaddress.ip_network
N1 = Neighbor("r1", "198.18.0.1", 4, False, "")
N2 = Neighbor("r2", "198.18.0.5", 4, True, "")
N6 = Neighbor("r1v6", "2001:db8:1::1", 6, False, "")


def R(prefix: str, peer: str = "r1", **kw: object) -> Route:
    return Route(prefix=net(prefix), peer_name=peer, **kw)  # type: ignore[arg-type]


class FakeExaBGP:
    """Holds an adj-rib-out per neighbor and answers like ExaBGP: output lines, then done/error."""

    def __init__(self, path: Path, neighbors: list[str]) -> None:
        self.path = path
        self.neighbors = list(neighbors)
        self.rib: dict[str, dict[str, str]] = {n: {} for n in neighbors}  # prefix -> attrs text
        self.received: list[str] = []
        self.fail_prefixes: set[str] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None
        self.pending_neighbors: list[str] | None = None  # applied after a reload
        self.down: set[str] = set()  # neighbors without an established session

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, str(self.path))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while line := await reader.readline():
            cmd = line.decode().strip()
            self.received.append(cmd)
            for out in self.answer(cmd):
                writer.write((out + "\n").encode())
            await writer.drain()

    def event(self, peer: str, state: str, reason: str | None = None) -> None:
        neighbor = {"address": {"local": "198.18.0.2", "peer": peer}, "state": state}
        if reason is not None:
            neighbor["reason"] = reason
        ev = {"exabgp": "5.0.0", "type": "state", "neighbor": neighbor}
        for w in self.writers:
            w.write((json.dumps(ev) + "\n").encode())

    def answer(self, cmd: str) -> list[str]:
        words = cmd.split()
        if cmd == "show adj-rib out extensive":
            return [
                f"neighbor {n} local-ip 198.18.0.2 local-as 64501 peer-as 64500 router-id "
                f"198.18.0.2 family-allowed in-open ipv{6 if ':' in n else 4} unicast {p} "
                f"next-hop 198.18.0.2{(' ' + a) if a else ''}"
                for n, rib in self.rib.items()
                for p, a in rib.items()
            ] + ["done"]
        if cmd == "show neighbor json":
            return [json.dumps([{"peer": {"address": n}, "state": "down"} for n in self.rib]),
                    "done"]  # fmt: skip
        if cmd == "reload":
            if self.pending_neighbors is not None:
                new = self.pending_neighbors
                self.rib = {n: self.rib.get(n, {}) for n in new}
                self.pending_neighbors = None
            return ["reload in progress", "done"]
        if len(words) < 4 or words[0] != "neighbor" or words[1] not in self.rib:
            return ["error"]
        rib = self.rib[words[1]]
        verb, kind = words[2], words[3]
        rest = " ".join(words[4:])
        if kind == "eor":  # ExaBGP only matches established peers for an End-of-RIB
            return ["error"] if words[1] in self.down else ["done"]
        if kind == "route":
            prefix, _, attrs = rest.partition(" ")
            prefixes = [prefix]
        elif kind == "attributes":
            attrs, _, nlri = rest.partition(" nlri ")
            prefixes = nlri.split()
        else:
            return ["error"]
        if self.fail_prefixes & set(prefixes):
            return ["error"]
        attrs = attrs.replace("next-hop self", "").strip()
        for prefix in prefixes:
            if verb == "announce":
                rib[prefix] = attrs
            else:
                rib.pop(prefix, None)
        return ["done"]

    def routes(self, neighbor: str) -> dict[str, str]:
        return dict(self.rib[neighbor])

    def commands(self, verb: str) -> list[str]:
        return [c for c in self.received if f" {verb} " in c]


def with_fake(
    fn: Callable[[FakeExaBGP, Path], Awaitable[None]],
) -> Callable[[Path], None]:
    """Run an async test body against a fresh fake (no pytest-asyncio in the venv)."""

    @functools.wraps(fn)
    def test(tmp_path: Path) -> None:
        async def main() -> None:
            f = FakeExaBGP(tmp_path / "bridge.sock", ["198.18.0.1", "198.18.0.5", "2001:db8:1::1"])
            await f.start()
            try:
                await asyncio.wait_for(fn(f, tmp_path), 30)
            finally:
                await f.close()

        asyncio.run(main())

    # pytest must see only tmp_path as the signature
    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("tmp_path", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    return test


@contextlib.asynccontextmanager
async def running(d: Driver) -> AsyncIterator[Driver]:
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        d.stop()
        await asyncio.wait_for(task, 5)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def new_driver(fake: FakeExaBGP, **kw: object) -> Driver:
    d = Driver(unix_connector(fake.path), reconnect_delay=0.05, error_backoff=0.05, **kw)  # type: ignore[arg-type]
    d.set_neighbors([N1, N2, N6])
    return d


@with_fake
async def test_converges_by_diff(fake: FakeExaBGP, tmp_path: Path) -> None:
    d = new_driver(fake)
    d.set_routes(
        [
            R("203.0.113.10/32", local_pref=200, communities=("64500:1",)),
            R("203.0.113.11/32"),
            R("203.0.113.12/32"),
            R("2001:db8:ffff::10/128", "r1v6"),
            R("203.0.113.10/32", "unknown-peer"),
        ]
    )
    async with running(d):
        await d.wait_converged(5)
        assert fake.routes("198.18.0.1") == {
            "203.0.113.10/32": "local-preference 200 community [ 64500:1 ]",
            "203.0.113.11/32": "",
            "203.0.113.12/32": "",
        }
        assert fake.routes("2001:db8:1::1") == {"2001:db8:ffff::10/128": ""}
        # IPv6 only ever goes to the IPv6 neighbor, bulk where attributes are equal
        assert all("2001:db8:ffff" not in c for c in fake.received if "198.18.0" in c.split()[1])
        assert any("announce attributes" in c for c in fake.received)
        before = len(fake.received)
        d.set_routes([R("203.0.113.10/32", local_pref=200, communities=("64500:1",)),
                      R("203.0.113.11/32", med=7), R("2001:db8:ffff::10/128", "r1v6")])  # fmt: skip
        await d.wait_converged(5)
        new = fake.received[before:]
        assert new == [
            "neighbor 198.18.0.1 withdraw route 203.0.113.12/32",
            "neighbor 198.18.0.1 announce route 203.0.113.11/32 next-hop self med 7",
        ]


@with_fake
async def test_restarted_driver_resends_nothing_and_removes_stale(
    fake: FakeExaBGP, tmp_path: Path
) -> None:
    fake.rib["198.18.0.1"] = {"203.0.113.10/32": "", "203.0.113.99/32": "community [ 1:1 ]"}
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32")])
    async with running(d):
        await d.wait_converged(5)
    assert fake.received == [
        "show adj-rib out extensive",
        "neighbor 198.18.0.1 withdraw route 203.0.113.99/32",
        "neighbor 198.18.0.5 announce eor ipv4 unicast",  # r2 has graceful restart
    ]
    assert fake.routes("198.18.0.1") == {"203.0.113.10/32": ""}


@with_fake
async def test_reconnect_rereads_adj_rib_out(fake: FakeExaBGP, tmp_path: Path) -> None:
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32")])
    async with running(d):
        await d.wait_converged(5)
        # ExaBGP restarted: empty RIB, connection dropped
        fake.rib = {n: {} for n in fake.rib}
        for w in fake.writers:
            w.close()
        await asyncio.sleep(0.3)
        await d.wait_converged(5)
        assert d.connections == 2
        assert fake.routes("198.18.0.1") == {"203.0.113.10/32": ""}
        assert fake.received.count("show adj-rib out extensive") == 2


@with_fake
async def test_error_counts_and_resyncs(fake: FakeExaBGP, tmp_path: Path) -> None:
    fake.fail_prefixes = {"203.0.113.66/32"}
    errors_before = drv.COMMAND_ERRORS.labels("announce")._value.get()
    d = new_driver(fake)
    d.set_routes([R("203.0.113.66/32", local_pref=9), R("203.0.113.10/32")])
    async with running(d):
        await asyncio.sleep(0.3)
        assert drv.COMMAND_ERRORS.labels("announce")._value.get() > errors_before
        assert fake.received.count("show adj-rib out extensive") >= 2  # re-read after error
        assert fake.routes("198.18.0.1") == {"203.0.113.10/32": ""}
        fake.fail_prefixes = set()
        await d.wait_converged(5)
        assert fake.routes("198.18.0.1")["203.0.113.66/32"] == "local-preference 9"


@with_fake
async def test_up_event_resyncs_and_sends_eor_for_gr_peers(
    fake: FakeExaBGP, tmp_path: Path
) -> None:
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32", "r2")])
    async with running(d):
        await d.wait_converged(5)
        assert fake.received[-1] == "neighbor 198.18.0.5 announce eor ipv4 unicast"
        assert "neighbor 198.18.0.1 announce eor ipv4 unicast" not in fake.received  # no GR
        n = len(fake.received)
        fake.event("198.18.0.5", "up")
        await asyncio.sleep(0.2)
        await d.wait_converged(5)
        assert fake.received[n:] == [
            "show adj-rib out extensive",
            "neighbor 198.18.0.5 announce eor ipv4 unicast",
        ]


@with_fake
async def test_eor_is_owed_to_neighbors_learned_after_connect(
    fake: FakeExaBGP, tmp_path: Path
) -> None:
    """A speaker and ExaBGP restarted together: the sessions are up before the speaker's
    first computation gives the driver its neighbors; End-of-RIB must still be sent."""
    d = Driver(unix_connector(fake.path), reconnect_delay=0.05, error_backoff=0.05)
    async with running(d):
        await d.wait_converged(5)  # connected, nothing known yet
        d.set_neighbors([N1, N2, N6])
        d.set_routes([R("203.0.113.10/32", "r2")])
        await d.wait_converged(5)
        assert fake.received[-1] == "neighbor 198.18.0.5 announce eor ipv4 unicast"
        assert fake.routes("198.18.0.5") == {"203.0.113.10/32": ""}
        # a peer added later (reload) is owed one too, once
        n2b = Neighbor("r2b", "2001:db8:1::1", 6, True, "")
        d.set_neighbors([N1, N2, n2b])
        await d.wait_converged(5)
        assert fake.received[-1] == "neighbor 2001:db8:1::1 announce eor ipv6 unicast"
        assert fake.received.count("neighbor 198.18.0.5 announce eor ipv4 unicast") == 1


@with_fake
async def test_eor_for_a_session_that_is_down_waits_for_its_up_event(
    fake: FakeExaBGP, tmp_path: Path
) -> None:
    fake.down = {"198.18.0.5"}
    errors_before = drv.COMMAND_ERRORS.labels("announce")._value.get()
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32", "r2")])
    async with running(d):
        await d.wait_converged(5)
        await asyncio.sleep(0.2)  # no retry loop on the refusal
        eor = "neighbor 198.18.0.5 announce eor ipv4 unicast"
        assert fake.received.count(eor) == 1
        assert drv.COMMAND_ERRORS.labels("announce")._value.get() == errors_before
        fake.down = set()
        fake.event("198.18.0.5", "up")
        await asyncio.sleep(0.2)
        await d.wait_converged(5)
        assert fake.received.count(eor) == 2 and fake.received[-1] == eor


@with_fake
async def test_down_event_keeps_exabgps_reason(fake: FakeExaBGP, tmp_path: Path) -> None:
    d = new_driver(fake)
    async with running(d):
        await d.wait_converged(5)
        assert d.last_down == {}
        fake.event("198.18.0.5", "down", "notification received (2,2)")
        await wait_until(lambda: bool(d.last_down))
        assert d.last_down == {"198.18.0.5": "notification received (2,2)"}
        # kept after the session comes back: the doctor shows why it last went down
        fake.event("198.18.0.5", "up")
        fake.event("198.18.0.1", "down")
        await wait_until(lambda: len(d.last_down) == 2)
        assert d.last_down["198.18.0.5"] == "notification received (2,2)"
        assert d.last_down["198.18.0.1"] == "down (no reason given)"


@with_fake
async def test_shutdown_withdraws_everything(fake: FakeExaBGP, tmp_path: Path) -> None:
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32"), R("2001:db8:ffff::10/128", "r1v6")])
    task = asyncio.create_task(d.run())
    await d.wait_converged(5)
    await d.shutdown(withdraw=True)
    await asyncio.wait_for(task, 5)
    assert fake.routes("198.18.0.1") == {} and fake.routes("2001:db8:1::1") == {}


@with_fake
async def test_shutdown_without_withdraw_leaves_routes(fake: FakeExaBGP, tmp_path: Path) -> None:
    d = new_driver(fake)
    d.set_routes([R("203.0.113.10/32")])
    task = asyncio.create_task(d.run())
    await d.wait_converged(5)
    await d.shutdown(withdraw=False)
    await asyncio.wait_for(task, 5)
    assert fake.routes("198.18.0.1") == {"203.0.113.10/32": ""}


@with_fake
async def test_apply_config_validates_writes_and_reloads(fake: FakeExaBGP, tmp_path: Path) -> None:
    conf = tmp_path / "exabgp.conf"
    conf.write_text("old\n")
    validated: list[str] = []

    async def validate(path: Path) -> str | None:
        text = path.read_text()
        validated.append(text)
        return "line 1: nonsense" if "bad" in text else None

    d = Driver(unix_connector(fake.path), config_path=conf, validate=validate,
               reconnect_delay=0.05)  # fmt: skip
    d.set_neighbors([N1])
    d.set_routes([R("203.0.113.10/32"), R("203.0.113.20/32", "r3")])
    async with running(d):
        await d.wait_converged(5)
        assert fake.routes("198.18.0.1") == {"203.0.113.10/32": ""}
        n3 = Neighbor("r3", "198.51.100.1", 4, False, "")
        fake.pending_neighbors = ["198.18.0.1", "198.51.100.1"]
        assert await d.apply_config(Rendered("new\n", (N1, n3), ()))
        assert conf.read_text() == "new\n" and validated == ["new\n"]
        await d.wait_converged(5)
        assert fake.routes("198.51.100.1") == {"203.0.113.20/32": ""}
        assert "reload" in fake.received
        # the first neighbor's routes were not resent
        assert len(fake.commands("announce")) == 2
        # identical text: nothing happens
        assert not await d.apply_config(Rendered("new\n", (N1, n3), ()))
        assert fake.received.count("reload") == 1
        with pytest.raises(ConfigRefusedError, match="nonsense"):
            await d.apply_config(Rendered("bad\n", (N1,), ()))
        assert conf.read_text() == "new\n"
        assert fake.received.count("reload") == 1
