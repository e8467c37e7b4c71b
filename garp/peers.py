"""Which sidecar messages to believe, and which watched peers are alive (pure).

A message reaches this table only after its HMAC tag verified (:mod:`garp.probe`): it was
sent by a holder of the cluster's probe key. The table adds *who*, *where* and *when*:

* **Known peers only.** The peers are the other candidates of the IPs in this node's desired
  state, at the addresses the state gives them (their ``nodeIP``; the sidecar also drops
  datagrams from any other source address before spending a hash on them). A message that
  names another node, or comes from another address, is dropped without an answer: an ack
  to a stranger would tell it this node's name and session.
* **Fresh only.** Each sidecar numbers every message it sends (``seq``, strictly increasing
  within its random ``session``). A message whose seq is not above the highest seen in its
  session is a replay or a duplicate and is dropped. The seq of the *verified* session (see
  below) is never forgotten; a few others are remembered (least recently used first out).
* **Life is proven by challenge.** An ACK counts only if it answers a probe this sidecar
  sent to that peer (it echoes our session and the probe's seq; each probe can be answered
  once, within :data:`CHALLENGE_TTL`), so a recorded ack cannot keep a dead peer alive.
  The ack's session becomes the peer's *verified* session; later probes in that session
  count as life too.
* **BYE only in the verified session.** A BYE from the session we last saw alive makes the
  peer dead at once. A BYE recorded earlier and replayed after the sender restarted names
  a session that is no longer the verified one and changes nothing; a forged one fails the
  tag. After a BYE, the next ack from a *new* session (the restarted sidecar) revives the
  peer, while late acks of the session that left stay ignored.
* **No clocks compared across nodes.** Freshness comes from sequence numbers and the
  challenge, never from timestamps, so a node with a wrong clock is not declared dead
  (which would be a false takeover) and no skew tolerance has to be guessed.
* **A budget per peer.** At most ``Budget.rate`` authenticated messages per second per peer
  are processed (a healthy peer sends about 20: probes and acks at 10/s). Only messages
  that passed the tag consume it, so junk with a peer's spoofed source address cannot use
  up the peer's budget and starve its real acks.

Liveness is tracked for *watched* peers only (those ranked above this node for some IP:
the ones it probes); other known peers are answered but their death changes nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from exalb.config.model import IPAddress
from garp.probe import ACK, BYE, PROBE, Message

#: Sessions (besides the verified one) whose highest seq is remembered per peer.
MAX_SESSIONS = 4
#: How long a probe stays answerable. Each probe can be answered once and every ack has a
#: new seq, so this bounds memory, not replay; it is generous so that an ack which arrived
#: in time but was read late (this sidecar was busy) still counts.
CHALLENGE_TTL = 2.0


@dataclass(frozen=True)
class Budget:
    """Token bucket per peer for authenticated messages (messages per second, burst)."""

    rate: float = 200.0
    burst: float = 200.0


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float, budget: Budget) -> bool:
        self.tokens = min(budget.burst, self.tokens + max(0.0, now - self.at) * budget.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Peer:
    node: str
    addrs: frozenset[IPAddress]
    last_seen: float
    watched: bool = False
    alive: bool = True  # as last reported to the engine (watched peers only)
    session: int | None = None  # verified: it answered one of our probes
    session_seq: int = -1  # highest seq seen in the verified session
    bye_session: int | None = None  # said BYE; dead until another session answers
    seen: dict[int, int] = field(default_factory=dict)  # other sessions -> highest seq
    outstanding: dict[int, float] = field(default_factory=dict)  # our probe seq -> sent at
    bucket: _Bucket = field(default_factory=lambda: _Bucket(math.inf, 0.0))
    covering_at: float = -math.inf

    def is_alive(self, now: float, dead_after: float) -> bool:
        return self.bye_session is None and now - self.last_seen < dead_after

    def fresh(self, session: int, seq: int) -> bool:
        """Record ``seq`` for ``session``; False if it is not above the highest seen."""
        if session == self.session:
            if seq <= self.session_seq:
                return False
            self.session_seq = seq
            return True
        last = self.seen.pop(session, None)
        if last is not None and seq <= last:
            self.seen[session] = last
            return False
        self.seen[session] = seq  # (re)inserted last: most recently used
        while len(self.seen) > MAX_SESSIONS:
            del self.seen[next(iter(self.seen))]
        return True

    def verify(self, session: int) -> None:
        """``session`` answered our challenge: it is now the peer's verified session."""
        if session == self.session:
            return
        if self.session is not None:
            self.seen[self.session] = self.session_seq
        self.session_seq = self.seen.pop(session, -1)
        self.session = session
        while len(self.seen) > MAX_SESSIONS:
            del self.seen[next(iter(self.seen))]


@dataclass(frozen=True)
class Verdict:
    """What one authenticated message did to the table."""

    rejected: str | None = None  # dropped, and why (metrics label); nothing else happened
    ack: bool = False  # a probe: answer it
    alive: bool | None = None  # the sender's liveness changed to this
    bye: bool = False  # the sender said BYE and it took effect


class PeerTable:
    def __init__(self, session: int, dead_after: float, budget: Budget | None = None) -> None:
        self.session = session
        self.dead_after = dead_after
        self.budget = budget or Budget()
        self.peers: dict[str, Peer] = {}
        self.addresses: frozenset[IPAddress] = frozenset()
        self.watched: tuple[str, ...] = ()  # sorted

    def set_known(
        self,
        known: Mapping[str, Collection[IPAddress]],
        watched: Collection[str],
        now: float,
        grace_alive: bool = False,
    ) -> None:
        """Adopt the peers of a new desired state. A peer that starts being watched gets one
        ``dead_after`` of grace, so a restarting standby never grabs an IP from a live owner;
        with ``grace_alive`` so does every live watched peer (a dead one stays dead)."""
        for name in [n for n in self.peers if n not in known]:
            del self.peers[name]
        for name, addrs in known.items():
            peer = self.peers.get(name)
            if peer is None:
                peer = self.peers[name] = Peer(name, frozenset(addrs), last_seen=now)
                peer.bucket = _Bucket(self.budget.burst, now)
            peer.addrs = frozenset(addrs)
            was, peer.watched = peer.watched, name in watched
            if peer.watched and not was:
                peer.last_seen, peer.bye_session = now, None
                peer.outstanding.clear()
            elif peer.watched and grace_alive and peer.is_alive(now, self.dead_after):
                peer.last_seen = max(peer.last_seen, now)
            peer.alive = peer.watched and peer.is_alive(now, self.dead_after)
        self.addresses = frozenset(a for p in self.peers.values() for a in p.addrs)
        self.watched = tuple(sorted(n for n, p in self.peers.items() if p.watched))

    def probe_sent(self, peer: Peer, seq: int, now: float) -> None:
        """Remember a challenge; forget those too old to prove anything."""
        out = peer.outstanding
        while out and now - next(iter(out.values())) > CHALLENGE_TTL:
            del out[next(iter(out))]
        out[seq] = now

    def receive(self, msg: Message, src: IPAddress, now: float) -> Verdict:
        """Judge one authenticated message by the rules of the module docstring."""
        peer = self._admit(msg, src, now)
        if isinstance(peer, str):
            return Verdict(peer)
        if msg.kind == ACK:
            return self._ack(peer, msg, now)
        if msg.kind == PROBE:
            return self._probe(peer, msg, now)
        if msg.kind == BYE and peer.watched:
            return self._bye(peer, msg, now)
        return Verdict()

    def _admit(self, msg: Message, src: IPAddress, now: float) -> Peer | str:
        """The sender, if the message is from a known peer at its address, within its
        budget and fresh; else why not. In this order: only a message from the right
        address spends the budget, and only one within budget is recorded as seen."""
        peer = self.peers.get(msg.node)
        if peer is None:
            return "unknown-node"
        if src not in peer.addrs:
            return "wrong-address"
        if not peer.bucket.take(now, self.budget):
            return "rate-limited"
        if not peer.fresh(msg.session, msg.seq):
            return "replay"
        return peer

    def _ack(self, peer: Peer, msg: Message, now: float) -> Verdict:
        """Life, if it answers a probe we sent this watched peer (once, within the TTL)."""
        sent = (
            peer.outstanding.pop(msg.echo_seq, None) if msg.echo_session == self.session else None
        )
        if sent is None or now - sent > CHALLENGE_TTL or not peer.watched:
            return Verdict("unsolicited-ack")
        if msg.session == peer.bye_session:
            return Verdict()  # a late ack of the sidecar that said BYE
        peer.verify(msg.session)
        peer.bye_session = None
        peer.session_seq = max(peer.session_seq, msg.seq)
        peer.last_seen = now
        return Verdict(alive=self._refresh(peer, now))

    def _probe(self, peer: Peer, msg: Message, now: float) -> Verdict:
        """Always acked; life only in the verified session, and not after its BYE."""
        if peer.watched and msg.session == peer.session and peer.bye_session is None:
            peer.last_seen = now
            return Verdict(ack=True, alive=self._refresh(peer, now))
        return Verdict(ack=True)

    def _bye(self, peer: Peer, msg: Message, now: float) -> Verdict:
        """Dead at once, if said in the verified session (a watched peer's)."""
        if msg.session != peer.session:
            return Verdict("unverified-bye")
        if peer.bye_session == msg.session:
            return Verdict()  # the second copy (or the other address family's)
        peer.bye_session = msg.session
        return Verdict(alive=self._refresh(peer, now), bye=True)

    def stalled(self, seconds: float) -> None:
        """This sidecar could not listen for ``seconds`` (its loop was busy): silence it
        could not have heard is not held against live peers."""
        for name in self.watched:
            peer = self.peers[name]
            if peer.alive:
                peer.last_seen += seconds

    def expire(self, now: float) -> list[str]:
        """Watched peers that have just fallen silent for ``dead_after``."""
        out = []
        for name in self.watched:
            peer = self.peers[name]
            if peer.alive and not peer.is_alive(now, self.dead_after):
                peer.alive = False
                out.append(name)
        return out

    def next_death(self) -> float | None:
        """When the first live watched peer dies if it stays silent."""
        times = [
            self.peers[n].last_seen + self.dead_after for n in self.watched if self.peers[n].alive
        ]
        return min(times, default=None)

    def _refresh(self, peer: Peer, now: float) -> bool | None:
        """Update the cached liveness; the new value if it changed, else None."""
        alive = peer.watched and peer.is_alive(now, self.dead_after)
        if alive == peer.alive:
            return None
        peer.alive = alive
        return alive
