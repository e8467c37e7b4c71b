"""The API process ExaBGP runs: a dumb, stable relay between ExaBGP's pipes and a unix socket.

Why it exists: ExaBGP binds API processes at start and respawns them when they die, but more
than five deaths in one 64-second bucket make ExaBGP exit, and a process that stops reading
its stdin stalls the whole daemon (keepalives included). The speaker is a big program that
restarts for many reasons, so it is *not* the API process. This bridge is: it has no logic
that can fail with the speaker, uses only the standard library, and

* relays complete lines from the connected client (the speaker's driver) to ExaBGP (stdout);
* relays every line ExaBGP writes to its stdin (acks, JSON events, ``show`` answers) to the
  client, and keeps draining stdin when no client is connected so ExaBGP never blocks;
* accepts one client at a time: a new connection replaces the old one (a restarted speaker
  must never be locked out by a half-dead previous connection);
* swallows the answers that belong to commands of a client that went away, so a new client
  only ever sees answers to its own commands (ExaBGP answers commands in order: every
  command yields zero or more output lines followed by exactly one ``done``/``error``);
* never forwards a partial command line (a client dying mid-line cannot inject garbage),
  nor any part of a line longer than ``MAX_LINE``: it is dropped up to its newline, so its
  tail can never reach ExaBGP as a command of its own;
* exits when stdin reaches EOF (ExaBGP is gone) and removes its socket.

stdout belongs to ExaBGP; logs go to stderr (which ExaBGP inherits into its own log).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import stat
import sys
import time
from collections.abc import Sequence

ACK_LINES = frozenset({b"done", b"error"})
MAX_LINE = 1 << 20  # a single line longer than this from the client is dropped
OUT_HIGH_WATER = 4 << 20  # stop reading the client while this much waits for ExaBGP
CLIENT_HIGH_WATER = 64 << 20  # a client this far behind is dropped (it resyncs on reconnect)


def _log(event: str, **fields: object) -> None:
    """One JSON log line on stderr (stdlib only: the bridge must not depend on structlog)."""
    record = {"ts": round(time.time(), 3), "component": "exabgp-bridge", "event": event, **fields}
    try:
        sys.stderr.write(json.dumps(record, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Bridge:
    """The relay state machine; ``run`` owns the loop, the rest is testable piece by piece."""

    def __init__(self, socket_path: str, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self.socket_path = socket_path
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.client: socket.socket | None = None
        self.client_in = b""  # partial line from the client
        self.discarding = False  # dropping an over-long client line up to its newline
        self.client_out = bytearray()  # pending bytes to the client
        self.exabgp_in = b""  # partial line from ExaBGP
        self.exabgp_out = bytearray()  # complete lines pending to ExaBGP
        self.pending_current = 0  # commands of the current client not yet answered
        self.orphans = 0  # commands of former clients not yet answered: their output is dropped
        self.mid_line = False  # the client connected in the middle of an ExaBGP line
        self.client_events = 0  # selector events the client is registered for (0 = none)
        self.running = True

    # -- set-up -------------------------------------------------------------------------
    def listen(self) -> None:
        """Bind the socket (0660: the speaker runs as another user of the pod's group, and
        only the speaker and ExaBGP mount the volume), replacing a stale socket file but
        never another file type."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        directory = os.path.dirname(self.socket_path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            lst.bind(self.socket_path)
        finally:
            os.umask(old)
        lst.listen(4)
        lst.setblocking(False)
        self.listener = lst
        self.sel.register(lst, selectors.EVENT_READ, "accept")
        os.set_blocking(self.stdin_fd, False)
        os.set_blocking(self.stdout_fd, False)
        self.sel.register(self.stdin_fd, selectors.EVENT_READ, "stdin")

    # -- client management ----------------------------------------------------------------
    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if self.client is not None:
            _log("client_replaced")
            self._drop_client()
        conn.setblocking(False)
        self.client = conn
        self.client_in = b""
        self.discarding = False
        self.client_out = bytearray()
        self.mid_line = bool(self.exabgp_in)
        self.sel.register(conn, selectors.EVENT_READ, "client")
        self.client_events = selectors.EVENT_READ
        _log("client_connected", orphans=self.orphans)

    def _drop_client(self) -> None:
        if self.client is None:
            return
        if self.client_events:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.client)
        self.client_events = 0
        with contextlib.suppress(OSError):
            self.client.close()
        self.client = None
        self.client_in = b""
        self.discarding = False
        self.client_out = bytearray()
        self.orphans += self.pending_current
        self.pending_current = 0
        _log("client_disconnected", orphans=self.orphans)

    def _update_client_events(self) -> None:
        if self.client is None:
            return
        events = selectors.EVENT_WRITE if self.client_out else 0
        if len(self.exabgp_out) < OUT_HIGH_WATER:
            events |= selectors.EVENT_READ
        registered = self.client_events != 0
        if events == self.client_events:
            return
        if events == 0:  # back-pressure: stop watching the client until ExaBGP catches up
            self.sel.unregister(self.client)
        elif registered:
            self.sel.modify(self.client, events, "client")
        else:
            self.sel.register(self.client, events, "client")
        self.client_events = events

    # -- data paths -----------------------------------------------------------------------
    def on_exabgp_line(self, line: bytes) -> None:
        """Route one line from ExaBGP: to the client, or dropped if it answers a former client."""
        stripped = line.rstrip(b"\r\n")
        is_ack = stripped in ACK_LINES
        is_event = stripped.startswith(b"{") and b'"exabgp"' in stripped
        if self.orphans and not is_event:
            if is_ack:
                self.orphans -= 1
            return
        if is_ack and self.pending_current:
            self.pending_current -= 1
        if self.client is None:
            return
        self.client_out += line
        if len(self.client_out) > CLIENT_HIGH_WATER:
            _log("client_too_slow", pending_bytes=len(self.client_out))
            self._drop_client()

    def on_client_line(self, line: bytes) -> None:
        """A complete command from the client; counted so its answers can be attributed."""
        if not line.strip():
            return
        self.exabgp_out += line
        self.pending_current += 1

    def _read_stdin(self) -> None:
        try:
            data = os.read(self.stdin_fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            _log("stdin_error", error=str(exc))
            self.running = False
            return
        if not data:
            _log("stdin_eof")
            self.running = False
            return
        buf = self.exabgp_in + data
        *lines, self.exabgp_in = buf.split(b"\n")
        for i, raw in enumerate(lines):
            if i == 0 and self.mid_line:
                self.mid_line = False
                continue  # the tail of a line whose start the client never saw
            self.on_exabgp_line(raw + b"\n")

    def _read_client(self) -> None:
        assert self.client is not None
        if len(self.exabgp_out) >= OUT_HIGH_WATER:
            return
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        buf = self.client_in + data
        *lines, self.client_in = buf.split(b"\n")
        if self.discarding and lines:
            lines = lines[1:]  # the tail of the over-long line ends here: dropped with it
            self.discarding = False
        if self.discarding:
            self.client_in = b""  # still inside the over-long line
        elif len(self.client_in) > MAX_LINE:
            _log("client_line_too_long", size=len(self.client_in))
            self.client_in = b""
            self.discarding = True
        for raw in lines:
            if len(raw) > MAX_LINE:
                _log("client_line_too_long", size=len(raw))
                continue
            self.on_client_line(raw + b"\n")

    def _write_client(self) -> None:
        if self.client is None or not self.client_out:
            return
        try:
            sent = self.client.send(self.client_out)
        except BlockingIOError:
            return
        except OSError:
            self._drop_client()
            return
        del self.client_out[:sent]

    def _write_stdout(self) -> None:
        if not self.exabgp_out:
            return
        try:
            written = os.write(self.stdout_fd, self.exabgp_out)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                _log("stdout_closed")
                self.running = False
                return
            raise
        del self.exabgp_out[:written]

    # -- loop -----------------------------------------------------------------------------
    def step(self, timeout: float | None) -> None:
        """One select round; the stdout write is attempted every round (cheap, non-blocking)."""
        self._update_client_events()
        for key, mask in self.sel.select(timeout):
            tag = key.data
            if tag == "stdin":
                self._read_stdin()
            elif tag == "accept":
                self._accept()
            elif tag == "client":
                if mask & selectors.EVENT_WRITE:
                    self._write_client()
                if mask & selectors.EVENT_READ and self.client is not None:
                    self._read_client()
        self._write_stdout()
        self._write_client()

    def run(self) -> int:
        self.listen()
        _log("listening", socket=self.socket_path, pid=os.getpid())
        try:
            while self.running:
                # Short timeout only while bytes wait for a non-blocking stdout.
                self.step(0.01 if self.exabgp_out else 1.0)
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self._drop_client()
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            self.listener = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="relay ExaBGP's API pipe to a unix socket")
    parser.add_argument("--socket", required=True, help="unix socket the speaker connects to")
    args = parser.parse_args(argv)
    # ExaBGP stops us with SIGTERM on shutdown; stdin EOF is the normal exit. SIGPIPE must not
    # kill us when the client vanishes mid-send.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return Bridge(args.socket).run()
    except SystemExit:
        raise
    # A bridge crash would count as a death for ExaBGP: log it in our JSON lines first.
    except Exception as exc:  # noqa: BLE001 (the process's last word: log any crash, exit 1)
        _log("crashed", error=repr(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
