"""Polling with a deadline: how the lab, the demo and the tests wait, never by sleeping blind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError, AssertionError):
    """A condition did not come true in time.

    Both a TimeoutError (callers that expect a timeout catch it) and an AssertionError (so a
    test that did not expect it reports a plain failure, not an error)."""


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Call ``fn`` until it returns something truthy and return that; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
