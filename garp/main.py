"""``exalb-garp``: the garp sidecar (second container of the speaker pod, CAP_NET_RAW only).

One ``selectors`` loop: AF_PACKET sockets per link, the two UDP probe sockets and wake-up
pipes for signals and for the state reader (:mod:`garp.reader`, a thread that polls and
parses the state file so that a large document never stalls the loop). Timers (probes,
peer deaths, gratuitous bursts, interface rescans) are folded into the select timeout, so
an idle sidecar wakes ~10-20 times per second and does a handful of syscalls each time.
The loop never judges a peer before reading what it sent, and time it spent unable to
listen is not counted as the peer's silence (see ``Engine.stalled``).

The probe channel (:mod:`garp.probe_channel`, with :mod:`garp.probe` and :mod:`garp.peers`):
one UDP socket per IP version, bound to this node's own address as the desired state lists
it, admitting only the peers' addresses and only messages tagged with the key in
``--key-dir`` (the chart mounts that Secret into this container only). Without a valid key
the sidecar does not start.

Life cycle:

* no desired-state file yet → answers nothing, waits;
* a valid file appears or changes → adopted at once (≤ poll interval, 100 ms);
* an invalid file → logged and counted; the previous state stays in force;
* the key files change → re-read; a change that leaves no valid key is refused (logged,
  counted) and the keys in use stay;
* anything unexpected inside the loop → logged with its traceback and counted; the loop
  goes on with the state it has;
* the speaker dies → the file stays, the sidecar keeps serving it;
* SIGTERM/SIGINT → stop answering, send BYE to the other candidates (they take over
  immediately), write a final status, exit 0.

Logs: JSON lines on stderr (:mod:`garp.log`). Metrics: Prometheus on ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterable, Sequence

from exalb.config.model import IPAddress
from exalb.contracts import l2_state as state
from exalb.filechannel import write_atomic
from garp import log, probe
from garp.failover import Change, Engine, StateIndex, Timing
from garp.links import DEFAULT_EXCLUDES, Link, raw_socket_refusal
from garp.metrics import Metrics
from garp.probe_channel import MAX_BATCH, UDP, ProbeChannel
from garp.reader import StateReader
from garp.responder import Responder, desired_ips

# IPs announced per loop pass: a burst for thousands of IPs goes out in slices, and the probe
# socket is served between them (a loop that stalls for dead_after looks dead to its peers).
ANNOUNCE_BATCH = 128


def configure_logging(level: str) -> None:
    log.configure(level)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="exalb-garp", description=__doc__.split("\n")[0])
    ap.add_argument("--state", default=env("EXALB_GARP_STATE", "/var/run/exalb/l2-state.json"))
    ap.add_argument("--status", default=env("EXALB_GARP_STATUS"), help="default: STATE.status")
    ap.add_argument("--node", default=env("NODE_NAME"), help="refuse states for another node")
    ap.add_argument(
        "--exclude-interfaces",
        default=env("EXALB_GARP_EXCLUDE", ",".join(DEFAULT_EXCLUDES)),
        help="comma-separated regexes (full match); '' excludes nothing",
    )
    ap.add_argument("--probe-port", type=int, default=probe.DEFAULT_PORT)
    ap.add_argument(
        "--key-dir",
        default=env("EXALB_GARP_KEY_DIR", "/etc/exalb/garp-key"),
        help="directory with the probe key file 'key' (and 'previous' while rotating)",
    )
    ap.add_argument("--probe-interval", type=float, default=0.1)
    ap.add_argument("--dead-after", type=float, default=0.35)
    ap.add_argument("--poll-interval", type=float, default=0.1)
    ap.add_argument("--rescan-interval", type=float, default=2.0)
    ap.add_argument("--metrics-port", type=int, default=int(env("EXALB_GARP_METRICS_PORT", "7473")))
    ap.add_argument("--metrics-addr", default="0.0.0.0")
    ap.add_argument("--log-level", default=env("EXALB_LOG_LEVEL", "info"))
    return ap.parse_args(argv)


# Rewrite the status file at least this often (seconds), so that its age tells the speaker
# whether the sidecar is alive (see speaker/l2/publisher.py).
STATUS_HEARTBEAT = 1.0


class Sidecar:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log = log.get_logger()
        timing = Timing(probe_interval=args.probe_interval, dead_after=args.dead_after)
        self.engine = Engine(session=secrets.randbits(64), timing=timing)
        self.metrics = Metrics()
        excludes = tuple(x for x in args.exclude_interfaces.split(",") if x)
        self.responder = Responder(self.engine, self.metrics, excludes)
        self.reader = StateReader(args.state, args.poll_interval, self._wake_for_state)
        self._state_rd, self._state_wr = socket.socketpair()
        for end in (self._state_rd, self._state_wr):
            end.setblocking(False)
        self.status_path = args.status or f"{args.state}.status"
        self._status_written = 0.0
        self.sel = selectors.DefaultSelector()
        self.probes = ProbeChannel(
            self.engine, self.metrics, self.sel, args.key_dir, args.probe_port, self.report
        )
        self.stop = False
        self._peers: tuple[tuple[str, bool], ...] = ()
        self._next_rescan = 0.0
        self._listened = time.monotonic()
        self._errors_logged = 0.0

    # --- links --------------------------------------------------------------------------

    def rescan(self) -> None:
        self.probes.rescan()
        names = [n for _, n in socket.if_nameindex()]
        opened, closed = self.responder.rescan(names)
        for link in closed:
            self._unregister(link)
        for link in opened:
            for s in link.sockets():
                self.sel.register(s, selectors.EVENT_READ, link)
            self.log.info("interface up", interface=link.name, mac=link.mac.hex(":"))
        self._sync_link_sockets()

    def _unregister(self, link: Link) -> None:
        for key in list(self.sel.get_map().values()):
            if key.data is link:
                self.sel.unregister(key.fileobj)

    def _sync_link_sockets(self) -> None:
        """Echo sockets come and go with ``ping``; keep the selector in step."""
        registered = {key.fileobj for key in self.sel.get_map().values()}
        for link in self.responder.links.values():
            for s in link.sockets():
                if s not in registered:
                    self.sel.register(s, selectors.EVENT_READ, link)
        live = {s for lk in self.responder.links.values() for s in lk.sockets()}
        for key in list(self.sel.get_map().values()):
            if isinstance(key.data, Link) and key.fileobj not in live:
                self.sel.unregister(key.fileobj)

    def on_link(self, link: Link, s: socket.socket, now: float) -> None:
        for _ in range(MAX_BATCH):
            try:
                frame, addr = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.warning("interface failed", interface=link.name, error=str(exc))
                self._unregister(link)
                self.responder.drop(link)
                return
            self.responder.handle(link, frame, addr[2], now)

    # --- desired state ------------------------------------------------------------------

    def poll_state(self, now: float) -> None:
        """Read, parse and adopt the state file now, on this thread (the loop itself has
        the reader thread do the first two)."""
        result = self.reader.read_once()
        if result is not None:
            self.adopt(result)

    def _wake_for_state(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._state_wr.send(b"\0")

    def adopt(self, result: StateIndex | state.StateError) -> None:
        try:
            if isinstance(result, state.StateError):
                raise result
            new = result.state
            if self.args.node and new.node != self.args.node:
                raise state.StateError(f"document is for node {new.node!r}")
        except state.StateError as exc:
            self.metrics.state_errors.inc()
            self.log.error("desired state rejected, keeping the previous one", error=str(exc))
            return
        old = self.engine.state
        if old is not None and new.generation < old.generation:
            self.log.warning("generation went backwards", old=old.generation, new=new.generation)
        now = time.monotonic()  # new peers' grace starts when the state is adopted
        change = self.engine.apply_state(new, now, result)
        self.probes.sync_sockets()
        # Probe new peers before the bookkeeping below (which takes a while for thousands
        # of IPs): their acks then arrive while we work and are read before any judgement.
        self.metrics.probes_sent.inc(self.probes.send(self.engine.probes_due(now)))
        self.metrics.generation.set(new.generation)
        self.metrics.track_ips(desired_ips(new))
        self.responder.apply_state()
        self._sync_link_sockets()
        self.report(change, now, force_status=True)
        self.log.info(
            "desired state applied",
            generation=new.generation,
            owned=_texts(self.engine.owned()),
            candidate_for=len(new.ips),
            seconds=round(time.monotonic() - now, 3),
        )

    # --- outputs ------------------------------------------------------------------------

    def report(self, change: Change, now: float, force_status: bool = False) -> None:
        """Log and count ``change``, note the peers' liveness; write the status file when
        either changed (or when forced)."""
        self._log_change(change)
        self._count_change(change)
        peers_changed = self._note_peers(now)
        if change or force_status or peers_changed:
            self.write_status()

    def _log_change(self, change: Change) -> None:
        # One log line per change and reason (with every IP), not one per IP: a takeover of
        # thousands of IPs must not keep the loop from answering its peers.
        owner = change.gained - change.takeovers
        for why, ips in (("owner", owner), ("takeover", change.takeovers)):
            if ips:
                self.log.info("answering", reason=why, count=len(ips), ips=_texts(ips),
                              peers=dict(self._peers))  # fmt: skip
        if change.lost:
            self.log.info("stopped answering", count=len(change.lost), ips=_texts(change.lost))

    def _count_change(self, change: Change) -> None:
        for ip in change.gained:
            self.metrics.of(self.metrics.owner, ip).set(1)
        for ip in change.takeovers:
            self.metrics.of(self.metrics.takeovers, ip).inc()
        for ip in change.lost:
            if self.engine.entry(ip) is not None:  # else its series are gone with it
                self.metrics.of(self.metrics.owner, ip).set(0)

    def _note_peers(self, now: float) -> bool:
        """Log and export the watched peers' liveness; whether it changed."""
        peers = self.engine.peers_alive(now)
        if peers == self._peers:
            return False
        for node, alive in peers:
            if dict(self._peers).get(node) != alive:
                self.log.info("peer", node=node, alive=alive)
        self._peers = peers
        self.metrics.set_peers(peers)
        return True

    def write_status(self) -> None:
        st = self.engine.state
        if st is None:
            return
        doc = state.Status(
            st.node,
            st.generation,
            tuple(self.engine.answering),
            self._peers,
            time.time(),
            interfaces=tuple(sorted(self.responder.links)),
        )
        self._status_written = time.monotonic()
        try:
            write_atomic(self.status_path, state.encode_status(doc))
        except OSError as exc:
            self.log.warning("cannot write status", path=self.status_path, error=str(exc))

    # --- loop ---------------------------------------------------------------------------

    def run(self) -> int:
        if not self.probes.load_keys():
            return 2
        rd, wr = socket.socketpair()
        rd.setblocking(False)
        wr.setblocking(False)
        signal.set_wakeup_fd(wr.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.sel.register(rd, selectors.EVENT_READ, "signal")
        self.sel.register(self._state_rd, selectors.EVENT_READ, "state")
        self.reader.start()
        if self.args.metrics_port:
            self.metrics.serve(self.args.metrics_port, self.args.metrics_addr)
        self.log.info("started", session=self.engine.session, state=self.args.state)
        while not self.stop:
            try:
                self.iterate(rd)
            except Exception:  # one bad input or bug must not take the node's L2 down
                self.metrics.loop_errors.inc()
                now = time.monotonic()
                if now - self._errors_logged >= 1.0:
                    self._errors_logged = now
                    self.log.exception("sidecar loop error, continuing with the current state")
                time.sleep(0.05)  # never spin on an error that repeats
        return self.shutdown()

    def iterate(self, rd: socket.socket) -> None:
        """One pass: timers, then wait for and handle input until the next deadline."""
        self._housekeeping(time.monotonic())
        now = self._hear()
        self.report(self.engine.tick(now), now)
        self.metrics.probes_sent.inc(self.probes.send(self.engine.probes_due(now)))
        for ip in self.engine.announcements_due(now, ANNOUNCE_BATCH):
            self.responder.announce(ip)
        deadline = min(
            self.engine.next_deadline(now),
            self._next_rescan,
            self._status_written + STATUS_HEARTBEAT,
        )
        ready = self.sel.select(max(0.0, deadline - time.monotonic()))
        self._listened = time.monotonic()  # waiting in select is listening
        ready.sort(key=lambda kv: kv[0].data != UDP)  # peers first: they time us out
        for key, _ in ready:
            self._dispatch(key, rd, time.monotonic())

    def _housekeeping(self, now: float) -> None:
        """The status heartbeat, the interface rescan, states the reader has parsed."""
        if now - self._status_written >= STATUS_HEARTBEAT:
            self.write_status()  # the speaker treats an old report as a dead sidecar
        if now >= self._next_rescan:
            self._next_rescan = now + self.args.rescan_interval
            self.rescan()
        for result in self.reader.take():
            self.adopt(result)

    def _hear(self) -> float:
        """Read the peers before judging them; the time it did so.

        Acks that arrived while this pass (or the last) was busy count before silence is
        measured, and time we could not listen (busy since select last returned) is not
        silence: our probes did not go out meanwhile."""
        now = time.monotonic()
        deaf = now - self._listened
        if deaf > self.args.probe_interval:
            self.engine.stalled(deaf)
            self.metrics.stalls.inc()
            self.log.debug("loop stalled", seconds=round(deaf, 3))
        for s in list(self.probes.udp.values()):
            self.probes.on_udp(s, now)
        self._listened = now
        return now

    def _dispatch(self, key: selectors.SelectorKey, rd: socket.socket, now: float) -> None:
        if key.data == "signal":
            with contextlib.suppress(OSError):
                rd.recv(64)
        elif key.data == "state":  # a parsed state is waiting: adopted at the next pass
            with contextlib.suppress(OSError):
                self._state_rd.recv(64)
        elif key.data == UDP:
            self.probes.on_udp(key.fileobj, now)  # type: ignore[arg-type]
        elif isinstance(key.data, Link):
            self.on_link(key.data, key.fileobj, now)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop = True

    def shutdown(self) -> int:
        answered = list(self.engine.answering)
        byes = self.engine.leave(rounds=2)  # UDP may drop one; a second BYE is harmless
        self.probes.send(byes)  # first: the hand-over waits for nothing else
        self.reader.stop()
        for ip in answered:
            self.metrics.of(self.metrics.owner, ip).set(0)
        self.write_status()
        self.log.info("stopped", released=_texts(answered), byes=len(byes))
        return 0


def _texts(ips: Iterable[IPAddress]) -> list[str]:
    return [str(ip) for ip in sorted(ips, key=lambda a: (a.version, int(a)))]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        ipaddress.ip_address(args.metrics_addr)
    except ValueError:
        print(f"exalb-garp: --metrics-addr {args.metrics_addr!r} is not an IP", file=sys.stderr)
        return 2
    refusal = raw_socket_refusal()
    if refusal is not None:
        log.get_logger().error(
            "no CAP_NET_RAW: cannot answer ARP/NDP",
            error=refusal,
            hint="run exalb-garp as the image has it (its interpreter carries cap_net_raw), "
            "with capabilities.add [NET_RAW] and allowPrivilegeEscalation: true",
        )
        return 2
    return Sidecar(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
