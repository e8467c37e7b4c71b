"""``exalb-garp``: the garp sidecar (second container of the speaker pod, CAP_NET_RAW only).

One thread, one ``selectors`` loop: AF_PACKET sockets per link, the two UDP probe sockets
and a signal wake-up pipe. Timers (probes, peer deaths, gratuitous bursts, state polling,
interface rescans) are folded into the select timeout, so an idle sidecar wakes ~10-20
times per second and does a handful of syscalls each time.

Life cycle:

* no desired-state file yet → answers nothing, waits;
* a valid file appears or changes → adopted at once (≤ poll interval, 100 ms);
* an invalid file → logged and counted; the previous state stays in force;
* the speaker dies → the file stays, the sidecar keeps serving it;
* SIGTERM/SIGINT → stop answering, send BYE to the other candidates (they take over
  immediately), write a final status, exit 0.

Logs: structlog JSON lines on stderr. Metrics: Prometheus on ``--metrics-port``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import secrets
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence

import structlog

from exalb.config.model import IPAddress
from exalb.contracts import l2_state as state
from exalb.filechannel import FileWatcher, write_atomic
from garp import probe
from garp.failover import Change, Engine, Timing
from garp.links import DEFAULT_EXCLUDES, Link
from garp.metrics import Metrics
from garp.responder import Responder, desired_ips

MAX_BATCH = 64  # frames drained per socket per wake-up, so one busy link cannot starve others


def configure_logging(level: str) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


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
        self.log = structlog.get_logger("exalb.garp")
        timing = Timing(probe_interval=args.probe_interval, dead_after=args.dead_after)
        self.engine = Engine(session=secrets.randbits(32), timing=timing)
        self.metrics = Metrics()
        excludes = tuple(x for x in args.exclude_interfaces.split(",") if x)
        self.responder = Responder(self.engine, self.metrics, excludes)
        self.watcher = FileWatcher(args.state)
        self.status_path = args.status or f"{args.state}.status"
        self._status_written = 0.0
        self.sel = selectors.DefaultSelector()
        self.udp: dict[int, socket.socket] = {}
        self.stop = False
        self._peers: tuple[tuple[str, bool], ...] = ()

    # --- setup --------------------------------------------------------------------------

    def open_probe_sockets(self) -> None:
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            try:
                s = socket.socket(family, socket.SOCK_DGRAM)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, self.args.probe_port))
                s.setblocking(False)
            except OSError as exc:
                self.log.warning("probe socket unavailable", family=int(family), error=str(exc))
                continue
            self.udp[4 if family == socket.AF_INET else 6] = s
            self.sel.register(s, selectors.EVENT_READ, "udp")

    def rescan(self) -> None:
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

    # --- inputs -------------------------------------------------------------------------

    def poll_state(self, now: float) -> None:
        data = self.watcher.poll()
        if data is None:
            return
        try:
            new = state.decode(data)
            if self.args.node and new.node != self.args.node:
                raise state.StateError(f"document is for node {new.node!r}")
        except state.StateError as exc:
            self.metrics.state_errors.inc()
            self.log.error("desired state rejected, keeping the previous one", error=str(exc))
            return
        old = self.engine.state
        if old is not None and new.generation < old.generation:
            self.log.warning("generation went backwards", old=old.generation, new=new.generation)
        change = self.engine.apply_state(new, now)
        self.metrics.generation.set(new.generation)
        self.metrics.track_ips(desired_ips(new))
        self.responder.apply_state()
        self._sync_link_sockets()
        self.log.info(
            "desired state applied",
            generation=new.generation,
            owned=[str(ip) for ip in new.owned],
            candidate_for=len(new.ips),
        )
        self.report(change, now, force_status=True)

    def on_udp(self, s: socket.socket, now: float) -> None:
        for _ in range(MAX_BATCH):
            try:
                data, addr = s.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. ICMP errors surfaced on the socket
            msg = probe.decode(data)
            if msg is None or msg.node == self.engine.node:
                continue
            if msg.kind == probe.BYE:
                self.log.info("peer leaving", peer=msg.node)
            change = self.engine.heard(msg, now)
            if msg.kind == probe.PROBE:
                with contextlib.suppress(OSError):
                    s.sendto(probe.encode(self.engine.ack_for(msg)), addr[:2])
            self.report(change, now)

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

    # --- outputs ------------------------------------------------------------------------

    def send_udp(self, items: list[tuple[IPAddress, probe.Message]]) -> int:
        sent = 0
        for addr, msg in items:
            s = self.udp.get(addr.version)
            if s is None:
                continue
            try:
                s.sendto(probe.encode(msg), (str(addr), self.args.probe_port))
                sent += 1
            except OSError:
                continue  # unreachable while partitioned: that is what we detect
        return sent

    def report(self, change: Change, now: float, force_status: bool = False) -> None:
        for ip in sorted(change.gained, key=str):
            why = "takeover" if ip in change.takeovers else "owner"
            self.log.info("answering", ip=str(ip), reason=why, peers=dict(self._peers))
            self.metrics.owner.labels(str(ip)).set(1)
            if ip in change.takeovers:
                self.metrics.takeovers.labels(str(ip)).inc()
        for ip in sorted(change.lost, key=str):
            self.log.info("stopped answering", ip=str(ip))
            self.metrics.owner.labels(str(ip)).set(0)
        peers = self.engine.peers_alive(now)
        if peers != self._peers:
            for node, alive in peers:
                if dict(self._peers).get(node) != alive:
                    self.log.info("peer", node=node, alive=alive)
            self._peers = peers
            self.metrics.set_peers(peers)
            force_status = True
        if change or force_status:
            self.write_status()

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
        rd, wr = socket.socketpair()
        rd.setblocking(False)
        wr.setblocking(False)
        signal.set_wakeup_fd(wr.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.sel.register(rd, selectors.EVENT_READ, "signal")
        self.open_probe_sockets()
        if self.args.metrics_port:
            self.metrics.serve(self.args.metrics_port, self.args.metrics_addr)
        self.log.info("started", session=self.engine.session, state=self.args.state)
        next_poll = next_rescan = 0.0
        while not self.stop:
            now = time.monotonic()
            if now - self._status_written >= STATUS_HEARTBEAT:
                self.write_status()  # the speaker treats an old report as a dead sidecar
            if now >= next_rescan:
                self.rescan()
                next_rescan = now + self.args.rescan_interval
            if now >= next_poll:
                self.poll_state(now)
                next_poll = now + self.args.poll_interval
            self.report(self.engine.tick(now), now)
            self.metrics.probes_sent.inc(self.send_udp(self.engine.probes_due(now)))
            for ip in self.engine.announcements_due(now):
                self.responder.announce(ip)
            deadline = min(
                self.engine.next_deadline(now),
                next_poll,
                next_rescan,
                self._status_written + STATUS_HEARTBEAT,
            )
            for key, _ in self.sel.select(max(0.0, deadline - time.monotonic())):
                now = time.monotonic()
                if key.data == "signal":
                    with contextlib.suppress(OSError):
                        rd.recv(64)
                elif key.data == "udp":
                    self.on_udp(key.fileobj, now)  # type: ignore[arg-type]
                elif isinstance(key.data, Link):
                    self.on_link(key.data, key.fileobj, now)  # type: ignore[arg-type]
        return self.shutdown()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop = True

    def shutdown(self) -> int:
        answered = sorted(self.engine.answering, key=str)
        byes = self.engine.leave()
        for _ in range(2):  # UDP may drop one; a duplicate BYE is harmless
            self.send_udp(byes)
        for ip in answered:
            self.metrics.owner.labels(str(ip)).set(0)
        self.write_status()
        self.log.info("stopped", released=[str(ip) for ip in answered], byes=len(byes))
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        ipaddress.ip_address(args.metrics_addr)
    except ValueError:
        print(f"exalb-garp: --metrics-addr {args.metrics_addr!r} is not an IP", file=sys.stderr)
        return 2
    return Sidecar(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
