"""``/status`` from a cache: however many readers, ExaBGP's wire view is read at most once
per interval by the speaker's loop, and a route change does not queue behind readers.

The loop runs in a thread here (as in the speaker, where the HTTP server's threads are the
readers); the wire reads and the driver are fakes that count.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speaker.app import Settings, Speaker
from speaker.bgp import BGPAnnouncer
from speaker.status import WireView
from speaker.status_cache import DocumentCache, WireCache
from tests.unit.test_speaker_core import NS, loaded_world
from tests.unit.test_speaker_loop import FakeDriver


@contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class CountingRead:
    def __init__(self, seconds: float = 0.0) -> None:
        self.calls = 0
        self.seconds = seconds

    async def __call__(self) -> WireView:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return WireView(neighbors=[], adj_rib_out={}, connected=True)


def start(loop: asyncio.AbstractEventLoop, coro: Any) -> None:
    asyncio.run_coroutine_threadsafe(coro, loop)
    time.sleep(0.05)  # the task has started and knows its loop


def test_200_readers_cause_one_read_per_interval() -> None:
    read = CountingRead(seconds=0.05)
    now = [100.0]  # the cache's clock: a loaded machine must not age the view mid-test
    cache = WireCache(read, interval=0.5, clock=lambda: now[0])
    with loop_thread() as loop, ThreadPoolExecutor(200) as pool:
        start(loop, cache.run())
        views = list(pool.map(lambda _: cache.get(wait=5), range(200)))
        assert read.calls == 1
        assert all(v.view.connected and v.view.error is None for v in views)
        assert all(v.age is not None and v.age < 0.5 for v in views)
        # fresh enough: no read at all
        assert cache.get(wait=5).view.error is None and read.calls == 1
        # older than the interval: one more read, however many ask
        now[0] += 0.6
        list(pool.map(lambda _: cache.get(wait=5), range(200)))
        assert read.calls == 2


def test_a_read_that_does_not_finish_in_time_gives_the_old_view_with_its_age() -> None:
    read = CountingRead()
    cache = WireCache(read, interval=0.1)
    with loop_thread() as loop:
        start(loop, cache.run())
        assert cache.get(wait=5).view.error is None
        read.seconds = 30  # ExaBGP stops answering
        time.sleep(0.2)
        got = cache.get(wait=0.3)
        assert got.view.connected and got.age is not None and got.age >= 0.2
        assert got.view.error is not None and "old: a refresh did not finish" in got.view.error


def test_no_loop_no_read_yet() -> None:
    got = WireCache(CountingRead(), interval=1).get(wait=0.05)
    assert got.age is None and got.view.error == "ExaBGP's wire view was not read yet"


def test_a_failing_read_is_an_error_in_the_view_not_a_dead_refresher() -> None:
    calls = []

    async def read() -> WireView:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return WireView(connected=True)

    cache = WireCache(read, interval=0.05)
    with loop_thread() as loop:
        start(loop, cache.run())
        assert "status read failed" in str(cache.get(wait=5).view.error)
        time.sleep(0.1)
        assert cache.get(wait=5).view.error is None


def test_documents_are_built_once_per_ttl_and_query() -> None:
    now = [0.0]
    docs = DocumentCache(ttl=1.0, size=2, clock=lambda: now[0])
    builds: list[str] = []

    def build(name: str) -> Callable[[], bytes]:
        return lambda: builds.append(name) or name.encode()  # type: ignore[func-returns-value]

    assert docs.get(None, build("all")) == b"all"
    assert docs.get(None, build("again")) == b"all"
    assert docs.get("a/b", build("ab")) == b"ab"
    now[0] = 1.5
    assert docs.get(None, build("new")) == b"new"
    docs.get("c/d", build("cd"))  # a third query: the least recently used one goes
    assert docs.get("a/b", build("ab2")) == b"ab2"
    assert builds == ["all", "ab", "new", "cd", "ab2"]


class SlowShowDriver(FakeDriver):
    """Each ``show`` takes a while and counts; route changes are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.shows = 0

    async def show_neighbors(self) -> list[Any]:
        self.shows += 1
        await asyncio.sleep(0.02)
        return []

    async def show_adj_rib_out(self) -> dict[Any, Any]:
        self.shows += 1
        await asyncio.sleep(0.02)
        return {}


def test_readers_hammering_status_do_not_reach_exabgp_or_hold_back_a_route_change(
    tmp_path: Path,
) -> None:
    driver = SlowShowDriver()
    bgp = BGPAnnouncer(driver, bridge_argv=["/bin/bridge"], config_path=tmp_path / "exabgp.conf",
                       session_poll=3600)  # fmt: skip
    speaker = Speaker(Settings("n1", NS, status_refresh=0.5), loaded_world(), bgp)
    stop = threading.Event()
    bodies: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            bodies.append(speaker.status_body({}))

    with loop_thread() as loop:
        start(loop, speaker.run())
        threads = [threading.Thread(target=reader, daemon=True) for _ in range(50)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            # a route change while the readers read: decided and applied
            computed = asyncio.run_coroutine_threadsafe(speaker.recompute(), loop).result(10)
            assert computed is not None and driver.routes
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
    # ~1.3 s of 50 readers: a refresh every 0.5 s at most, two shows each
    assert driver.shows <= 2 * 4, driver.shows
    assert len(bodies) > 100
    assert speaker.documents.builds <= 5
    doc = json.loads(bodies[-1])
    assert doc["node"] == "n1" and doc["exabgp"]["connected"] is True
    assert doc["exabgp"]["wireAgeSeconds"] is not None


def test_the_speakers_own_changes_show_at_once(tmp_path: Path) -> None:
    """A document is reused for the same query only while nothing the speaker decided has
    changed: a reader sees a new decision at once, not a second later."""
    bgp = BGPAnnouncer(FakeDriver(), bridge_argv=["/bin/bridge"],
                       config_path=tmp_path / "exabgp.conf")  # fmt: skip
    speaker = Speaker(Settings("n1", NS, status_refresh=60, status_wait=0.01), loaded_world(), bgp)
    first = speaker.status_body({})
    assert speaker.status_body({}) is first  # nothing changed: shared
    assert json.loads(first)["speaker"]["recomputes"] == 0
    asyncio.run(speaker.recompute())
    after = json.loads(speaker.status_body({}))
    assert after["speaker"]["recomputes"] == 1 and after["services"]
    assert json.loads(speaker.status_body({"service": "x" * 500}))["services"] == []


def test_without_a_running_refresher_a_reader_does_not_wait() -> None:
    """Before the speaker's loop runs the refresher (or after it stopped) nobody could answer:
    the reader gets "not read yet" at once instead of waiting out its timeout."""

    async def never() -> WireView:
        raise AssertionError("no refresher runs, so nothing reads")

    cache = WireCache(never)
    started = time.monotonic()
    wire = cache.get(wait=30.0)
    assert time.monotonic() - started < 1.0
    assert wire.view.error == "ExaBGP's wire view was not read yet" and wire.age is None
