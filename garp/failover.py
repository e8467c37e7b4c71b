"""Who answers for an IP *right now*: Kubernetes ranking + data-path liveness (pure).

The speaker's desired state says, per IP, which nodes may answer and in which order (the
MetalLB hash ranking, :mod:`speaker.l2.election`). MetalLB then relies on memberlist to
notice a dead owner, which takes seconds (and tens of seconds when gossip is unlucky).
Here each sidecar watches, on the segment itself, the candidates ranked above it:

* **Probing.** For every IP where this node ranks *r* > 0, it sends a UDP probe
  (:mod:`garp.probe`) every ``probe_interval`` (100 ms) to each better-ranked
  candidate's node IP (one address per peer, IPv4 preferred); that peer's *sidecar*
  acks. An ack to one of our probes, or a probe in a session that already answered us,
  counts as life (:mod:`garp.peers` says which messages are believed: authenticated, from
  a known peer at its address, fresh).
  Probes go node-to-node, so the cost is per peer, not per IP: a node sends at most
  10 probes/s to each node ranked above it, whatever the number of Services.
* **Rule.** A node answers IP *x* iff it is a candidate and every better-ranked candidate
  is dead, dead meaning "nothing heard for ``dead_after``" (350 ms = 3 intervals + 50 ms
  slack for scheduling jitter) or "said BYE". Rank 0 therefore always answers, the standby
  takes over ≈350-450 ms after the owner falls silent, and rank 2 only when both are gone.
  New peers get one ``dead_after`` of grace, so a restarting standby never grabs an IP
  from a live owner; so do live peers when a new state arrives (every sidecar is busy
  adopting it at the same moment), at most once per ``state_grace_every``.
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
   trigger the same: the owner re-asserts; a takeover node probes its betters at once (at
   most one extra round per probe interval, so a flood of claims cannot become a flood of
   probes).

Cost. Everything per message or per frame is O(1) in the number of IPs: the desired state
is indexed once when it changes (IP -> rank and better-ranked peers; peer -> the IPs it
ranks above us for, and below us for), each IP keeps a count of its live better-ranked
peers, and a message re-evaluates only the IPs of the peer whose liveness it changed.
Gratuitous bursts sit in a heap. Per loop iteration the work is O(peers).

Kubernetes stays the authority on eligibility: the data path can only choose *among* the
candidates the speaker listed, never add one. Deliberate limits: liveness is per node, not
per (node, family); and if two sidecars run different desired states (one speaker lags),
both may answer until the laggard's speaker catches up (milliseconds in practice).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set
from dataclasses import dataclass, field

from exalb.config.model import IPAddress
from exalb.contracts.l2_state import DesiredState, IPState
from garp.peers import Budget, PeerTable
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
    # A new desired state is a cluster-wide event: every speaker rewrites its file at the
    # same moment and every sidecar is busy adopting it, so live peers get one dead_after of
    # grace then (at most once per this many seconds, so that a state that changes all the
    # time cannot postpone a real failover for more than one dead_after).
    state_grace_every: float = 1.0


@dataclass(frozen=True)
class Change:
    gained: frozenset[IPAddress] = frozenset()
    lost: frozenset[IPAddress] = frozenset()
    takeovers: frozenset[IPAddress] = frozenset()  # gained while not ranked first

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


@dataclass(frozen=True)
class Heard:
    """The outcome of one authenticated message: what changed, the ack to send back to
    its source (if any), or why it was dropped."""

    change: Change = field(default_factory=Change)
    reply: Message | None = None
    rejected: str | None = None
    bye: bool = False


@dataclass
class _Burst:
    """The remaining send times (absolute, ascending) of one IP's announcement burst."""

    times: list[float]
    token: int


def _addr_key(a: IPAddress) -> tuple[int, int]:
    return (a.version, int(a))


@dataclass(frozen=True)
class StateIndex:
    """A desired state indexed for one node (see :func:`index_state`); read-only."""

    state: DesiredState
    entries: dict[IPAddress, IPState]
    rank: dict[IPAddress, int]  # this node's rank per IP
    betters: dict[IPAddress, tuple[str, ...]]  # probe-able candidates ranked above it
    pinned: set[IPAddress]  # a better-ranked candidate cannot be probed
    by_peer: dict[str, list[IPAddress]]  # peer -> IPs it ranks above this node for
    below: dict[str, list[IPAddress]]  # peer -> IPs it ranks below this node for
    known: dict[str, set[IPAddress]]  # every other candidate -> its nodeIPs
    own: dict[int, IPAddress]  # this node's nodeIP per IP version


def index_state(state: DesiredState) -> StateIndex:
    """Everything the engine looks up per message and per frame, built once per state
    (pure: the sidecar runs it on its reader thread, off the loop)."""
    me = state.node
    entries: dict[IPAddress, IPState] = {}
    rank: dict[IPAddress, int] = {}
    betters: dict[IPAddress, tuple[str, ...]] = {}
    pinned: set[IPAddress] = set()
    by_peer: dict[str, list[IPAddress]] = {}
    below: dict[str, list[IPAddress]] = {}
    known: dict[str, set[IPAddress]] = {}
    own: dict[int, set[IPAddress]] = {}
    for e in state.ips:
        entries[e.ip] = e
        mine = e.rank_of(me)
        if mine is None:
            continue
        rank[e.ip] = mine
        above: list[str] = []
        for i, c in enumerate(e.candidates):
            if c.node == me:
                if c.node_ip is not None:
                    own.setdefault(c.node_ip.version, set()).add(c.node_ip)
                continue
            if c.node_ip is not None:
                known.setdefault(c.node, set()).add(c.node_ip)
            if i > mine:
                below.setdefault(c.node, []).append(e.ip)
            elif c.node_ip is None:
                pinned.add(e.ip)  # cannot be probed: presumed alive, Kubernetes decides
            else:
                above.append(c.node)
                by_peer.setdefault(c.node, []).append(e.ip)
        betters[e.ip] = tuple(above)
    return StateIndex(
        state,
        entries,
        rank,
        betters,
        pinned,
        by_peer,
        below,
        known,
        {v: min(a, key=_addr_key) for v, a in own.items()},
    )


class Engine:
    """State machine of one sidecar. Feed it inputs with ``now`` (monotonic seconds)."""

    def __init__(
        self, session: int, timing: Timing | None = None, budget: Budget | None = None
    ) -> None:
        self.session = session
        self.timing = timing or Timing()
        self.state: DesiredState | None = None
        self.peers = PeerTable(session, self.timing.dead_after, budget)
        self._answering: set[IPAddress] = set()
        # Indexes of the current state (rebuilt by apply_state).
        self._entries: dict[IPAddress, IPState] = {}
        self._rank: dict[IPAddress, int] = {}
        self._betters: dict[IPAddress, tuple[str, ...]] = {}  # probe-able, ranked above us
        self._pinned: set[IPAddress] = set()  # a better candidate cannot be probed
        self._by_peer: dict[str, list[IPAddress]] = {}  # peer -> IPs it ranks above us for
        self._below: dict[str, list[IPAddress]] = {}  # peer -> IPs it ranks below us for
        self._live_betters: dict[IPAddress, int] = {}
        self._covering: dict[str, int] = {}  # peer -> answered IPs it ranks above us for
        self._own: dict[int, IPAddress] = {}
        # Announcements.
        self._bursts: dict[IPAddress, _Burst] = {}
        self._heap: list[tuple[float, int, IPAddress]] = []
        self._tokens = 0
        self._reasserted: dict[IPAddress, float] = {}
        # Probing.
        self._next_probe = 0.0
        self._early_probe = -math.inf
        self._state_grace_at = -math.inf
        self._seq = 0

    @property
    def node(self) -> str:
        return self.state.node if self.state else ""

    @property
    def answering(self) -> Set[IPAddress]:
        """The IPs answered now (a live view: read it, never keep or mutate it)."""
        return self._answering

    def entry(self, ip: IPAddress) -> IPState | None:
        return self._entries.get(ip)

    def owned(self) -> list[IPAddress]:
        """IPs where this node ranks first (what Kubernetes says it owns)."""
        return [ip for ip, rank in self._rank.items() if rank == 0]

    def own_addresses(self) -> dict[int, IPAddress]:
        """This node's probe address per IP version (its own ``nodeIP`` in the state)."""
        return dict(self._own)

    # --- inputs -------------------------------------------------------------------------

    def apply_state(
        self, state: DesiredState, now: float, index: StateIndex | None = None
    ) -> Change:
        """Adopt a new desired state; new peers start with one ``dead_after`` of grace.

        ``index`` is :func:`index_state` of ``state``, when the caller built it elsewhere
        (the sidecar does on its reader thread: it is the costly part)."""
        if index is None or index.state is not state:
            index = index_state(state)
        self.state = state
        self._entries, self._rank, self._betters = index.entries, index.rank, index.betters
        self._pinned, self._by_peer, self._below = index.pinned, index.by_peer, index.below
        self._own = dict(index.own)
        rank, betters, pinned = index.rank, index.betters, index.pinned
        known, by_peer = index.known, index.by_peer
        grace = now - self._state_grace_at >= self.timing.state_grace_every
        if grace:
            self._state_grace_at = now
        self.peers.set_known(known, set(by_peer), now, grace_alive=grace)
        alive = {n for n in self.peers.watched if self.peers.peers[n].alive}
        self._live_betters = {ip: sum(b in alive for b in bs) for ip, bs in betters.items()}
        new = {ip for ip in rank if ip not in pinned and self._live_betters[ip] == 0}
        old = self._answering
        self._answering = new
        self._covering = {}
        for ip in new:
            for b in betters[ip]:
                self._covering[b] = self._covering.get(b, 0) + 1
        gained = new - old
        lost = old - new
        for ip in gained:
            self._start_burst(ip, now)
        for ip in lost:
            self._bursts.pop(ip, None)
            self._reasserted.pop(ip, None)
        return Change(
            frozenset(gained), frozenset(lost), frozenset(ip for ip in gained if rank[ip] > 0)
        )

    def receive(self, msg: Message, src: IPAddress, now: float) -> Heard:
        """An authenticated probe, ack or bye from ``src``."""
        verdict = self.peers.receive(msg, src, now)
        if verdict.rejected is not None:
            return Heard(rejected=verdict.rejected)
        change = Change()
        if verdict.alive is not None:
            change = self._liveness({msg.node: verdict.alive}, now)
        if msg.covering:
            peer = self.peers.peers[msg.node]
            if now - peer.covering_at >= self.timing.reassert_gap:
                peer.covering_at = now
                for ip in self._below.get(msg.node, ()):
                    if ip in self._answering:
                        self._reassert(ip, now)
        reply = self.ack_for(msg) if verdict.ack else None
        return Heard(change, reply, bye=verdict.bye)

    def known_address(self, src: IPAddress) -> bool:
        """Whether ``src`` belongs to some peer (checked before the tag, to drop junk)."""
        return src in self.peers.addresses

    def foreign_claim(self, ip: IPAddress, now: float) -> None:
        """Another MAC claimed ``ip`` (GARP, ARP reply or NA) while we answer it."""
        if ip not in self._answering:
            return
        if self._rank.get(ip) == 0:
            self._reassert(ip, now)
        elif now - self._early_probe >= self.timing.probe_interval:
            self._early_probe = now
            self._next_probe = now  # ask our betters right away; an ack makes us yield

    def stalled(self, seconds: float) -> None:
        """The caller's loop was busy for ``seconds`` without listening (parsing a large
        state, say): shift the live peers' silence by that much, so our own stall never
        reads as their death. The peers may have stalled at the same moment (every speaker
        rewrites its state at once), and an ack they owe us cannot come before they
        resume."""
        self.peers.stalled(seconds)

    def tick(self, now: float) -> Change:
        dead = self.peers.expire(now)
        return self._liveness(dict.fromkeys(dead, False), now) if dead else Change()

    def leave(self, rounds: int = 1) -> list[tuple[IPAddress, Message]]:
        """Stop answering everything; BYE messages for every other candidate, ``rounds``
        times (UDP may drop one). Each copy has its own seq, so a receiver believes the
        first that arrives and finds the others harmless, never replays."""
        self._answering = set()
        self._covering = {}
        self._bursts.clear()
        self._heap.clear()
        if self.state is None:
            return []
        addrs = sorted(self.peers.addresses, key=_addr_key)
        return [
            (a, Message(BYE, self.node, self.session, self._next_seq()))
            for _ in range(rounds)
            for a in addrs
        ]

    # --- outputs ------------------------------------------------------------------------

    def ack_for(self, msg: Message) -> Message:
        return Message(
            ACK,
            self.node,
            self.session,
            self._next_seq(),
            self._flags_for(msg.node),
            echo_session=msg.session,
            echo_seq=msg.seq,
        )

    def probes_due(self, now: float) -> list[tuple[IPAddress, Message]]:
        if now < self._next_probe or not self.peers.watched:
            return []
        self._next_probe = now + self.timing.probe_interval
        out: list[tuple[IPAddress, Message]] = []
        for name in self.peers.watched:
            peer = self.peers.peers[name]
            # Liveness is per node, so one address per peer is enough (IPv4 preferred).
            addr = min(peer.addrs, key=_addr_key)
            seq = self._next_seq()
            self.peers.probe_sent(peer, seq, now)
            out.append((addr, Message(PROBE, self.node, self.session, seq, self._flags_for(name))))
        return out

    def announcements_due(self, now: float, limit: int | None = None) -> list[IPAddress]:
        """IPs whose gratuitous ARP / unsolicited NA should go out now (once, even if the
        loop ran late and several rounds are due). At most ``limit``: the rest stay due, so
        a takeover of thousands of IPs is sent in slices between which the loop still
        answers its peers (a loop busy for ``dead_after`` would look dead to them)."""
        out: list[IPAddress] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            _, token, ip = heapq.heappop(heap)
            burst = self._bursts.get(ip)
            if burst is None or burst.token != token:
                continue  # cancelled or restarted: a newer entry exists (or none)
            out.append(ip)
            while burst.times and burst.times[0] <= now:
                burst.times.pop(0)
            if burst.times:
                heapq.heappush(heap, (burst.times[0], token, ip))
            else:
                del self._bursts[ip]
        return out

    def next_deadline(self, now: float) -> float:
        """When something may change next (probe, peer death, announcement)."""
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        times = [heap[0][0]] if heap else []
        if self.peers.watched:
            times.append(self._next_probe)
            death = self.peers.next_death()
            if death is not None:
                times.append(death)
        return min(times, default=now + 1.0)

    def peers_alive(self, now: float) -> tuple[tuple[str, bool], ...]:
        dead_after = self.timing.dead_after
        return tuple((n, self.peers.peers[n].is_alive(now, dead_after)) for n in self.peers.watched)

    # --- internals ----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _stale(self, item: tuple[float, int, IPAddress]) -> bool:
        burst = self._bursts.get(item[2])
        return burst is None or burst.token != item[1]

    def _liveness(self, changed: dict[str, bool], now: float) -> Change:
        """Re-evaluate only the IPs of peers whose liveness changed."""
        before: dict[IPAddress, bool] = {}
        for node, alive in changed.items():
            for ip in self._by_peer.get(node, ()):
                before.setdefault(ip, ip in self._answering)
                n = self._live_betters[ip] + (1 if alive else -1)
                self._live_betters[ip] = n
                if alive and n == 1:
                    self._lose(ip)
                elif not alive and n == 0 and ip not in self._pinned:
                    self._gain(ip, now)
        gained = frozenset(ip for ip, was in before.items() if not was and ip in self._answering)
        lost = frozenset(ip for ip, was in before.items() if was and ip not in self._answering)
        return Change(gained, lost, frozenset(ip for ip in gained if self._rank[ip] > 0))

    def _gain(self, ip: IPAddress, now: float) -> None:
        if ip in self._answering:
            return
        self._answering.add(ip)
        for b in self._betters[ip]:
            self._covering[b] = self._covering.get(b, 0) + 1
        self._start_burst(ip, now)

    def _lose(self, ip: IPAddress) -> None:
        if ip not in self._answering:
            return
        self._answering.discard(ip)
        for b in self._betters[ip]:
            self._covering[b] -= 1
        self._bursts.pop(ip, None)
        self._reasserted.pop(ip, None)

    def _flags_for(self, node: str) -> int:
        """COVERING when we answer an IP for which ``node`` ranks above us."""
        return COVERING if self._covering.get(node, 0) > 0 else 0

    def _start_burst(self, ip: IPAddress, now: float) -> None:
        t = self.timing
        regular = [
            now + k * t.burst_interval
            for k in range(1, int(t.burst_duration / t.burst_interval) + 1)
        ]
        self._tokens += 1
        times = sorted({now, *(now + e for e in t.early_repeats), *regular})
        self._bursts[ip] = _Burst(times, self._tokens)
        heapq.heappush(self._heap, (times[0], self._tokens, ip))

    def _reassert(self, ip: IPAddress, now: float) -> None:
        last = self._reasserted.get(ip)
        if last is not None and now - last < self.timing.reassert_gap:
            return
        self._reasserted[ip] = now
        self._start_burst(ip, now)
