"""What the demo shows, and how: progress lines, the client's HTTP requests (made from the
lab's client namespace), and request spreads as bars."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TextIO

from lab.demo_config import CLIENT, NODE_NAMES
from lab.nsnet import in_netns
from lab.runner import Lab


class Progress:
    """``[3/11] helm install ......... 12.31 s``: one line per step; on a terminal the
    elapsed time ticks while the step runs."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out, self.total, self.n = out, total, 0
        self.tty = out.isatty()

    @contextlib.contextmanager
    def step(self, text: str, timings: dict[str, float]) -> Iterator[None]:
        self.n += 1
        label = f"[{self.n}/{self.total}] {text} ".ljust(60, ".")
        self.out.write(label)
        self.out.flush()
        start = time.monotonic()
        done = threading.Event()
        if self.tty:
            threading.Thread(target=self._tick, args=(label, start, done), daemon=True).start()
        try:
            yield
        except BaseException:
            done.set()
            self.out.write(" failed\n")
            raise
        done.set()
        took = time.monotonic() - start
        timings[text] = took
        self.out.write(f"{chr(13) + label if self.tty else ''} {took:6.2f} s\n")
        self.out.flush()

    def _tick(self, label: str, start: float, done: threading.Event) -> None:
        while not done.wait(0.5):
            self.out.write(f"\r{label} {time.monotonic() - start:6.1f} s")
            self.out.flush()


def http_get(lab: Lab, ip: str, port: int = 80, timeout: float = 2.0) -> str | None:
    """One GET from the client's namespace (a new connection); the body, or None."""
    with in_netns(lab.ns(CLIENT)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.split(b"\r\n\r\n", 1)[-1].decode().strip()
    except OSError:
        return None
    finally:
        sock.close()


def node_of(body: str | None) -> str | None:
    """``pod=web-1 node=n2`` -> ``n2``."""
    for word in (body or "").split():
        if word.startswith("node="):
            return word[5:]
    return None


def http_spread(lab: Lab, ip: str, n: int, port: int = 80) -> tuple[Counter[str], int]:
    """``n`` requests, each a new connection (new source port, so r1's layer-4 hash spreads
    them); answers per serving pod's node, and failures."""
    counts: Counter[str] = Counter()
    failed = 0
    for _ in range(n):
        node = node_of(http_get(lab, ip, port))
        if node is None:
            failed += 1
        else:
            counts[node] += 1
    return counts, failed


def bars(counts: Counter[str]) -> list[str]:
    width = max([*counts.values(), 1])
    return [
        f"    pod on {node}  {'#' * counts.get(node, 0):<{width}}  {counts.get(node, 0):3d}"
        " requests"
        for node in NODE_NAMES
    ]
