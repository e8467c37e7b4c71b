"""The informers' shared wake-up: the first answer after a failure ends every backoff."""

from __future__ import annotations

import threading
import time

from exalb.k8s.reachability import Reachability


def test_an_answer_after_a_failure_wakes_every_waiter() -> None:
    r = Reachability()
    stop = threading.Event()
    seen = r.generation
    r.failed()
    woke: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woke.append(r.wait(seen, 30.0, stop))) for _ in range(3)
    ]
    for w in waiters:
        w.start()
    started = time.monotonic()
    r.answered()
    for w in waiters:
        w.join(5.0)
    assert woke == [True, True, True] and time.monotonic() - started < 5.0


def test_answers_without_a_failure_wake_nobody() -> None:
    r = Reachability()
    seen = r.generation
    r.answered()
    assert r.generation == seen
    assert not r.wait(seen, 0.01, threading.Event())  # the full (short) backoff


def test_stop_ends_the_wait_without_claiming_recovery() -> None:
    r = Reachability()
    stop = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(r.wait(r.generation, 30.0, stop)))
    t.start()
    stop.set()
    r.wake()
    t.join(5.0)
    assert result == [False]
