"""Who answers for an IP *right now*: Kubernetes ranking + data-path liveness (pure).

The speaker's desired state says, per IP, which nodes may answer and in which order (the
MetalLB hash ranking, :mod:`speaker.l2.election`). MetalLB then relies on memberlist to
notice a dead owner, which takes seconds (and tens of seconds when gossip is unlucky).
Here each sidecar watches, on the segment itself, the candidates ranked above it:

* **Probing.** For every IP where this node ranks *r* > 0, it sends a UDP probe
  (:mod:`garp.probe`) every ``probe_interval`` (100 ms) to each better-ranked
  candidate's node IP (one address per peer, IPv4 preferred); that peer's *sidecar*
  acks. Any message from a peer counts as life.
  Probes go node-to-node, so the cost is per peer, not per IP: a node sends at most
  10 probes/s to each node ranked above it, whatever the number of Services.
* **Rule.** A node answers IP *x* iff it is a candidate and every better-ranked candidate
  is dead, dead meaning "nothing heard for ``dead_after``" (350 ms = 3 intervals + 50 ms
  slack for scheduling jitter) or "said BYE". Rank 0 therefore always answers, the standby
  takes over ≈350-450 ms after the owner falls silent, and rank 2 only when both are gone.
  New peers get one ``dead_after`` of grace, so a restarting standby never grabs an IP
  from a live owner.
* **Graceful shutdown.** On SIGTERM the sidecar stops answering and sends BYE to every
  other candidate; they treat it as dead at once (no detection delay). BYE is tied to the
  sender's random session, so a restarted sidecar is alive again with its first ack.
* **Takeover/regain announcements.** Gaining an IP starts MetalLB's gratuitous burst
  (immediately, then every 1.1 s for 5 s; 1.1 s beats Linux's 1 s ARP locktime), plus two
  early repeats at 0.1 s and 0.3 s that override a late answer from the node that just
  left. Losing it stops the burst and the answers at once.

Split brain. A partition lets both sides answer; when it heals exactly one must remain:

1. The lower-ranked node yields as soon as one ack from the better-ranked node arrives
   (≤ one probe interval after the link is back).
2. Its probes carry the COVERING flag ("I answer an IP you rank above me for"). The
   rightful owner, on seeing it, restarts its gratuitous burst for those IPs (at most once
   per ``reassert_gap``), so clients that were re-pointed to the standby come back within
   milliseconds instead of waiting for their neighbour entry to expire.
3. Frames claiming an answered IP from a foreign MAC (a GARP or ARP reply / NA for the IP)
   trigger the same: the owner re-asserts; a takeover node probes its betters at once.

Kubernetes stays the authority on eligibility: the data path can only choose *among* the
candidates the speaker listed, never add one. Deliberate limits: liveness is per node, not
per (node, family); and if two sidecars run different desired states (one speaker lags),
both may answer until the laggard's speaker catches up (milliseconds in practice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exalb.config.model import IPAddress
from exalb.contracts.l2_state import Candidate, DesiredState
from garp.probe import ACK, BYE, COVERING, PROBE, Message


@dataclass(frozen=True)
class Timing:
    probe_interval: float = 0.1
    dead_after: float = 0.35
    burst_interval: float = 1.1
    burst_duration: float = 5.0
    # Extra early rounds (seconds after the first): a late answer from the node that just
    # left (e.g. its solicited NA to a NUD probe, override set) can land after our first
    # announcement and point the client back at it; a repeat 0.1 s later wins. Only the
    # 1.1 s rounds matter for ARP's locktime, and they stay on their schedule.
    early_repeats: tuple[float, ...] = (0.1, 0.3)
    reassert_gap: float = 1.0


@dataclass(frozen=True)
class Change:
    gained: frozenset[IPAddress] = frozenset()
    lost: frozenset[IPAddress] = frozenset()
    takeovers: frozenset[IPAddress] = frozenset()  # gained while not ranked first

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


@dataclass
class _Peer:
    node: str
    addrs: frozenset[IPAddress]
    last_seen: float
    leaving_session: int | None = None

    def alive(self, now: float, dead_after: float) -> bool:
        return self.leaving_session is None and now - self.last_seen < dead_after


@dataclass
class _Burst:
    """The remaining send times (absolute, ascending) of one IP's announcement burst."""

    times: list[float]

    @property
    def next_at(self) -> float:
        return self.times[0]


@dataclass
class Engine:
    """State machine of one sidecar. Feed it inputs with ``now`` (monotonic seconds)."""

    session: int
    timing: Timing = field(default_factory=Timing)
    state: DesiredState | None = None
    answering: frozenset[IPAddress] = frozenset()
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _bursts: dict[IPAddress, _Burst] = field(default_factory=dict)
    _reasserted: dict[IPAddress, float] = field(default_factory=dict)
    _next_probe: float = 0.0
    _seq: int = 0

    @property
    def node(self) -> str:
        return self.state.node if self.state else ""

    # --- inputs -------------------------------------------------------------------------

    def apply_state(self, state: DesiredState, now: float) -> Change:
        """Adopt a new desired state; new peers start with one ``dead_after`` of grace."""
        self.state = state
        wanted: dict[str, set[IPAddress]] = {}
        for e in state.ips:
            rank = e.rank_of(state.node)
            for c in e.candidates[: rank or 0]:
                if c.node_ip is not None:
                    wanted.setdefault(c.node, set()).add(c.node_ip)
        for name in list(self._peers):
            if name not in wanted:
                del self._peers[name]
        for name, addrs in wanted.items():
            peer = self._peers.get(name)
            if peer is None:
                self._peers[name] = _Peer(name, frozenset(addrs), last_seen=now)
            else:
                peer.addrs = frozenset(addrs)
        return self._evaluate(now)

    def heard(self, msg: Message, now: float) -> Change:
        """A probe, ack or bye from another sidecar."""
        peer = self._peers.get(msg.node)
        if peer is not None:
            if msg.kind == BYE:
                peer.leaving_session = msg.session
            elif msg.session != peer.leaving_session:
                peer.leaving_session = None
                peer.last_seen = now
        if msg.covering:
            for ip in self._owned_over(msg.node):
                self._reassert(ip, now)
        return self._evaluate(now)

    def foreign_claim(self, ip: IPAddress, now: float) -> None:
        """Another MAC claimed ``ip`` (GARP, ARP reply or NA) while we answer it."""
        if ip not in self.answering or self.state is None:
            return
        entry = self.state.entry(ip)
        if entry is not None and entry.rank_of(self.node) == 0:
            self._reassert(ip, now)
        else:
            self._next_probe = now  # ask our betters right away; an ack makes us yield

    def tick(self, now: float) -> Change:
        return self._evaluate(now)

    def leave(self) -> list[tuple[IPAddress, Message]]:
        """Stop answering everything; BYE messages for every other candidate."""
        self.answering = frozenset()
        self._bursts.clear()
        if self.state is None:
            return []
        addrs = {
            c.node_ip
            for e in self.state.ips
            for c in e.candidates
            if c.node != self.node and c.node_ip is not None
        }
        msg = Message(BYE, self.node, self.session)
        return [(a, msg) for a in sorted(addrs, key=lambda a: (a.version, int(a)))]

    # --- outputs ------------------------------------------------------------------------

    def ack_for(self, msg: Message) -> Message:
        return Message(ACK, self.node, self.session, msg.seq, self._flags_for(msg.node))

    def probes_due(self, now: float) -> list[tuple[IPAddress, Message]]:
        if now < self._next_probe or not self._peers:
            return []
        self._next_probe = now + self.timing.probe_interval
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        out: list[tuple[IPAddress, Message]] = []
        for peer in self._peers.values():
            # Liveness is per node, so one address per peer is enough (IPv4 preferred).
            addr = min(peer.addrs, key=lambda a: (a.version, int(a)))
            flags = self._flags_for(peer.node)
            out.append((addr, Message(PROBE, self.node, self.session, self._seq, flags)))
        return out

    def _burst(self, now: float) -> _Burst:
        t = self.timing
        regular = [
            now + k * t.burst_interval
            for k in range(1, int(t.burst_duration / t.burst_interval) + 1)
        ]
        return _Burst(sorted({now, *(now + e for e in t.early_repeats), *regular}))

    def announcements_due(self, now: float) -> list[IPAddress]:
        """IPs whose gratuitous ARP / unsolicited NA should go out now (once, even if the
        loop ran late and several rounds are due)."""
        out: list[IPAddress] = []
        for ip, burst in list(self._bursts.items()):
            if burst.next_at <= now:
                out.append(ip)
                while burst.times and burst.times[0] <= now:
                    burst.times.pop(0)
                if not burst.times:
                    del self._bursts[ip]
        return out

    def next_deadline(self, now: float) -> float:
        """When something may change next (probe, peer death, announcement)."""
        times = [b.next_at for b in self._bursts.values()]
        if self._peers:
            times.append(self._next_probe)
            times.extend(
                p.last_seen + self.timing.dead_after
                for p in self._peers.values()
                if p.alive(now, self.timing.dead_after)
            )
        return min(times, default=now + 1.0)

    def peers_alive(self, now: float) -> tuple[tuple[str, bool], ...]:
        return tuple(
            sorted((n, p.alive(now, self.timing.dead_after)) for n, p in self._peers.items())
        )

    # --- internals ----------------------------------------------------------------------

    def _alive(self, c: Candidate, now: float) -> bool:
        if c.node_ip is None:
            return True  # cannot be probed: presume alive, Kubernetes decides
        peer = self._peers.get(c.node)
        return peer is None or peer.alive(now, self.timing.dead_after)

    def _evaluate(self, now: float) -> Change:
        new: set[IPAddress] = set()
        takeovers: set[IPAddress] = set()
        if self.state is not None:
            for e in self.state.ips:
                rank = e.rank_of(self.node)
                if rank is None:
                    continue
                if not any(self._alive(c, now) for c in e.candidates[:rank]):
                    new.add(e.ip)
                    if rank > 0:
                        takeovers.add(e.ip)
        gained = frozenset(new - self.answering)
        lost = frozenset(self.answering - new)
        for ip in gained:
            self._bursts[ip] = self._burst(now)
        for ip in lost:
            self._bursts.pop(ip, None)
            self._reasserted.pop(ip, None)
        self.answering = frozenset(new)
        return Change(gained, lost, frozenset(takeovers & gained))

    def _owned_over(self, node: str) -> list[IPAddress]:
        """IPs we answer where ``node`` is a candidate ranked below us."""
        if self.state is None:
            return []
        out: list[IPAddress] = []
        for e in self.state.ips:
            if e.ip not in self.answering:
                continue
            mine, theirs = e.rank_of(self.node), e.rank_of(node)
            if mine is not None and theirs is not None and theirs > mine:
                out.append(e.ip)
        return out

    def _flags_for(self, node: str) -> int:
        """COVERING when we answer an IP for which ``node`` ranks above us."""
        if self.state is None:
            return 0
        for e in self.state.ips:
            if e.ip in self.answering:
                mine, theirs = e.rank_of(self.node), e.rank_of(node)
                if mine is not None and theirs is not None and theirs < mine:
                    return COVERING
        return 0

    def _reassert(self, ip: IPAddress, now: float) -> None:
        last = self._reasserted.get(ip)
        if last is not None and now - last < self.timing.reassert_gap:
            return
        self._reasserted[ip] = now
        self._bursts[ip] = self._burst(now)
