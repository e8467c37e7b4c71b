"""The probe channel as the sidecar loop runs it: keys, sockets, datagrams in and out.

One UDP socket per IP version, bound to this node's own address as the desired state lists
it (its ``nodeIP``, the address its peers probe), not to every address, and admitting only
the peers' addresses (:mod:`garp.probesock`). A datagram from an address that is no peer's
is dropped before any hashing; the rest must carry a valid tag made with the key in
``--key-dir`` (:mod:`garp.keys`; the chart mounts that Secret into the sidecar only), and
then pass the peer table's checks (:mod:`garp.peers`, through the engine). Without a valid
key the sidecar does not start; a later change that leaves no valid key is refused and the
keys in use stay.

Every dropped datagram is counted by reason; the log gets at most one line per reason per
``LOG_EVERY`` seconds, so a flood cannot flood the log too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import time
from collections.abc import Callable

from exalb.config.model import IPAddress
from garp import log, probe, probesock
from garp.failover import Change, Engine
from garp.keys import KeyFileError, KeyWatcher
from garp.metrics import Metrics

# Datagrams (or, in the sidecar, frames of a link) read per socket per wake-up, so one busy
# socket cannot starve the others.
MAX_BATCH = 64
PROBE_RCVBUF = 1 << 20  # absorbs a flood while the loop is busy (capped by net.core.rmem_max)
LOG_EVERY = 10.0  # seconds between two log lines about the same kind of rejected datagram
#: The selector data of a probe socket.
UDP = "udp"


class ProbeChannel:
    """The probe sockets (registered in the loop's selector as :data:`UDP`) and keys.

    ``on_change`` gets what a received message changed (the sidecar logs it, counts it and
    writes its status)."""

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        sel: selectors.BaseSelector,
        key_dir: str,
        port: int,
        on_change: Callable[[Change, float], None],
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.sel = sel
        self.port = port
        self.on_change = on_change
        self.log = log.get_logger()
        self.udp: dict[int, socket.socket] = {}
        self.udp_addr: dict[int, IPAddress] = {}
        self._filtered: dict[int, frozenset[IPAddress]] = {}  # peers each socket admits
        self.key_watcher = KeyWatcher(key_dir)
        self.keys: probe.Keyring | None = None
        self._rejects: dict[str, tuple[float, int]] = {}  # reason -> (last log, unlogged)

    # --- keys ---------------------------------------------------------------------------

    def load_keys(self) -> bool:
        """Re-read the key files if they changed; False when no valid key is in force."""
        try:
            keys = self.key_watcher.poll()
        except KeyFileError as exc:
            self.metrics.key_errors.inc()
            if self.keys is None:
                self.log.error("no valid probe key, cannot start", error=str(exc))
                return False
            self.log.error("probe key change refused, keeping the keys in use", error=str(exc))
            return True
        if keys is not None and keys != self.keys:
            self.keys = keys
            self.log.info("probe keys loaded", key_ids=list(keys.ids))
        return self.keys is not None

    # --- sockets ------------------------------------------------------------------------

    def sync_sockets(self) -> None:
        """One UDP socket per IP version, bound to this node's own probe address (from the
        state); rebound when it changes, retried at each rescan while it cannot bind."""
        want = self.engine.own_addresses()
        for version in (4, 6):
            addr = want.get(version)
            if addr is not None and self.udp_addr.get(version) == addr:
                continue
            old = self.udp.pop(version, None)
            self.udp_addr.pop(version, None)
            if old is not None:
                self.sel.unregister(old)
                old.close()
            if addr is not None:
                self._open(version, addr)
        self.filter_peers()

    def _open(self, version: int, addr: IPAddress) -> None:
        try:
            s = probesock.open_probe_socket(addr, self.port, PROBE_RCVBUF)
        except OSError as exc:
            self.log.warning("probe socket unavailable", address=str(addr), error=str(exc))
            return
        self.udp[version] = s
        self.udp_addr[version] = addr
        self._filtered.pop(version, None)
        self.sel.register(s, selectors.EVENT_READ, UDP)
        self.log.info("probe socket bound", address=str(addr), port=self.port)

    def filter_peers(self) -> None:
        """Let the kernel admit only the current peers' addresses on each probe socket."""
        peers = self.engine.peers.addresses
        for version, s in self.udp.items():
            if self._filtered.get(version) == peers:
                continue
            try:
                complete = probesock.set_peers(s, version, peers)
            except OSError as exc:
                self.log.warning("probe socket filter failed", error=str(exc))
                continue
            self._filtered[version] = peers
            if not complete:
                self.log.warning("too many peers for a kernel filter: checked in user space",
                                 version=version, peers=len(peers))  # fmt: skip

    def rescan(self) -> None:
        """Retry a socket that could not bind; pick up changed key files."""
        if self.engine.own_addresses().keys() != self.udp.keys():
            self.sync_sockets()
        self.load_keys()  # after start-up a refused change keeps the keys in use

    # --- datagrams ----------------------------------------------------------------------

    def on_udp(self, s: socket.socket, now: float) -> None:
        assert self.keys is not None
        for _ in range(MAX_BATCH):
            try:
                data, addr = s.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. ICMP errors surfaced on the socket
            src = _source(addr[0])
            if src is None or not self.engine.known_address(src):
                self.reject("unknown-address", addr[0])  # junk: no hashing, no answer
                continue
            msg = probe.decode(data, self.keys)
            if isinstance(msg, str):
                self.reject(msg, addr[0])
                continue
            heard = self.engine.receive(msg, src, now)
            if heard.rejected is not None:
                self.reject(heard.rejected, addr[0], msg.node)
                continue
            if heard.bye:
                self.log.info("peer leaving", peer=msg.node)
            if heard.reply is not None:
                with contextlib.suppress(OSError):
                    s.sendto(probe.encode(heard.reply, self.keys), (str(src), self.port))
            self.on_change(heard.change, now)

    def reject(self, reason: str, src: str, node: str | None = None) -> None:
        """Count a dropped datagram; log at most one line per reason per ``LOG_EVERY``."""
        self.metrics.probe_rejected.labels(reason).inc()
        now = time.monotonic()
        last, unlogged = self._rejects.get(reason, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self._rejects[reason] = (last, unlogged + 1)
            return
        self._rejects[reason] = (now, 0)
        self.log.warning(
            "probe datagram dropped", reason=reason, source=src, node=node, since_last=unlogged
        )

    def send(self, items: list[tuple[IPAddress, probe.Message]]) -> int:
        """Sign and send each message to its address; how many went out."""
        sent = 0
        for addr, msg in items:
            s = self.udp.get(addr.version)
            if s is None or self.keys is None:
                continue
            try:
                s.sendto(probe.encode(msg, self.keys), (str(addr), self.port))
                sent += 1
            except OSError:
                continue  # unreachable while partitioned: that is what we detect
        return sent


def _source(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
